"""Admin for deployments, tenants and their authorities.

Every write here reaches the policy: single saves and deletes through model
signals, bulk actions through the policy-aware queryset, each bulk write bumping
the policy stamp once. Writes that would stop serving the host the admin is used
through are refused by :mod:`hostguard.admin.lockout`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import model_ngettext, quote, unquote
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, models, transaction
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from hostguard.admin import lockout, sharing
from hostguard.admin.filters import HostKindFilter, PortFilter, TenantActiveFilter
from hostguard.admin.forms import AuthorityForm, DeploymentForm
from hostguard.admin.links import tenant_admin_url
from hostguard.admin.notes import freshness_note
from hostguard.admin.views import check_host_view
from hostguard.conf import conf
from hostguard.hosts import InvalidHost, parse_authority
from hostguard.models import Authority, Deployment, HostCheck, get_tenant_model
from hostguard.policy import policy


def search_host(term: str) -> str | None:
    """The stored form of a search term that reads as a host or URL, if it differs."""
    text = term.strip()
    if not text or " " in text:
        return None
    try:
        host = parse_authority(text).host
    except InvalidHost:
        return None
    return host if host != text.lower() else None


def _user_id(request: HttpRequest) -> Any:
    return request.user.pk


def count_of(model: type[models.Model], field: str) -> Coalesce:
    """``COUNT(*)`` of ``model`` rows pointing at the outer row, as a correlated subquery.

    Evaluated only for the rows on the page, unlike a JOIN + GROUP BY over the
    whole related table.
    """
    counts = (
        model._default_manager.filter(**{field: OuterRef("pk")})
        .order_by()
        .values(field)
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counts, output_field=models.IntegerField()), 0)


@admin.action(permissions=["delete"], description=django_delete_selected.short_description)  # type: ignore[attr-defined]
def delete_selected(modeladmin: GuardedAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
    """Django's bulk delete, refused when it would lock the user out."""
    ids = list(queryset.values_list("pk", flat=True))
    message = lockout.refusal(request, modeladmin.deletion_edit(ids))
    if message:
        modeladmin.message_user(request, message, messages.ERROR)
        return None
    response: HttpResponse | None = django_delete_selected(modeladmin, request, queryset)
    return response


class GuardedAdmin(admin.ModelAdmin):
    """Hands the request to forms and guards deletes, so no write locks staff out."""

    #: The lookup that finds rows by a host searched for as a URL, or in Unicode.
    host_search = ""

    def deletion_edit(self, ids: Sequence[Any]) -> lockout.Edit:
        raise NotImplementedError

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        host = search_host(search_term) if self.host_search else None
        if host:
            found = found | queryset.filter(**{self.host_search: host})
            # Through a relation (a tenant's hosts), a row can match more than once.
            may_have_duplicates = may_have_duplicates or self.host_search.count("__") > 1
        return found, may_have_duplicates

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        return type(form.__name__, (form,), {"request": request})

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if obj is not None and self.has_delete_permission(request, obj):
            message = lockout.refusal(request, self.deletion_edit([obj.pk]))
            if message:
                self.message_user(request, message, messages.ERROR)
                opts = self.opts
                return HttpResponseRedirect(
                    reverse(
                        f"admin:{opts.app_label}_{opts.model_name}_change",
                        args=[quote(obj.pk)],
                        current_app=self.admin_site.name,
                    )
                )
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with policy.batch():
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with policy.batch():
            super().delete_queryset(request, queryset)

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except IntegrityError:
            if request.method != "POST":
                raise
        # Another request claimed the same authority between this one's validation
        # and its write; the transaction was rolled back. Validating again names the
        # tenant that now holds the claim, as a form error.
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except IntegrityError:
            self.message_user(
                request,
                gettext("Another change to the same hosts was saved at the same moment; nothing was saved. Try again."),
                messages.ERROR,
            )
            return HttpResponseRedirect(request.get_full_path())

    def construct_change_message(self, request: HttpRequest, form: Any, formsets: Any, add: bool = False) -> Any:
        message = super().construct_change_message(request, form, formsets, add)
        confirmed = [getattr(form, "confirmed_shared", None)]
        for formset in formsets:
            confirmed.extend(getattr(formset, "confirmed_shared", []))
        return sharing.log_message(message, [shared for shared in confirmed if shared is not None])

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: str | None = None) -> HttpResponse:
        response = super().response_add(request, obj, post_url_continue)
        if IS_POPUP_VAR not in request.POST:
            self.message_user(request, freshness_note(), messages.INFO)
        return response

    def response_change(self, request: HttpRequest, obj: Any) -> HttpResponse:
        response = super().response_change(request, obj)
        if IS_POPUP_VAR not in request.POST:
            self.message_user(request, freshness_note(), messages.INFO)
        return response

    def activation_edit(self, ids: Sequence[Any], active: bool) -> lockout.Edit:
        raise NotImplementedError

    @admin.action(description=_("Activate selected %(verbose_name_plural)s"), permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self.set_active(request, queryset, True)

    @admin.action(description=_("Deactivate selected %(verbose_name_plural)s"), permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self.set_active(request, queryset, False)

    def set_active(self, request: HttpRequest, queryset: QuerySet[Any], active: bool) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        message = lockout.refusal(request, self.activation_edit(ids, active))
        if message:
            self.message_user(request, message, messages.ERROR)
            return
        changing = list(queryset.exclude(is_active=active))
        with transaction.atomic(), policy.batch():
            count = queryset.model._default_manager.filter(pk__in=[obj.pk for obj in changing]).update(is_active=active)
            if changing:
                change = [{"changed": {"fields": [str(queryset.model._meta.get_field("is_active").verbose_name)]}}]
                LogEntry.objects.log_actions(_user_id(request), changing, CHANGE, change_message=change)
        if active:
            text = ngettext("Activated %(count)d %(items)s.", "Activated %(count)d %(items)s.", count)
        else:
            text = ngettext("Deactivated %(count)d %(items)s.", "Deactivated %(count)d %(items)s.", count)
        self.message_user(request, text % {"count": count, "items": model_ngettext(self.opts, count)}, messages.SUCCESS)


# --- deployments ----------------------------------------------------------------------------


@admin.register(Deployment)
class DeploymentAdmin(GuardedAdmin):
    form = DeploymentForm
    list_display = ["name", "served_here", "description", "tenant_count"]
    search_fields = ["name", "description"]
    actions = [delete_selected]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Deployment]:
        queryset: QuerySet[Deployment] = super().get_queryset(request)
        return queryset.annotate(tenant_count=count_of(get_tenant_model(), "deployment"))

    @admin.display(description=_("served by this process"), boolean=True)
    def served_here(self, obj: Deployment) -> bool:
        return obj.name == conf.DEPLOYMENT

    @admin.display(description=_("tenants"), ordering="tenant_count")
    def tenant_count(self, obj: Any) -> str:
        url = tenant_admin_url(self.admin_site)
        if url is None:  # the site's own tenant model, not in this admin
            return str(obj.tenant_count)
        return format_html('<a href="{}?deployment__id__exact={}">{}</a>', url, obj.pk, obj.tenant_count)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = {"here": conf.DEPLOYMENT, **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    def deletion_edit(self, ids: Sequence[Any]) -> lockout.Edit:
        return lockout.delete_deployments(ids)


# --- authorities ------------------------------------------------------------------------------


@admin.register(Authority)
class AuthorityAdmin(GuardedAdmin):
    form = AuthorityForm
    list_display = ["authority", "unicode_authority", "tenant", "deployment", "is_active"]
    list_display_links = ["authority"]
    list_filter = ["is_active", "scheme", PortFilter, HostKindFilter, "tenant__deployment", TenantActiveFilter]
    # Counting every filter choice over 100,000 rows on each page view is what makes
    # an admin list slow; the list itself stays a handful of queries.
    show_facets = admin.ShowFacets.NEVER
    search_fields = ["host", "tenant__name", "tenant__slug", "note"]
    list_select_related = ["tenant__deployment"]
    readonly_fields = ["stored_as", "unicode_authority", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["host", ("scheme", "port"), "tenant", "is_active", "note"]}),
        (_("Stored as"), {"fields": ["stored_as", "unicode_authority", "created_at", "updated_at"]}),
    ]
    actions = [delete_selected, "activate", "deactivate"]
    host_search = "host__icontains"

    def get_autocomplete_fields(self, request: HttpRequest) -> list[str]:
        # A search box for the tenant where the tenant model's admin can answer it (a
        # site's own model may have no admin, or one without search_fields).
        try:
            tenants = self.admin_site.get_model_admin(get_tenant_model())
        except NotRegistered:
            return []
        return ["tenant"] if tenants.search_fields else []

    @admin.display(description=_("authority"), ordering="host")
    def authority(self, obj: Authority) -> str:
        return str(obj)

    @admin.display(description=_("stored as"))
    def stored_as(self, obj: Authority) -> str:
        return str(obj) if obj.pk is not None else "—"

    @admin.display(description=_("Unicode form"), ordering="host")
    def unicode_authority(self, obj: Authority) -> str:
        return obj.unicode_authority if obj.pk is not None else "—"

    @admin.display(description=_("deployment"), ordering="tenant__deployment__name")
    def deployment(self, obj: Authority) -> str:
        name = str(obj.tenant.deployment.name)
        if name == conf.DEPLOYMENT:
            return gettext("%(deployment)s (this process)") % {"deployment": name}
        return name

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        check = path(
            "check/",
            self.admin_site.admin_view(lambda request: check_host_view(self, request)),
            name="%s_%s_check" % info,
        )
        return [check, *super().get_urls()]

    def deletion_edit(self, ids: Sequence[Any]) -> lockout.Edit:
        return lockout.delete_authorities(ids)

    def activation_edit(self, ids: Sequence[Any], active: bool) -> lockout.Edit:
        return lockout.update_authorities(ids, active=active)


@admin.register(HostCheck)
class HostCheckAdmin(admin.ModelAdmin):
    """The "Check a host" page's row in the admin index and navigation sidebar: a link, no data."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        authorities: admin.ModelAdmin = self.admin_site.get_model_admin(Authority)
        return authorities.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        def check_page(request: HttpRequest) -> HttpResponse:
            if not self.has_view_permission(request):
                raise PermissionDenied
            return HttpResponseRedirect(reverse("admin:hostguard_authority_check", current_app=self.admin_site.name))

        return [path("", self.admin_site.admin_view(check_page), name="hostguard_hostcheck_changelist")]
