"""The mismatch log in the admin: read-only, chart, CSV export, "allow this host", escaping."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from hostguard.admin.chart import hourly_chart
from hostguard.audit import OVERFLOW_HOST
from hostguard.models import Authority, Deployment, MismatchLog, Tenant

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
        "port": None if reason == "malformed_host" or host == OVERFLOW_HOST else 80,
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
        rows = [make_row(HOSTILE, "malformed_host"), make_row(OVERFLOW_HOST)]
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
