"""Links to the tenant model's admin pages, wherever the site registered that model."""

from __future__ import annotations

from typing import Any

from django.contrib.admin import AdminSite
from django.contrib.admin.utils import quote
from django.urls import NoReverseMatch, reverse

from hostguard.models import get_tenant_model


def tenant_admin_url(admin_site: AdminSite, tenant_id: Any = None) -> str | None:
    """The tenant model's change list in ``admin_site`` (one tenant's page with
    ``tenant_id``), or ``None`` when the site has no admin for its tenant model."""
    opts = get_tenant_model()._meta
    try:
        if tenant_id is None:
            return reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist", current_app=admin_site.name)
        return reverse(
            f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(tenant_id)], current_app=admin_site.name
        )
    except NoReverseMatch:
        return None
