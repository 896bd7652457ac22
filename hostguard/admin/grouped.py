"""The mismatch log grouped by host and reason: one line per host refused for one reason
over the period the list's filters, date hierarchy and search select, with its total,
first and last seen, and a link to its rows.

A host refused all day is 1,440 rows in the list (one per minute window) and one line
here. The page reuses the list's own filters, so changing one keeps the grouping; it
costs a fixed number of queries (one ``GROUP BY`` for the page, one ``COUNT`` of the
groups) whatever the number of rows.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from django.contrib.admin import ModelAdmin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ERROR_FLAG, ORDER_VAR, PAGE_VAR
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Max, Min, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from hostguard.decision import Reason
from hostguard.models import MismatchLog

GROUPS_PER_PAGE = 100


class HostGroup(NamedTuple):
    host: str
    reason: str
    total: int
    windows: int
    first_seen: Any
    last_seen: Any
    rows_url: str

    @property
    def host_display(self) -> str:
        if self.host == MismatchLog.OVERFLOW_HOST:
            return gettext("(other hosts)")
        return self.host or gettext("(no Host)")

    @property
    def reason_display(self) -> str:
        return str(dict(Reason.choices).get(self.reason, self.reason))


def grouped_url(model_admin: ModelAdmin, changelist: Any) -> str:
    """The grouped page for what ``changelist`` (the list's ``cl``) shows now."""
    url = reverse("admin:hostguard_mismatchlog_grouped", current_app=model_admin.admin_site.name)
    query: str = changelist.get_query_string(remove=[ORDER_VAR])
    return url + query


def grouped_view(model_admin: ModelAdmin, request: HttpRequest) -> HttpResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    page_number = request.GET.get(PAGE_VAR) or 1
    # The page number is this page's; the list would check it against its own rows.
    query = request.GET.copy()
    query.pop(PAGE_VAR, None)
    request.GET = query  # type: ignore[assignment]  # django-stubs: GET is never replaced
    try:
        changelist = model_admin.get_changelist_instance(request)
    except IncorrectLookupParameters:
        return HttpResponseRedirect(request.path + "?" + ERROR_FLAG + "=1")
    groups = (
        changelist.queryset.select_related(None)
        .order_by()
        .values("host", "reason")
        .annotate(total=Sum("count"), windows=Count("pk"), first=Min("first_seen"), last=Max("last_seen"))
        .order_by("-total", "host", "reason")
    )
    page = Paginator(groups, GROUPS_PER_PAGE).get_page(page_number)
    rows_base = reverse("admin:hostguard_mismatchlog_changelist", current_app=model_admin.admin_site.name)
    lines = [
        HostGroup(
            group["host"],
            group["reason"],
            group["total"],
            group["windows"],
            group["first"],
            group["last"],
            rows_base + changelist.get_query_string({"host__exact": group["host"], "reason__exact": group["reason"]}),
        )
        for group in page.object_list
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "cl": changelist,
        "opts": model_admin.opts,
        "title": _("Host mismatches by host and reason"),
        "subtitle": None,
        "media": model_admin.media,
        "groups": lines,
        "page": page,
        "previous_url": changelist.get_query_string({PAGE_VAR: page.previous_page_number()})
        if page.has_previous()
        else "",
        "next_url": changelist.get_query_string({PAGE_VAR: page.next_page_number()}) if page.has_next() else "",
        "rows_url": rows_base + changelist.get_query_string(),
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/hostguard/mismatchlog/grouped.html", context)
