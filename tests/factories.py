"""Rows for tests, made the way staff make them: a tenant on a deployment, with its hosts."""

from __future__ import annotations

from hostguard.models import Authority, Deployment, Tenant


def make_tenant(slug: str, deployment: str, *hosts: str) -> Tenant:
    """Tenant ``slug`` (named after it) on ``deployment`` (made if missing), claiming ``hosts``."""
    dep, _ = Deployment.objects.get_or_create(name=deployment)
    tenant = Tenant.objects.create(name=slug.title(), slug=slug, deployment=dep)
    for host in hosts:
        Authority.objects.create(tenant=tenant, host=host)
    return tenant
