"""Testing a site that uses hostguard: serve a tenant in a test, and send its host.

Django's test client sends no ``Host`` header, and hostguard answers a request without
one 400, as a browser would never send it; a host must also be one this deployment
serves. So a site's tests need a tenant, a host of it, and a client that sends it::

    from hostguard.test import TenantClient, serve_tenant

    def test_home(db):
        tenant = serve_tenant("acme")             # its deployment, row and host acme.test
        response = TenantClient(tenant).get("/")   # sends Host: acme.test
        assert response.wsgi_request.tenant == tenant

:class:`TenantTestCase` does the same for ``unittest``-style tests, and the pytest
fixtures in :mod:`hostguard.test.pytest_plugin` (``served_tenant``, ``tenant_client``)
are registered for a site's pytest-django suite as soon as hostguard is installed.

The rows are written in the test's own transaction, which threads of the process do
not see: these helpers set ``policy.background = False`` (hostguard then reads its
policy on the calling thread) and make the next request read the policy afresh.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.test import Client, TestCase

__all__ = ["DEFAULT_SLUG", "TenantClient", "TenantTestCase", "prepare_policy", "serve_tenant", "tenant_host"]

#: The tenant :func:`serve_tenant` and :class:`TenantClient` serve when given none.
DEFAULT_SLUG = "tenant"


def prepare_policy() -> None:
    """Make hostguard read its policy on the test's thread, afresh at the next request.

    Call it where a test changes tenants or hosts without these helpers in a way the
    process cannot see (rows of a rolled-back test still in the snapshot, say); the
    pytest plugin calls it before and after every test.
    """
    from hostguard.policy import policy

    policy.background = False
    policy.reset()


def serve_tenant(
    slug: str = DEFAULT_SLUG,
    *,
    host: str | None = None,
    name: str | None = None,
    active: bool = True,
    **fields: Any,
) -> Any:
    """A tenant of the tenant model that this deployment serves at ``host`` (``<slug>.test``).

    Creates what the policy needs, or reuses it: the deployment ``HOSTGUARD_DEPLOYMENT``,
    the tenant (``fields``: values of a site's own tenant model's fields) and an
    authority for ``host`` on any port and scheme. Returns the tenant.
    """
    from hostguard.conf import conf
    from hostguard.hosts import normalise_host
    from hostguard.models import Authority, Deployment, get_tenant_model

    deployment_name = conf.DEPLOYMENT
    if not deployment_name:
        raise ImproperlyConfigured("serve_tenant() serves tenants of HOSTGUARD_DEPLOYMENT, which is not set.")
    deployment, _created = Deployment.objects.get_or_create(name=deployment_name)
    model = get_tenant_model()
    wanted: dict[str, Any] = {"deployment_id": deployment.pk, "is_active": active, **fields}
    if name is not None:
        wanted["name"] = name
    tenant = model._default_manager.filter(slug=slug).first()
    if tenant is None:
        wanted.setdefault("name", slug.replace("-", " ").title())
        tenant = model._default_manager.create(slug=slug, **wanted)
    else:
        changed = [key for key, value in wanted.items() if getattr(tenant, key) != value]
        if changed:
            for key in changed:
                setattr(tenant, key, wanted[key])
            tenant.save()
    stored = normalise_host(host or "%s.test" % slug)
    authority = Authority.objects.filter(host=stored, port=None, scheme="").first()
    if authority is None:
        Authority.objects.create(host=stored, tenant=tenant)
    elif authority.tenant_id != tenant.pk or not authority.is_active:
        raise ValueError("The host %s is already claimed by another tenant, %s." % (stored, authority.tenant))
    prepare_policy()
    return tenant


def tenant_host(tenant: Any) -> str:
    """A ``Host`` header value that reaches ``tenant`` over plain HTTP.

    Its first active authority for any scheme or http (an exact host before a
    wildcard, whose ``www.`` name is used); raises ``ValueError`` if it has none.
    """
    candidates = tenant.authorities.filter(is_active=True, scheme__in=["", "http"]).order_by("port", "pk")
    for authority in sorted(candidates, key=lambda authority: authority.host.startswith("*.")):
        host = "www." + authority.host[2:] if authority.host.startswith("*.") else authority.host
        return host if authority.port in (None, 80) else "%s:%d" % (host, authority.port)
    raise ValueError(
        "The tenant %s has no active host served over http: give it one (serve_tenant(%r, host=…)), or send a "
        "host yourself." % (tenant.slug, tenant.slug)
    )


class TenantClient(Client):
    """Django's test client, sending a host of ``tenant`` with every request.

    Without a tenant, the first request serves :data:`DEFAULT_SLUG` (:func:`serve_tenant`).
    A request that names its own host (``headers={"host": …}``) keeps it.
    """

    def __init__(self, tenant: Any = None, *, host: str | None = None, **defaults: Any) -> None:
        super().__init__(**defaults)
        self.tenant = tenant
        if host is not None:
            self.defaults["HTTP_HOST"] = host

    def request(self, **request: Any) -> Any:
        if "HTTP_HOST" not in request and "HTTP_HOST" not in self.defaults:
            if self.tenant is None:
                self.tenant = serve_tenant()
            self.defaults["HTTP_HOST"] = tenant_host(self.tenant)
        return super().request(**request)


class TenantTestCase(TestCase):
    """A ``TestCase`` whose ``self.client`` sends a host of :data:`DEFAULT_SLUG`, served
    at its first request, and whose tests each start from a policy read afresh."""

    client_class = TenantClient

    def setUp(self) -> None:
        prepare_policy()
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        prepare_policy()
