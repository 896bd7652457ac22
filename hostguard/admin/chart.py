"""The mismatch log's chart: mismatches per hour over the last 48 hours, stacked by reason.

:func:`chart_data` does the arithmetic (buckets, bar positions); the template
``admin/hostguard/mismatchlog/_chart.html`` draws it as server-rendered SVG, with
no script, every value from a request escaped by the template engine.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from django.db.models import QuerySet, Sum
from django.db.models.functions import TruncHour
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.translation import gettext

from hostguard.decision import Reason
from hostguard.models import MismatchLog

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
WIDTH, HEIGHT = 760, 190
LEFT, RIGHT, TOP, BOTTOM = 46, 8, 10, 28
PLOT_WIDTH, PLOT_HEIGHT = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


class Bar(NamedTuple):
    """One reason's part of one hour's stack, in SVG user units (formatted to one decimal)."""

    x: str
    y: str
    width: str
    height: str
    colour: str
    title: str


class Tick(NamedTuple):
    x: str
    label: str


class LegendItem(NamedTuple):
    colour: str
    label: str
    total: int


def hourly_totals(queryset: QuerySet[MismatchLog], start: datetime) -> tuple[list[dict[str, int]], dict[str, int]]:
    """Per hour from ``start`` (``CHART_HOURS`` of them), the count by reason; and the totals by reason."""
    end = start + timedelta(hours=CHART_HOURS)
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
    return buckets, totals


def chart_data(queryset: QuerySet[MismatchLog], now: datetime | None = None) -> dict[str, Any] | None:
    """The numbers the chart template draws, or ``None`` when the period has no mismatch."""
    now = now or timezone.now()
    start = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=CHART_HOURS - 1)
    buckets, totals = hourly_totals(queryset, start)
    if not totals:
        return None
    labels = dict(Reason.choices)
    order = [reason for reason in REASON_COLOURS if reason in totals] + sorted(set(totals) - set(REASON_COLOURS))
    slot = PLOT_WIDTH / CHART_HOURS
    peak = max(sum(bucket.values()) for bucket in buckets) or 1
    bars: list[Bar] = []
    ticks: list[Tick] = []
    for index, bucket in enumerate(buckets):
        local = timezone.localtime(start + timedelta(hours=index))
        x = LEFT + index * slot
        if index % 6 == 0:
            ticks.append(Tick("%.1f" % x, local.strftime("%H:%M")))
        y = float(TOP + PLOT_HEIGHT)
        for reason in order:
            count = bucket.get(reason)
            if not count:
                continue
            height = max(PLOT_HEIGHT * count / peak, 1.0)
            y -= height
            title = gettext("%(hour)s: %(reason)s × %(count)d") % {
                "hour": local.strftime("%Y-%m-%d %H:00"),
                "reason": labels.get(reason, reason),
                "count": count,
            }
            colour = REASON_COLOURS.get(reason, OTHER_COLOUR)
            bars.append(Bar("%.1f" % (x + 1), "%.1f" % y, "%.1f" % max(slot - 2, 1), "%.1f" % height, colour, title))
    legend = [LegendItem(REASON_COLOURS.get(r, OTHER_COLOUR), str(labels.get(r, r)), totals[r]) for r in order]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "top": TOP,
        "label_x": LEFT - 4,
        "peak_y": TOP + 4,
        "right_edge": LEFT + PLOT_WIDTH,
        "baseline": TOP + PLOT_HEIGHT,
        "peak": peak,
        "bars": bars,
        "ticks": ticks,
        "tick_y": HEIGHT - 8,
        "legend": legend,
    }


def hourly_chart(queryset: QuerySet[MismatchLog], now: datetime | None = None) -> SafeString:
    """The chart of mismatches per hour over the last 48 hours, stacked by reason, as HTML."""
    rendered: SafeString = render_to_string(
        "admin/hostguard/mismatchlog/_chart.html", {"chart": chart_data(queryset, now)}
    )
    return rendered
