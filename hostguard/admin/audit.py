"""Admin for the mismatch audit log: read-only rows, an hourly chart, a view grouped by host
and reason, CSV export, and "allow this host for a tenant"."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from hostguard.admin import allow, grouped
from hostguard.admin.chart import hourly_chart
from hostguard.models import MismatchLog

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A CSV cell that no spreadsheet runs as a formula (OWASP's “CSV injection”)."""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


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
        (_("First request of the window"), {"fields": ["method", "path", "remote_addr", "user_agent", "sni"]}),
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
        if obj.host == MismatchLog.OVERFLOW_HOST:
            return gettext("(other hosts)")
        if not obj.host:
            return gettext("(no Host)")
        return format_html('<span class="hostguard-authority">{}</span>', obj.authority)

    @admin.display(description=_("sample path"), ordering="path")
    def sample_path(self, obj: MismatchLog) -> str:
        # Long paths are cut to the column's width (CSS) and shown whole on hover:
        # a scanner's 500-character path must not push the list past the screen.
        return format_html('<span class="hostguard-path" title="{}">{}</span>', obj.path, obj.path)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(lambda request: grouped.grouped_view(self, request))
        return [path("grouped/", view, name="hostguard_mismatchlog_grouped"), *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context is not None and "cl" in context:
            # The chart and the grouped view follow the list's filters and search.
            context["mismatch_chart"] = hourly_chart(context["cl"].queryset)
            context["grouped_url"] = grouped.grouped_url(self, context["cl"])
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
        return allow.allow_host(self, request, queryset)
