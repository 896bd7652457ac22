"""The mismatch log in the admin: read-only, chart, CSV export, "allow this host", escaping."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from hostguard.admin.chart import hourly_chart
from hostguard.models import Authority, Deployment, MismatchLog, get_tenant_model

# hostguard.Tenant, or the site's own model (tests/settings_swapped.py runs these tests with one).
Tenant = get_tenant_model()

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:hostguard_mismatchlog_changelist")
HOSTILE = "<script>alert(1)</script>"
ADMIN_HOST = "localhost"  # in HOSTGUARD_ALWAYS_ALLOW: the admin is reached through it


@pytest.fixture
def admin_client(admin_client: Client) -> Client:
    admin_client.defaults["HTTP_HOST"] = ADMIN_HOST
    return admin_client


def make_tenant(slug: str, deployment: str = "local", *hosts: str) -> Tenant:
    dep, _ = Deployment.objects.get_or_create(name=deployment)
    tenant = Tenant.objects.create(name=slug.title(), slug=slug, deployment=dep)
    for host in hosts:
        Authority.objects.create(tenant=tenant, host=host)
    return tenant


def make_row(
    host: str = "evil.example", reason: str = "unknown_host", hours_ago: float = 0, **fields: Any
) -> MismatchLog:
    moment = timezone.now() - timedelta(hours=hours_ago)
    values: dict[str, Any] = {
        "deployment": "local",
        "reason": reason,
        "host": host,
        "port": None if reason == "malformed_host" or host == MismatchLog.OVERFLOW_HOST else 80,
        "scheme": "http",
        "window_start": moment.replace(second=0, microsecond=0),
        "first_seen": moment,
        "last_seen": moment,
        "count": 1,
        "method": "GET",
        "path": "/",
        "remote_addr": "203.0.113.9",
        "user_agent": "curl/8",
    }
    values.update(fields)
    return MismatchLog.objects.create(**values)


def staff(*permissions: str) -> Client:
    user = User.objects.create_user("staff-" + "-".join(permissions or ("none",)), password="pw", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client(HTTP_HOST=ADMIN_HOST)
    client.force_login(user)
    return client


def action(client: Client, name: str, rows: list[MismatchLog], **extra: str) -> Any:
    return client.post(CHANGELIST, {"action": name, "_selected_action": [row.pk for row in rows], **extra})


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]] if response.context else []


class TestChangelist:
    def test_lists_rows_with_their_columns_and_a_chart(self, admin_client: Client) -> None:
        tenant = make_tenant("globex", "remote")
        make_row("globex.example", "other_deployment", tenant=tenant, count=42, path="/checkout")
        make_row("evil.example", count=7, hours_ago=3)
        response = admin_client.get(CHANGELIST)
        assert response.status_code == 200
        text = response.content.decode()
        for value in ("globex.example:80", "served by another deployment", "42", "Globex", "/checkout", "evil.example"):
            assert value in text
        assert "<svg" in text
        assert "Mismatches per hour over the last 48 hours, by reason" in text
        assert "<script" not in text.split('id="changelist"')[0].split("<svg")[1]  # the chart is script-free

    def test_filters_search_and_date_hierarchy(self, admin_client: Client) -> None:
        make_row("evil.example", user_agent="sqlmap/1.7")
        make_row("a..b", "malformed_host")
        make_row("old.example", hours_ago=24 * 400)
        by_reason = admin_client.get(CHANGELIST, {"reason": "malformed_host"}).content.decode()
        assert "a..b" in by_reason
        assert "evil.example" not in by_reason
        by_agent = admin_client.get(CHANGELIST, {"q": "sqlmap"}).content.decode()
        assert "evil.example" in by_agent
        assert "a..b" not in by_agent
        this_year = timezone.localtime().year
        by_year = admin_client.get(CHANGELIST, {"last_seen__year": str(this_year)}).content.decode()
        assert "evil.example" in by_year
        assert "old.example" not in by_year
        assert admin_client.get(CHANGELIST, {"deployment": "local"}).status_code == 200

    def test_queries_do_not_grow_with_the_rows(self, admin_client: Client) -> None:
        def count_queries() -> int:
            with CaptureQueriesContext(connection) as queries:
                assert admin_client.get(CHANGELIST).status_code == 200
            return len(queries)

        make_row("first.example", "other_deployment", tenant=make_tenant("t0"))
        few = count_queries()
        for index in range(1, 30):
            make_row(f"h{index}.example", "other_deployment", tenant=make_tenant(f"t{index}"))
        assert count_queries() == few

    def test_hostile_values_are_escaped_everywhere(self, admin_client: Client) -> None:
        row = make_row(
            HOSTILE,
            "malformed_host",
            path="/<img src=x onerror=alert(2)>",
            user_agent="<svg onload=alert(3)>\\x1b[31m",
            remote_addr="<b>",
        )
        make_row("evil.example", reason=HOSTILE)  # a reason no code writes, still shown safely
        for url in (CHANGELIST, reverse("admin:hostguard_mismatchlog_change", args=[row.pk])):
            text = admin_client.get(url).content.decode()
            assert "<script>alert(1)" not in text
            assert "<img src=x" not in text
            assert "<svg onload" not in text
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        chart = admin_client.get(CHANGELIST).content.decode()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in chart.split("<figure")[1].split("</figure>")[0]


class TestChart:
    def test_bars_per_hour_by_reason_over_48_hours(self) -> None:
        now = timezone.now()
        make_row("a.example", count=5, hours_ago=1)
        make_row("b.example", count=3, hours_ago=1)
        make_row("c.example", "other_deployment", count=2, hours_ago=1)
        make_row("d.example", count=4, hours_ago=30)
        make_row("e.example", count=1000, hours_ago=49)
        chart = str(hourly_chart(MismatchLog.objects.all(), now))
        assert chart.count("<rect x=") == 3
        assert "unknown host × 8</title>" in chart
        assert "served by another deployment × 2</title>" in chart
        assert "unknown host × 4</title>" in chart
        assert "1000" not in chart  # older than 48 hours
        assert "<strong>12</strong>" in chart  # the legend's total for unknown_host

    def test_empty_period_says_so(self) -> None:
        make_row(hours_ago=100)
        assert "No mismatches in the last 48 hours." in str(hourly_chart(MismatchLog.objects.all()))


class TestPermissions:
    def test_nobody_can_add_or_change(self, admin_client: Client) -> None:
        row = make_row()
        assert admin_client.get(reverse("admin:hostguard_mismatchlog_add")).status_code == 403
        change = reverse("admin:hostguard_mismatchlog_change", args=[row.pk])
        page = admin_client.get(change)
        assert page.status_code == 200
        assert 'name="_save"' not in page.content.decode()
        assert admin_client.post(change, {"host": "changed.example", "count": "1"}).status_code == 403
        row.refresh_from_db()
        assert (row.host, row.count) == ("evil.example", 1)
        assert not Permission.objects.filter(codename__in=["add_mismatchlog", "change_mismatchlog"]).exists()

    def test_view_only_staff_can_read_and_export_but_not_delete_or_allow(self) -> None:
        row = make_row()
        make_tenant("acme")
        client = staff("view_mismatchlog")
        page = client.get(CHANGELIST)
        assert page.status_code == 200
        choices = [choice for choice, _ in page.context["action_form"].fields["action"].choices]
        assert "export_csv" in choices
        assert "delete_selected" not in choices
        assert "allow_host" not in choices
        action(client, "delete_selected", [row], post="yes")
        assert client.post(reverse("admin:hostguard_mismatchlog_delete", args=[row.pk])).status_code == 403
        assert MismatchLog.objects.filter(pk=row.pk).exists()
        action(client, "allow_host", [row], confirm="yes", tenant=str(Tenant.objects.get().pk))
        assert not Authority.objects.exists()

    def test_delete_needs_the_delete_permission(self) -> None:
        rows = [make_row("a.example"), make_row("b.example")]
        client = staff("view_mismatchlog", "delete_mismatchlog")
        response = action(client, "delete_selected", rows, post="yes")
        assert response.status_code == 302
        assert not MismatchLog.objects.exists()

    def test_staff_without_view_permission_sees_nothing(self) -> None:
        make_row()
        assert staff().get(CHANGELIST).status_code == 403


class TestExportCsv:
    def test_exports_the_selected_rows_safe_from_formulas(self, admin_client: Client) -> None:
        tenant = make_tenant("acme")
        rows = [
            make_row("evil.example", count=3, path='=HYPERLINK("http://x")', user_agent="+cmd|' /C calc'!A0"),
            make_row("-2+3", "malformed_host", path="@SUM(1)", user_agent="\tTAB", remote_addr="\rCR", tenant=tenant),
        ]
        make_row("not-selected.example")
        response = admin_client.post(CHANGELIST, {"action": "export_csv", "_selected_action": [r.pk for r in rows]})
        assert response.status_code == 200
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert response["Content-Disposition"].startswith('attachment; filename="host-mismatches-')
        table = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert [line["host"] for line in table] == ["evil.example", "'-2+3"]
        evil, malformed = table
        assert (evil["count"], evil["port"], evil["reason"]) == ("3", "80", "unknown_host")
        assert evil["path"] == '\'=HYPERLINK("http://x")'
        assert evil["user_agent"] == "'+cmd|' /C calc'!A0"
        assert (malformed["path"], malformed["user_agent"], malformed["remote_addr"]) == ("'@SUM(1)", "'\tTAB", "'\rCR")
        assert (malformed["port"], malformed["tenant"]) == ("", "acme")


class TestAllowHost:
    def test_confirm_then_the_host_is_served(self, admin_client: Client) -> None:
        acme = make_tenant("acme", "local", "acme.example")
        make_tenant("globex", "remote")
        rows = [make_row("shop.example", count=9), make_row("shop.example", hours_ago=2)]
        page = action(admin_client, "allow_host", rows)
        assert page.status_code == 200
        text = page.content.decode()
        assert "<code>shop.example</code>" in text
        assert "Acme (acme) — local" in text
        assert "Globex (globex) — remote" in text
        assert not Authority.objects.filter(host="shop.example").exists()

        assert Client().get("/api/whoami", headers={"host": "shop.example"}).status_code == 421
        done = action(admin_client, "allow_host", rows, confirm="yes", tenant=str(acme.pk))
        assert done.status_code == 302
        authority = Authority.objects.get(host="shop.example")
        assert (authority.tenant, authority.port, authority.scheme) == (acme, None, "")
        response = Client().get("/api/whoami", headers={"host": "shop.example"})
        assert response.status_code == 200
        assert response.json()["tenant"] == "acme"
        assert "Added shop.example to the tenant “Acme”." in messages_of(admin_client.get(CHANGELIST))

    def test_a_tenant_must_be_chosen(self, admin_client: Client) -> None:
        make_tenant("acme")
        row = make_row("shop.example")
        page = action(admin_client, "allow_host", [row], confirm="yes", tenant="")
        assert page.status_code == 200
        assert "This field is required." in page.content.decode()
        assert not Authority.objects.filter(host="shop.example").exists()

    def test_malformed_and_overflow_rows_are_refused(self, admin_client: Client) -> None:
        make_tenant("acme")
        rows = [make_row(HOSTILE, "malformed_host"), make_row(MismatchLog.OVERFLOW_HOST)]
        response = action(admin_client, "allow_host", rows)
        assert response.status_code == 302
        page = admin_client.get(CHANGELIST)
        notes = messages_of(page)
        assert f"“{HOSTILE}” is not a well-formed host: it cannot be allowed." in notes
        assert "“(other hosts)” counts many hosts together: it cannot be allowed." in notes
        assert "“&lt;script&gt;alert(1)&lt;/script&gt;” is not a well-formed host" in page.content.decode()
        assert not Authority.objects.exists()

    def test_a_claimed_host_is_refused_naming_its_tenant(self, admin_client: Client) -> None:
        make_tenant("globex", "remote", "globex.example")
        acme = make_tenant("acme")
        rows = [make_row("globex.example", "other_deployment"), make_row("fresh.example")]
        page = action(admin_client, "allow_host", rows)
        assert "“globex.example” is already claimed by the tenant “Globex”: edit that tenant instead." in messages_of(
            page
        )
        assert "<code>globex.example</code>" not in page.content.decode()
        action(admin_client, "allow_host", rows, confirm="yes", tenant=str(acme.pk))
        assert Authority.objects.get(host="globex.example").tenant.slug == "globex"
        assert Authority.objects.get(host="fresh.example").tenant == acme

    def test_the_added_host_keeps_its_lower_case_and_staff_learn_how_soon_it_is_served(
        self, admin_client: Client, settings: Any
    ) -> None:
        settings.HOSTGUARD_REFRESH_SECONDS = 7
        acme = make_tenant("acme")
        row = make_row("scanner.test")
        action(admin_client, "allow_host", [row], confirm="yes", tenant=str(acme.pk))
        page = admin_client.get(CHANGELIST).content.decode()
        assert "Added scanner.test to the tenant “Acme”." in page
        assert "Scanner.test" not in page  # the admin capitalises a message's first letter
        assert "live in this process at once and in every other process within 7 seconds" in page

    def test_a_host_under_another_tenants_wildcard_needs_confirming(self, admin_client: Client) -> None:
        make_tenant("globex", "remote", "*.globex.example")
        acme = make_tenant("acme")
        rows = [make_row("x.globex.example", "other_deployment"), make_row("fresh.example")]

        refused = action(admin_client, "allow_host", rows, confirm="yes", tenant=str(acme.pk))
        assert refused.status_code == 200
        text = refused.content.decode()
        assert "x.globex.example shares host names with the tenant “Globex” (*.globex.example)." in text
        assert 'name="claim_shared"' in text
        assert not Authority.objects.filter(tenant=acme).exists()  # neither host: one decision for the lot

        done = action(admin_client, "allow_host", rows, confirm="yes", tenant=str(acme.pk), claim_shared="on")
        assert done.status_code == 302
        assert sorted(acme.authorities.values_list("host", flat=True)) == ["fresh.example", "x.globex.example"]
        shared = Authority.objects.get(host="x.globex.example")
        history = LogEntry.objects.get(object_id=str(shared.pk)).get_change_message()
        assert "Confirmed a claim on shared names" in history
        assert "“Globex”" in history
        assert (
            "Confirmed"
            not in LogEntry.objects.get(
                object_id=str(acme.authorities.get(host="fresh.example").pk)
            ).get_change_message()
        )

    def test_the_tenant_that_holds_the_wildcard_needs_no_confirming(self, admin_client: Client) -> None:
        globex = make_tenant("globex", "local", "*.globex.example")
        row = make_row("x.globex.example", "inactive")
        done = action(admin_client, "allow_host", [row], confirm="yes", tenant=str(globex.pk))
        assert done.status_code == 302
        assert Authority.objects.get(host="x.globex.example").tenant == globex

    def test_only_tenants_the_user_may_view_are_offered(self) -> None:
        acme = make_tenant("acme")
        row = make_row("shop.example")
        blind = staff("view_mismatchlog", "add_authority")
        page = action(blind, "allow_host", [row])
        assert page.status_code == 200
        assert list(page.context["form"].fields["tenant"].queryset) == []
        assert "Acme (acme)" not in page.content.decode()
        assert "You may not view any tenant" in page.content.decode()
        action(blind, "allow_host", [row], confirm="yes", tenant=str(acme.pk))
        assert not Authority.objects.exists()

        for permission in (f"view_{Tenant._meta.model_name}", f"change_{Tenant._meta.model_name}"):
            seeing = staff("view_mismatchlog", "add_authority", permission)
            assert "Acme (acme) — local" in action(seeing, "allow_host", [row]).content.decode()


GROUPED = reverse("admin:hostguard_mismatchlog_grouped")


class TestGroupedView:
    def rows_of(self, response: Any) -> list[tuple[str, str, int, int]]:
        return [(g.host, g.reason, g.total, g.windows) for g in response.context["groups"]]

    def test_one_line_per_host_and_reason_with_totals_and_times(self, admin_client: Client) -> None:
        for minute in range(30):  # a host refused every minute: 30 rows
            make_row("scanner.example", count=2, hours_ago=minute / 60)
        make_row("scanner.example", "sni_mismatch", count=5)
        make_row("old.example", count=1, hours_ago=5)
        response = admin_client.get(GROUPED)
        assert response.status_code == 200
        assert self.rows_of(response) == [
            ("scanner.example", "unknown_host", 60, 30),
            ("scanner.example", "sni_mismatch", 5, 1),
            ("old.example", "unknown_host", 1, 1),
        ]
        first = response.context["groups"][0]
        oldest = MismatchLog.objects.filter(host="scanner.example", reason="unknown_host").order_by("first_seen")
        assert (first.first_seen, first.last_seen) == (oldest.first().first_seen, oldest.last().last_seen)
        text = response.content.decode()
        assert "30 rows" in text
        assert "Page 1 of 1: 3 hosts and reasons\n(from 32 rows)" in text
        assert "32 results" not in text  # the list's row count would read as a count of these lines

    def test_a_lines_rows_link_lists_exactly_its_rows(self, admin_client: Client) -> None:
        for minute in range(3):
            make_row("scanner.example", hours_ago=minute / 60)
        make_row("scanner.example", "sni_mismatch")
        make_row("other.example")
        line = admin_client.get(GROUPED).context["groups"][0]
        assert line.rows_url.startswith(CHANGELIST + "?")
        listed = admin_client.get(line.rows_url).context["cl"].result_list
        assert sorted((row.host, row.reason) for row in listed) == [("scanner.example", "unknown_host")] * 3

    def test_it_follows_the_lists_filters_dates_and_search(self, admin_client: Client) -> None:
        make_row("scanner.example", user_agent="sqlmap/1.7")
        make_row("a..b", "malformed_host")
        make_row("old.example", hours_ago=24 * 400)
        this_year = str(timezone.localtime().year)
        by_reason = admin_client.get(GROUPED, {"reason__exact": "malformed_host"})
        assert [line[0] for line in self.rows_of(by_reason)] == ["a..b"]
        by_search = admin_client.get(GROUPED, {"q": "sqlmap", "reason__exact": "unknown_host"})
        assert [line[0] for line in self.rows_of(by_search)] == ["scanner.example"]
        # Searching again keeps the filters.
        assert '<input type="hidden" name="reason__exact" value="unknown_host">' in by_search.content.decode()
        by_year = admin_client.get(GROUPED, {"last_seen__year": this_year})
        assert "old.example" not in [line[0] for line in self.rows_of(by_year)]
        # The rows link keeps the period: the list it opens has the same date filter.
        line = by_year.context["groups"][0]
        assert f"last_seen__year={this_year}" in line.rows_url
        # The filter sidebar's links stay on the grouped page.
        assert 'href="?reason__exact=malformed_host' in admin_client.get(GROUPED).content.decode()

    def test_reachable_from_the_list_with_its_filters(self, admin_client: Client) -> None:
        make_row("scanner.example")
        page = admin_client.get(CHANGELIST, {"reason__exact": "unknown_host", "o": "2"})
        link = page.context["grouped_url"]
        assert link == GROUPED + "?reason__exact=unknown_host"
        assert 'id="grouped-link"' in page.content.decode()
        back = admin_client.get(link)
        assert back.context["rows_url"] == CHANGELIST + "?reason__exact=unknown_host"

    def test_paginated_with_a_bounded_number_of_queries(
        self, admin_client: Client, django_assert_max_num_queries: Any
    ) -> None:
        moment = timezone.now()
        MismatchLog.objects.bulk_create(
            MismatchLog(
                deployment="local",
                reason="unknown_host",
                host=f"h{n % 250}.example",
                port=80,
                scheme="http",
                window_start=(moment - timedelta(minutes=n // 250)).replace(second=0, microsecond=0),
                first_seen=moment,
                last_seen=moment,
                count=1,
            )
            for n in range(5000)
        )
        with django_assert_max_num_queries(10):
            first = admin_client.get(GROUPED)
        assert len(first.context["groups"]) == 100
        assert first.context["groups"][0].windows == 20
        assert "Page 1 of 3: 250 hosts and reasons\n(from 5000 rows)" in first.content.decode()
        with django_assert_max_num_queries(10):
            last = admin_client.get(GROUPED, {"p": "3", "reason__exact": "unknown_host"})
        assert len(last.context["groups"]) == 50
        seen = {g.host for page in ("1", "2", "3") for g in admin_client.get(GROUPED, {"p": page}).context["groups"]}
        assert len(seen) == 250

    def test_needs_the_view_permission_and_escapes_hosts(self, admin_client: Client) -> None:
        make_row(HOSTILE, "malformed_host")
        assert staff().get(GROUPED).status_code == 403
        text = admin_client.get(GROUPED).content.decode()
        assert "<script>alert(1)" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert staff("view_mismatchlog").get(GROUPED).status_code == 200

    def test_a_bad_filter_is_sent_back_not_a_500(self, admin_client: Client) -> None:
        make_row("scanner.example")
        response = admin_client.get(GROUPED, {"last_seen__year": "not-a-year"})
        assert (response.status_code, response["Location"]) == (302, GROUPED + "?e=1")  # as the list does
        assert admin_client.get(response["Location"]).status_code == 200
        beyond = admin_client.get(GROUPED, {"p": "999"})  # the last page, as Django's lists do
        assert [g.host for g in beyond.context["groups"]] == ["scanner.example"]
