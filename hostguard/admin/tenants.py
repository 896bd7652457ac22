"""Admin for tenants: hostguard's own ``Tenant``, or the site's own tenant model.

hostguard registers :class:`TenantAdmin` for its own ``Tenant``. A site whose tenant
model is its own (``HOSTGUARD_TENANT_MODEL``) registers that model with a subclass of
:class:`TenantAdmin` — its hosts inline, the "Move to deployment…" action, the
activate/suspend actions and the lockout guard come with it::

    from django.contrib import admin
    from hostguard.admin import TenantAdmin

    from accounts.models import Organization

    @admin.register(Organization)
    class OrganizationAdmin(TenantAdmin):
        list_display = [*TenantAdmin.list_display, "billing_email"]

or adds :class:`AuthorityInline` and :func:`move_to_deployment` to an admin it
already has (see docs/tenant-model.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from hostguard.admin import lockout, moving
from hostguard.admin.forms import TenantForm
from hostguard.admin.inline import AuthorityInlineForm, AuthorityInlineFormSet
from hostguard.admin.tenancy import GuardedAdmin, count_of, delete_selected
from hostguard.models import AbstractTenant, Authority, Tenant


class AuthorityInline(admin.TabularInline):
    """A tenant's hosts, on its page: checked together, guarded against locking staff out."""

    model = Authority
    form = AuthorityInlineForm
    formset = AuthorityInlineFormSet
    template = "admin/hostguard/tenant/authority_inline.html"
    extra = 1
    fields = ["host", "scheme", "port", "is_active", "note", "unicode_authority"]
    readonly_fields = ["unicode_authority"]
    verbose_name = _("host")
    verbose_name_plural = _("hosts (authorities)")

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> type[BaseInlineFormSet]:
        formset = super().get_formset(request, obj, **kwargs)
        return type(formset.__name__, (formset,), {"request": request})

    @admin.display(description=_("Unicode form"))
    def unicode_authority(self, obj: Authority) -> str:
        return obj.unicode_authority if obj.pk is not None else "—"


@admin.action(description=_("Move to deployment…"), permissions=["change"])
def move_to_deployment(
    model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[AbstractTenant]
) -> HttpResponse | None:
    """The "Move to deployment…" action, for any admin of the tenant model."""
    return moving.move_to_deployment(model_admin, request, queryset)


class TenantAdmin(GuardedAdmin):
    """The admin of a tenant model: hostguard's ``Tenant`` or a site's model derived from
    :class:`~hostguard.models.AbstractTenant` (subclass it and register it)."""

    form = TenantForm
    inlines = [AuthorityInline]
    list_display = ["name", "slug", "deployment", "is_active", "host_count"]
    list_filter = ["deployment", "is_active"]
    search_fields = ["name", "slug", "authorities__host"]
    list_select_related = ["deployment"]
    prepopulated_fields = {"slug": ["name"]}
    actions = [delete_selected, move_to_deployment, "activate", "deactivate"]
    host_search = "authorities__host__icontains"

    def get_queryset(self, request: HttpRequest) -> QuerySet[AbstractTenant]:
        queryset: QuerySet[AbstractTenant] = super().get_queryset(request)
        return queryset.annotate(host_count=count_of(Authority, "tenant"))

    @admin.display(description=_("hosts"), ordering="host_count")
    def host_count(self, obj: Any) -> str:
        url = reverse("admin:hostguard_authority_changelist", current_app=self.admin_site.name)
        return format_html('<a href="{}?tenant__id__exact={}">{}</a>', url, obj.pk, obj.host_count)

    def deletion_edit(self, ids: Sequence[Any]) -> lockout.Edit:
        return lockout.delete_tenants(ids)

    def activation_edit(self, ids: Sequence[Any], active: bool) -> lockout.Edit:
        return lockout.update_tenants(ids, active=active)


if Tenant._meta.swapped is None:
    # A site's own tenant model is the site's to register (hostguard's is swapped out).
    admin.site.register(Tenant, TenantAdmin)
