"""A site's own tenant model, as tests/settings_swapped.py names it in HOSTGUARD_TENANT_MODEL."""

from __future__ import annotations

from django.db import models

from hostguard.models import AbstractTenant


class Organization(AbstractTenant):
    """The site's tenants, with fields of their own beside hostguard's."""

    billing_email = models.EmailField(blank=True, help_text="Where invoices go.")
    # Carried by the snapshot (HOSTGUARD_TENANT_FIELDS): reading them costs no query.
    plan = models.CharField(max_length=20, blank=True, default="free", help_text="The plan the tenant pays for.")
    seats = models.PositiveIntegerField(null=True, blank=True, default=5, help_text="How many people may sign in.")
    founded = models.DateField(null=True, blank=True, help_text="When the customer signed up.")
    # Not carried: loaded from the database when a view first reads them.
    notes = models.TextField(blank=True, help_text="Anything staff should know.")
    parent = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="children",
        help_text="The reseller this customer came through.",
    )

    class Meta(AbstractTenant.Meta):
        verbose_name = "organization"
        verbose_name_plural = "organizations"
