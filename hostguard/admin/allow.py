"""The mismatch log's "Allow this host for a tenant…" action.

Refused hosts become authorities (any port, any scheme) of a tenant staff choose
among the tenants they may view. Hosts some tenant claims already, malformed hosts
and the overflow row are refused; a host that shares names with another tenant's
claim (under its wildcard, say) needs "Claim it anyway", as everywhere staff claim.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.exceptions import NotRegistered
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from hostguard.admin import sharing
from hostguard.admin.notes import freshness_note
from hostguard.claims import SharedNames, shared_names
from hostguard.decision import MALFORMED_HOST
from hostguard.models import AbstractTenant, Authority, MismatchLog, get_tenant_model
from hostguard.policy import policy

#: At most this many hosts are allowed in one go, from at most this many rows.
ALLOW_LIMIT = 100
ALLOW_ROWS = 1000


class TenantChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return "%s (%s) — %s" % (obj.name, obj.slug, obj.deployment.name)


class AllowHostForm(forms.Form):
    tenant = TenantChoiceField(
        queryset=None,  # per request: visible_tenants()
        label=_("Tenant"),
        help_text=_("The host is added to this tenant as an authority for any port and scheme."),
    )
    claim_shared = sharing.confirm_field()

    def __init__(self, *args: Any, hosts: list[str], tenants: QuerySet[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["tenant"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = tenants
        self.hosts = hosts
        self.shared: dict[str, SharedNames] = {}
        self.confirmed_shared: dict[str, SharedNames] = {}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None
        tenant: AbstractTenant | None = cleaned.get("tenant")
        if tenant is None:
            return cleaned
        found = shared_names(self.hosts, tenant.pk)
        if cleaned.get("claim_shared"):
            self.confirmed_shared = found
        elif found:
            self.shared = found
            raise ValidationError([sharing.refusal(shared) for shared in found.values()], code="shared")
        return cleaned


def visible_tenants(model_admin: admin.ModelAdmin, request: HttpRequest) -> QuerySet[Any]:
    """The tenants this user may choose: all of them with view or change permission on tenants, else none."""
    model = get_tenant_model()
    try:
        tenants: admin.ModelAdmin = model_admin.admin_site.get_model_admin(model)
        allowed = tenants.has_view_permission(request)
    except NotRegistered:
        opts = model._meta
        allowed = any(
            request.user.has_perm(f"{opts.app_label}.{perm}_{opts.model_name}") for perm in ("view", "change")
        )
    rows: QuerySet[Any] = model._default_manager.all()
    return rows.select_related("deployment").order_by("name") if allowed else rows.none()


def allowable_hosts(
    model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[MismatchLog]
) -> dict[str, list[MismatchLog]]:
    """The selected rows by host, once those that cannot be allowed were refused with a message each."""
    selected = list(queryset.order_by("-last_seen")[: ALLOW_ROWS + 1])
    if len(selected) > ALLOW_ROWS:
        message = gettext("Select at most %(limit)d rows to allow their hosts.") % {"limit": ALLOW_ROWS}
        model_admin.message_user(request, message, messages.ERROR)
        return {}
    hosts: dict[str, list[MismatchLog]] = {}
    refused: list[str] = []
    for row in selected:
        if row.reason == MALFORMED_HOST or row.host == MismatchLog.OVERFLOW_HOST or not row.host:
            refused.append(row.host)
        elif row.host in hosts or len(hosts) < ALLOW_LIMIT:
            hosts.setdefault(row.host, []).append(row)
    for host in dict.fromkeys(refused):
        if host == MismatchLog.OVERFLOW_HOST:
            text = gettext("“(other hosts)” counts many hosts together: it cannot be allowed.")
        else:
            text = gettext("“%(host)s” is not a well-formed host: it cannot be allowed.") % {"host": host}
        model_admin.message_user(request, text, messages.ERROR)
    for claim in Authority.objects.select_related("tenant").filter(host__in=list(hosts)).order_by("host"):
        if hosts.pop(claim.host, None) is not None:
            model_admin.message_user(
                request,
                gettext("“%(host)s” is already claimed by the tenant “%(tenant)s”: edit that tenant instead.")
                % {"host": claim.host, "tenant": claim.tenant.name},
                messages.ERROR,
            )
    return hosts


def allow_host(
    model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[MismatchLog]
) -> HttpResponse | None:
    hosts = allowable_hosts(model_admin, request, queryset)
    if not hosts:
        return None
    tenants = visible_tenants(model_admin, request)
    data = request.POST if "confirm" in request.POST else None
    form = AllowHostForm(data, hosts=list(hosts), tenants=tenants)
    if form.is_bound and form.is_valid():
        allow(model_admin, request, form)
        return None
    context = {
        **model_admin.admin_site.each_context(request),
        "title": gettext("Allow hosts for a tenant"),
        "opts": model_admin.opts,
        "form": form,
        "hosts": [
            (host, sum(row.count for row in rows), sorted({str(row.get_reason_display()) for row in rows}))
            for host, rows in hosts.items()
        ],
        "may_choose": tenants.exists(),
        "selected": [row.pk for rows in hosts.values() for row in rows],
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "media": model_admin.media + form.media,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/hostguard/mismatchlog/allow_host.html", context)


def allow(model_admin: admin.ModelAdmin, request: HttpRequest, form: AllowHostForm) -> None:
    tenant: Any = form.cleaned_data["tenant"]
    allowed: list[str] = []
    note = gettext("Allowed from the host mismatch log by %(user)s.") % {"user": request.user.get_username()}
    with transaction.atomic(), policy.batch():
        for host in form.hosts:
            authority = Authority(host=host, tenant=tenant, note=note[:255])
            try:
                authority.full_clean()
                with transaction.atomic():
                    authority.save()
            except (ValidationError, IntegrityError) as exc:
                # IntegrityError: someone claimed it between the check and the save.
                problems = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
                model_admin.message_user(
                    request,
                    gettext("“%(host)s” was not allowed: %(problems)s") % {"host": host, "problems": problems},
                    messages.ERROR,
                )
                continue
            confirmed = [form.confirmed_shared[host]] if host in form.confirmed_shared else []
            model_admin.log_addition(request, authority, sharing.log_message([{"added": {}}], confirmed))
            allowed.append(str(authority))
    if allowed:
        # The sentence starts with a word: the admin capitalises the first letter of
        # every message, which would misspell a host name put first.
        text = ngettext(
            "Added %(hosts)s to the tenant “%(tenant)s”.",
            "Added %(hosts)s to the tenant “%(tenant)s”.",
            len(allowed),
        ) % {"hosts": ", ".join(allowed), "tenant": tenant.name}
        model_admin.message_user(request, text, messages.SUCCESS)
        model_admin.message_user(request, freshness_note(), messages.INFO)
