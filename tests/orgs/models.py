"""A site's own tenant model, as tests/settings_swapped.py names it in HOSTGUARD_TENANT_MODEL."""

from __future__ import annotations

from django.db import models

from hostguard.models import AbstractTenant


class Organization(AbstractTenant):
    """The site's tenants, with fields of their own beside hostguard's."""

    billing_email = models.EmailField(blank=True, help_text="Where invoices go.")
    #: Carried by the snapshot (HOSTGUARD_TENANT_FIELDS): request.tenant.plan costs no query.
    plan = models.CharField(max_length=20, blank=True, default="free", help_text="The plan the tenant pays for.")
    #: Not carried: loads from the database when a view first reads it.
    notes = models.TextField(blank=True, help_text="Anything staff should know.")

    class Meta(AbstractTenant.Meta):
        verbose_name = "organization"
        verbose_name_plural = "organizations"
