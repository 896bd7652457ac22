"""Admin for the mismatch audit log: read-only rows, an hourly chart, CSV export, and
"allow this host for a tenant"."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet, Sum
from django.db.models.functions import TruncHour
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from hostguard.audit import OVERFLOW_HOST
from hostguard.decision import MALFORMED_HOST, Reason
from hostguard.models import Authority, MismatchLog, Tenant
from hostguard.policy import policy

#: One colour per reason, readable on the admin's light and dark themes.
REASON_COLOURS: dict[str, str] = {
    Reason.UNKNOWN_HOST: "#d64545",
    Reason.OTHER_DEPLOYMENT: "#3b82c4",
    Reason.INACTIVE: "#8d99a6",
    Reason.PORT_MISMATCH: "#9b59b6",
    Reason.SCHEME_MISMATCH: "#e67e22",
    Reason.SNI_MISMATCH: "#16a085",
    Reason.MALFORMED_HOST: "#c9a227",
}
OTHER_COLOUR = "#b0b0b0"
CHART_HOURS = 48
#: At most this many hosts are allowed in one go, from at most this many rows.
ALLOW_LIMIT = 100
ALLOW_ROWS = 1000

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A CSV cell that no spreadsheet runs as a formula (OWASP's “CSV injection”)."""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


# --- the chart -------------------------------------------------------------------------------


def hourly_chart(queryset: QuerySet[MismatchLog], now: datetime | None = None) -> SafeString:
    """An SVG bar chart of mismatches per hour over the last 48 hours, stacked by reason.

    Rendered on the server, no script; every value that came from a request is escaped.
    """
    now = now or timezone.now()
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=CHART_HOURS)
    rows = (
        queryset.filter(window_start__gte=start, window_start__lt=end)
        .annotate(hour=TruncHour("window_start", tzinfo=UTC))
        .order_by()
        .values_list("hour", "reason")
        .annotate(total=Sum("count"))
    )
    buckets: list[dict[str, int]] = [{} for _ in range(CHART_HOURS)]
    totals: dict[str, int] = {}
    for hour, reason, total in rows:
        if hour is None or not total:
            continue
        if timezone.is_naive(hour):
            hour = timezone.make_aware(hour, UTC)
        index = int((hour - start).total_seconds() // 3600)
        if 0 <= index < CHART_HOURS:
            buckets[index][reason] = buckets[index].get(reason, 0) + total
            totals[reason] = totals.get(reason, 0) + total
    if not totals:
        return format_html('<p class="hostguard-chart-empty">{}</p>', gettext("No mismatches in the last 48 hours."))

    labels = dict(Reason.choices)
    order = [reason for reason in REASON_COLOURS if reason in totals] + sorted(set(totals) - set(REASON_COLOURS))
    width, height = 760, 190
    left, right, top, bottom = 46, 8, 10, 28
    plot_width, plot_height = width - left - right, height - top - bottom
    slot = plot_width / CHART_HOURS
    peak = max(sum(bucket.values()) for bucket in buckets) or 1

    parts: list[SafeString] = []
    # Axes and the peak value.
    parts.append(
        format_html(
            '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="currentColor" stroke-opacity="0.4"/>',
            left,
            top + plot_height,
            left + plot_width,
            top + plot_height,
        )
    )
    parts.append(
        format_html(
            '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="currentColor" stroke-opacity="0.15" '
            'stroke-dasharray="3 3"/>',
            left,
            top,
            left + plot_width,
            top,
        )
    )
    parts.append(
        format_html(
            '<text x="{}" y="{}" text-anchor="end" font-size="11" fill="currentColor">{}</text>',
            left - 4,
            top + 4,
            peak,
        )
    )
    parts.append(
        format_html(
            '<text x="{}" y="{}" text-anchor="end" font-size="11" fill="currentColor">0</text>',
            left - 4,
            top + plot_height,
        )
    )
    for index, bucket in enumerate(buckets):
        hour = start + timedelta(hours=index)
        local = timezone.localtime(hour) if timezone.is_aware(hour) else hour
        x = left + index * slot
        if index % 6 == 0:
            parts.append(
                format_html(
                    '<text x="{}" y="{}" font-size="11" fill="currentColor">{}</text>',
                    "%.1f" % x,
                    height - 8,
                    local.strftime("%H:%M"),
                )
            )
        y = float(top + plot_height)
        for reason in order:
            count = bucket.get(reason)
            if not count:
                continue
            bar = max(plot_height * count / peak, 1.0)
            y -= bar
            parts.append(
                format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>',
                    "%.1f" % (x + 1),
                    "%.1f" % y,
                    "%.1f" % max(slot - 2, 1),
                    "%.1f" % bar,
                    REASON_COLOURS.get(reason, OTHER_COLOUR),
                    gettext("%(hour)s: %(reason)s × %(count)d")
                    % {"hour": local.strftime("%Y-%m-%d %H:00"), "reason": labels.get(reason, reason), "count": count},
                )
            )
    title = gettext("Mismatches per hour over the last 48 hours, by reason")
    svg = format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" width="100%" style="max-width:{}px" '
        'role="img" aria-label="{}"><title>{}</title>{}</svg>',
        width,
        height,
        width,
        title,
        title,
        mark_safe("".join(parts)),  # each part was built by format_html
    )
    legend = format_html_join(
        "",
        '<li><svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" fill="{}"/></svg> '
        "{} <strong>{}</strong></li>",
        ((REASON_COLOURS.get(reason, OTHER_COLOUR), labels.get(reason, reason), totals[reason]) for reason in order),
    )
    return format_html(
        '<figure class="hostguard-chart"><figcaption>{}</figcaption>{}<ul class="hostguard-legend">{}</ul></figure>',
        title,
        svg,
        legend,
    )


# --- "allow this host" -------------------------------------------------------------------------


class TenantChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return "%s (%s) — %s" % (obj.name, obj.slug, obj.deployment.name)


class AllowHostForm(forms.Form):
    tenant = TenantChoiceField(
        queryset=Tenant.objects.select_related("deployment").order_by("name"),
        label=_("Tenant"),
        help_text=_("The host is added to this tenant as an authority for any port and scheme."),
    )


# --- the admin ---------------------------------------------------------------------------------


@admin.register(MismatchLog)
class MismatchLogAdmin(admin.ModelAdmin):
    """Strictly read-only: rows are written by hostguard alone; deleting needs the delete permission."""

    list_display = ["last_seen", "authority_display", "reason", "count", "deployment", "tenant", "sample_path"]
    list_filter = ["reason", "deployment", "last_seen"]
    date_hierarchy = "last_seen"
    search_fields = ["host", "path", "remote_addr", "user_agent"]
    list_select_related = ["tenant"]
    list_per_page = 100
    # Counting a big audit table on every page view is the slow part; the admin
    # shows "Show all" instead of an exact total.
    show_full_result_count = False
    ordering = ["-last_seen", "-pk"]
    actions = ["export_csv", "allow_host"]
    fieldsets = [
        (None, {"fields": ["reason", "host", "port", "scheme", "deployment", "tenant"]}),
        (_("Counts"), {"fields": ["count", "window_start", "first_seen", "last_seen"]}),
        (_("First request of the window"), {"fields": ["method", "path", "remote_addr", "user_agent"]}),
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Only with hostguard.delete_mismatchlog (the default check), stated for the record.
        return super().has_delete_permission(request, obj)

    def has_allow_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("hostguard.add_authority")

    @admin.display(description=_("authority"), ordering="host")
    def authority_display(self, obj: MismatchLog) -> str:
        if obj.host == OVERFLOW_HOST:
            return gettext("(other hosts)")
        if not obj.host:
            return gettext("(no Host)")
        return obj.authority

    @admin.display(description=_("sample path"), ordering="path")
    def sample_path(self, obj: MismatchLog) -> str:
        return obj.path

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context is not None and "cl" in context:
            # The chart follows the list's filters and search.
            context["mismatch_chart"] = hourly_chart(context["cl"].queryset)
        return response

    # --- actions ----------------------------------------------------------------------------------

    @admin.action(description=_("Export CSV"), permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[MismatchLog]) -> StreamingHttpResponse:
        columns = [
            "window_start",
            "first_seen",
            "last_seen",
            "deployment",
            "reason",
            "host",
            "port",
            "scheme",
            "tenant",
            "count",
            "method",
            "path",
            "remote_addr",
            "user_agent",
        ]

        class Echo:
            def write(self, value: str) -> str:
                return value

        writer = csv.writer(Echo())

        def lines() -> Iterator[str]:
            yield writer.writerow(columns)
            for row in queryset.select_related("tenant").order_by("window_start", "pk").iterator(chunk_size=2000):
                values = [
                    row.window_start.isoformat(),
                    row.first_seen.isoformat(),
                    row.last_seen.isoformat(),
                    row.deployment,
                    row.reason,
                    row.host,
                    "" if row.port is None else row.port,
                    row.scheme,
                    row.tenant.slug if row.tenant else "",
                    row.count,
                    row.method,
                    row.path,
                    row.remote_addr,
                    row.user_agent,
                ]
                yield writer.writerow([spreadsheet_safe(value) for value in values])

        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="host-mismatches-{stamp}.csv"'
        return response

    @admin.action(description=_("Allow this host for a tenant…"), permissions=["allow"])
    def allow_host(self, request: HttpRequest, queryset: QuerySet[MismatchLog]) -> HttpResponse | None:
        selected = list(queryset.order_by("-last_seen")[: ALLOW_ROWS + 1])
        if len(selected) > ALLOW_ROWS:
            self.message_user(
                request,
                gettext("Select at most %(limit)d rows to allow their hosts.") % {"limit": ALLOW_ROWS},
                messages.ERROR,
            )
            return None
        hosts: dict[str, list[MismatchLog]] = {}
        refused: list[str] = []
        for row in selected:
            if row.reason == MALFORMED_HOST or row.host == OVERFLOW_HOST or not row.host:
                refused.append(row.host)
            elif row.host in hosts or len(hosts) < ALLOW_LIMIT:
                hosts.setdefault(row.host, []).append(row)
        for host in dict.fromkeys(refused):
            if host == OVERFLOW_HOST:
                text = gettext("“(other hosts)” counts many hosts together: it cannot be allowed.")
            else:
                text = gettext("“%(host)s” is not a well-formed host: it cannot be allowed.") % {"host": host}
            self.message_user(request, text, messages.ERROR)
        for claim in Authority.objects.select_related("tenant").filter(host__in=list(hosts)).order_by("host"):
            if hosts.pop(claim.host, None) is not None:
                self.message_user(
                    request,
                    gettext("“%(host)s” is already claimed by the tenant “%(tenant)s”: edit that tenant instead.")
                    % {"host": claim.host, "tenant": claim.tenant.name},
                    messages.ERROR,
                )
        if not hosts:
            return None

        form = AllowHostForm(request.POST if "confirm" in request.POST else None)
        if form.is_bound and form.is_valid():
            self._allow(request, list(hosts), form.cleaned_data["tenant"])
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Allow hosts for a tenant"),
            "opts": self.model._meta,
            "form": form,
            "hosts": [
                (
                    host,
                    sum(row.count for row in rows),
                    sorted({str(row.get_reason_display()) for row in rows}),
                )
                for host, rows in hosts.items()
            ],
            "selected": [row.pk for rows in hosts.values() for row in rows],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/hostguard/mismatchlog/allow_host.html", context)

    def _allow(self, request: HttpRequest, hosts: list[str], tenant: Tenant) -> None:
        allowed: list[str] = []
        note = gettext("Allowed from the host mismatch log by %(user)s.") % {"user": request.user.get_username()}
        with transaction.atomic(), policy.batch():
            for host in hosts:
                authority = Authority(host=host, tenant=tenant, note=note[:255])
                try:
                    authority.full_clean()
                    with transaction.atomic():
                        authority.save()
                except (ValidationError, IntegrityError) as exc:
                    # IntegrityError: someone claimed it between the check and the save.
                    problems = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
                    self.message_user(
                        request,
                        gettext("“%(host)s” was not allowed: %(problems)s") % {"host": host, "problems": problems},
                        messages.ERROR,
                    )
                    continue
                self.log_addition(request, authority, [{"added": {}}])
                allowed.append(str(authority))
        if allowed:
            self.message_user(
                request,
                ngettext(
                    "%(hosts)s was added to the tenant “%(tenant)s”.",
                    "%(hosts)s were added to the tenant “%(tenant)s”.",
                    len(allowed),
                )
                % {"hosts": ", ".join(allowed), "tenant": tenant.name},
                messages.SUCCESS,
            )
