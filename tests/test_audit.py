"""The mismatch audit log: exact counts, bounded memory and rows, logging, signal, report mode."""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.db.models import Sum
from django.test import AsyncClient, Client, override_settings
from django.utils import timezone

from hostguard import audit
from hostguard.audit import Recorder, recorder
from hostguard.models import Authority, Deployment, MismatchLog, Tenant
from hostguard.signals import host_mismatch

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clear_of_a_window_boundary() -> None:
    """Start each test at least 2 s before a minute (a window) ends: the requests of
    one test then land in one window, as the assertions expect."""
    remaining = 60 - time.time() % 60
    if remaining < 2:
        time.sleep(remaining + 0.05)


def window_now(offset: float = 10) -> float:
    """A moment ``offset`` seconds into the current 60 s window."""
    return (time.time() // 60) * 60 + offset


def make_tenant(slug: str, deployment: str, *hosts: str, active: bool = True) -> Tenant:
    dep, _ = Deployment.objects.get_or_create(name=deployment)
    tenant = Tenant.objects.create(name=slug.title(), slug=slug, deployment=dep, is_active=active)
    for host in hosts:
        Authority.objects.create(tenant=tenant, host=host)
    return tenant


@pytest.fixture
def sites() -> None:
    make_tenant("acme", "local", "acme.example")
    make_tenant("globex", "remote", "globex.example")


def get(client: Client, host: str, path: str = "/api/whoami", **meta: str) -> Any:
    return client.get(path, headers={"host": host}, **meta)


def totals() -> dict[str, int]:
    return dict(MismatchLog.objects.values_list("reason").annotate(total=Sum("count")).order_by())


def mismatch_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "hostguard.mismatch"]


@pytest.mark.usefixtures("sites")
class TestRecording:
    def test_refusals_are_counted_exactly_without_touching_the_database(
        self, client: Client, django_assert_num_queries: Any
    ) -> None:
        get(client, "acme.example")  # loads the policy snapshot
        with django_assert_num_queries(0):
            for _ in range(7):
                assert get(client, "evil.example", HTTP_USER_AGENT="curl/8").status_code == 421
            for _ in range(3):
                assert get(client, "globex.example", path="/some/page").status_code == 421
            for _ in range(2):
                assert get(client, "a..b").status_code == 400
            assert get(client, "acme.example", path="/healthz").status_code == 200
        assert MismatchLog.objects.count() == 0

        assert audit.flush() == 12

        assert totals() == {"unknown_host": 7, "other_deployment": 3, "malformed_host": 2}
        evil = MismatchLog.objects.get(reason="unknown_host")
        assert (evil.deployment, evil.host, evil.port, evil.scheme, evil.tenant) == (
            "local",
            "evil.example",
            80,
            "http",
            None,
        )
        assert (evil.method, evil.path, evil.remote_addr, evil.user_agent) == (
            "GET",
            "/api/whoami",
            "127.0.0.1",
            "curl/8",
        )
        assert evil.first_seen <= evil.last_seen
        assert evil.window_start <= evil.first_seen < evil.window_start + timedelta(seconds=60)
        globex = MismatchLog.objects.get(reason="other_deployment")
        assert globex.tenant == Tenant.objects.get(slug="globex")
        assert globex.path == "/some/page"
        malformed = MismatchLog.objects.get(reason="malformed_host")
        assert (malformed.host, malformed.port, malformed.authority) == ("a..b", None, "a..b")

    def test_the_sample_is_the_first_request_of_the_window(self, client: Client) -> None:
        get(client, "evil.example", path="/first", HTTP_USER_AGENT="first-agent")
        get(client, "evil.example", path="/second", HTTP_USER_AGENT="second-agent")
        audit.flush()
        row = MismatchLog.objects.get()
        assert (row.count, row.path) == (2, "/first")

    def test_later_flushes_add_to_the_same_row(self, client: Client) -> None:
        for _ in range(3):
            get(client, "evil.example")
        assert audit.flush() == 3
        first = MismatchLog.objects.get()
        for _ in range(2):
            get(client, "evil.example")
        assert audit.flush() == 2
        row = MismatchLog.objects.get()
        assert row.count == 5
        assert row.first_seen == first.first_seen
        assert row.last_seen >= first.last_seen
        assert audit.flush() == 0

    def test_two_processes_add_up_in_one_row(self) -> None:
        other_process = Recorder()
        now = window_now()
        for _ in range(4):
            recorder.record("local", "unknown_host", "evil.example", 80, "http", now=now)
        for _ in range(6):
            other_process.record("local", "unknown_host", "evil.example", 80, "http", now=now + 1)
        other_process.flush()
        recorder.flush()
        row = MismatchLog.objects.get()
        assert row.count == 10
        assert row.last_seen.timestamp() == pytest.approx(now + 1, abs=0.01)
        assert row.first_seen.timestamp() == pytest.approx(now, abs=0.01)

    def test_each_time_window_gets_its_own_row(self) -> None:
        with override_settings(HOSTGUARD_AUDIT_WINDOW_SECONDS=60):
            start = (time.time() // 60) * 60 - 600
            recorder.record("local", "unknown_host", "evil.example", 80, "http", now=start + 5)
            recorder.record("local", "unknown_host", "evil.example", 80, "http", now=start + 59)
            recorder.record("local", "unknown_host", "evil.example", 80, "http", now=start + 61)
            recorder.flush()
        rows = list(MismatchLog.objects.order_by("window_start").values_list("window_start", "count"))
        assert [(moment.timestamp(), count) for moment, count in rows] == [(start, 2), (start + 60, 1)]

    def test_ports_and_schemes_are_separate_rows(self, client: Client) -> None:
        get(client, "evil.example")
        get(client, "evil.example:8080")
        client.get("/", headers={"host": "evil.example"}, secure=True)
        audit.flush()
        assert sorted(MismatchLog.objects.values_list("port", "scheme", "count")) == [
            (80, "http", 1),
            (443, "https", 1),
            (8080, "http", 1),
        ]

    def test_a_deleted_tenant_does_not_lose_the_batch(self, client: Client) -> None:
        get(client, "globex.example")
        get(client, "evil.example")
        Tenant.objects.filter(slug="globex").delete()
        assert audit.flush() == 2
        assert MismatchLog.objects.get(reason="other_deployment").tenant is None

    @override_settings(HOSTGUARD_AUDIT=False)
    def test_audit_can_be_switched_off(self, client: Client) -> None:
        assert get(client, "evil.example").status_code == 421
        assert audit.flush() == 0
        assert MismatchLog.objects.count() == 0

    @override_settings(HOSTGUARD_AUDIT_MAX_KEYS="many")
    def test_a_recording_failure_never_changes_the_response(
        self, client: Client, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.WARNING):
            assert get(client, "evil.example").status_code == 421
            assert get(client, "a..b").status_code == 400
        assert any(r.name == "hostguard.audit" and "could not record" in r.getMessage() for r in caplog.records)


class TestBounds:
    @override_settings(HOSTGUARD_AUDIT_MAX_KEYS=5)
    def test_hosts_beyond_the_cap_fold_into_one_overflow_row_per_reason(self) -> None:
        now = time.time()
        for index in range(20):
            for _ in range(3):
                recorder.record("local", "unknown_host", f"h{index}.example", 80, "http", now=now)
        recorder.record("local", "malformed_host", "a..b", None, "http", now=now)
        assert recorder.flush() == 61
        rows = set(MismatchLog.objects.values_list("reason", "host", "count"))
        assert rows == {
            ("unknown_host", "h0.example", 3),
            ("unknown_host", "h1.example", 3),
            ("unknown_host", "h2.example", 3),
            ("unknown_host", "h3.example", 3),
            ("unknown_host", "h4.example", 3),
            ("unknown_host", MismatchLog.OVERFLOW_HOST, 45),
            ("malformed_host", MismatchLog.OVERFLOW_HOST, 1),
        }
        overflow = MismatchLog.objects.get(host=MismatchLog.OVERFLOW_HOST, reason="unknown_host")
        assert (overflow.reason, overflow.port, overflow.tenant, overflow.authority) == (
            "unknown_host",
            None,
            None,
            MismatchLog.OVERFLOW_HOST,
        )

    @override_settings(HOSTGUARD_AUDIT_MAX_KEYS=5)
    def test_the_cap_holds_across_processes(self) -> None:
        now = time.time()
        first, second = Recorder(), Recorder()
        for index in range(4):
            first.record("local", "unknown_host", f"a{index}.example", 80, "http", now=now)
            second.record("local", "unknown_host", f"b{index}.example", 80, "http", now=now)
            second.record("local", "unknown_host", f"b{index}.example", 80, "http", now=now)
        first.flush()
        second.flush()
        assert MismatchLog.objects.exclude(host=MismatchLog.OVERFLOW_HOST).count() == 5
        assert MismatchLog.objects.get(host=MismatchLog.OVERFLOW_HOST).count == 6
        assert totals() == {"unknown_host": 12}

    @override_settings(HOSTGUARD_AUDIT_MAX_KEYS=2, HOSTGUARD_AUDIT_WINDOW_SECONDS=60)
    def test_memory_is_bounded_and_what_is_dropped_is_counted_and_logged(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        # The database never gets a flush: a long outage under a flood of new hosts.
        start = (time.time() // 60) * 60 - 200 * 60
        for window in range(200):
            for index in range(3):
                recorder.record("local", "unknown_host", f"h{index}.example", 80, "http", now=start + window * 60)
        rows, events = recorder.pending()
        assert rows <= 2 * audit.PENDING_FACTOR + audit.OVERFLOW_SLACK
        assert recorder.dropped > 0
        assert events + recorder.dropped == 600
        with caplog.at_level(logging.WARNING):
            assert recorder.flush() == events
        dropped = [r for r in caplog.records if r.name == "hostguard.audit" and "dropped" in r.getMessage()]
        assert len(dropped) == 1
        assert dropped[0].levelno == logging.WARNING
        assert dropped[0].dropped == recorder.dropped  # type: ignore[attr-defined]
        assert totals() == {"unknown_host": 600 - recorder.dropped}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
class TestDatabaseFailures:
    def test_a_failed_flush_keeps_every_event_for_the_next_one(self, caplog: pytest.LogCaptureFixture) -> None:
        now = window_now()
        for _ in range(10):
            recorder.record("local", "unknown_host", "evil.example", 80, "http", now=now)
        # A real failure: the table is gone (a database not migrated, or restored from an old dump).
        with connection.schema_editor() as editor:
            editor.delete_model(MismatchLog)
        try:
            with caplog.at_level(logging.WARNING):
                assert recorder.flush() == 0
                recorder.record("local", "unknown_host", "evil.example", 80, "http", now=now + 1)
                recorder.record("local", "unknown_host", "other.example", 80, "http", now=now + 1)
                assert recorder.flush() == 0
            assert recorder.pending() == (2, 12)
            failures = [r for r in caplog.records if r.name == "hostguard.audit"]
            # One line for the outage, not one per attempt; never ERROR.
            assert len(failures) == 1
            assert failures[0].levelno == logging.WARNING
            assert "kept in memory" in failures[0].getMessage()
        finally:
            with connection.schema_editor() as editor:
                editor.create_model(MismatchLog)
        assert recorder.flush() == 12
        assert dict(MismatchLog.objects.values_list("host", "count")) == {"evil.example": 11, "other.example": 1}
        assert recorder.pending() == (0, 0)

    def test_concurrent_writers_add_up_exactly(self) -> None:
        now = time.time()
        writers = [Recorder() for _ in range(4)]
        for number, writer in enumerate(writers):
            for index in range(30):
                for _ in range(number + 1):
                    writer.record("local", "unknown_host", f"h{index}.example", 80, "http", now=now)
        errors: list[BaseException] = []

        def drain(writer: Recorder) -> None:
            try:
                deadline = time.monotonic() + 20
                # SQLite answers "locked" to all but one writer at a time: retry as the thread does.
                while writer.pending()[0] and time.monotonic() < deadline:
                    writer.flush()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=drain, args=(writer,)) for writer in writers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors
        assert all(writer.pending() == (0, 0) for writer in writers)
        assert MismatchLog.objects.count() == 30
        assert set(MismatchLog.objects.values_list("count", flat=True)) == {1 + 2 + 3 + 4}

    def test_the_background_thread_flushes_on_its_own(self) -> None:
        writer = Recorder()
        try:
            with override_settings(HOSTGUARD_AUDIT_FLUSH_SECONDS=0.05):
                writer.record("local", "unknown_host", "evil.example", 80, "http")
                deadline = time.monotonic() + 5
                while not MismatchLog.objects.exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
            assert MismatchLog.objects.get().count == 1
        finally:
            writer.shutdown()

    def test_shutdown_writes_what_is_buffered(self) -> None:
        writer = Recorder()
        for _ in range(3):
            writer.record("local", "unknown_host", "evil.example", 80, "http")
        writer.shutdown()
        assert MismatchLog.objects.get().count == 3


def test_a_forked_child_starts_empty_and_the_parent_keeps_its_events() -> None:
    recorder.record("local", "unknown_host", "evil.example", 80, "http")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        os._exit(0 if recorder.pending() == (0, 0) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert recorder.pending() == (1, 1)


@pytest.mark.usefixtures("sites")
class TestLogging:
    def test_one_line_per_host_and_reason_then_a_summary(
        self, client: Client, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO):
            for _ in range(10):
                for host in ("evil.example", "globex.example", "other.example"):
                    get(client, host)
            lines = mismatch_records(caplog)
            assert len(lines) == 3
            assert {line.host for line in lines} == {  # type: ignore[attr-defined]
                "evil.example",
                "globex.example",
                "other.example",
            }
            globex = next(line for line in lines if line.host == "globex.example")  # type: ignore[attr-defined]
            assert (globex.reason, globex.port, globex.scheme, globex.tenant, globex.enforced) == (  # type: ignore[attr-defined]
                "other_deployment",
                80,
                "http",
                "globex",
                True,
            )
            assert "refused other_deployment: host=globex.example port=80" in globex.getMessage()
            caplog.clear()
            recorder.flush(final=True)
            summary = mismatch_records(caplog)
            assert len(summary) == 1
            assert summary[0].suppressed == 27  # type: ignore[attr-defined]
            assert "27 more mismatches" in summary[0].getMessage()
        assert all(record.levelno == logging.WARNING for record in caplog.records)

    def test_logged_values_have_no_control_characters(self, client: Client, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.WARNING):
            get(client, "evil\x1b[31m.example\r\nX-Injected: 1", path="/a%0Db", HTTP_USER_AGENT="agent\x00\x07")
        (line,) = mismatch_records(caplog)
        message = line.getMessage()
        assert "\x1b" not in message
        for control in "\r\n\x00":
            assert control not in message
        assert "evil\\x1b[31m.example\\x0d\\x0aX-Injected: 1" in message
        assert line.path == "/a\\x0db"  # type: ignore[attr-defined]
        assert line.user_agent == "agent\\x00\\x07"  # type: ignore[attr-defined]
        audit.flush()
        row = MismatchLog.objects.get()
        assert row.host == "evil\\x1b[31m.example\\x0d\\x0aX-Injected: 1"
        assert row.user_agent == "agent\\x00\\x07"

    def test_long_values_are_bounded(self, client: Client) -> None:
        assert get(client, "x" * 5000, path="/" + "p" * 5000, HTTP_USER_AGENT="u" * 5000).status_code == 400
        audit.flush()
        row = MismatchLog.objects.get()
        assert len(row.host) == audit.MAX_HOST
        assert row.host.endswith("…")
        assert len(row.path) == audit.MAX_PATH
        assert len(row.user_agent) == audit.MAX_USER_AGENT

    @override_settings(HOSTGUARD_AUDIT_MAX_KEYS=3)
    def test_log_lines_are_capped_per_window(self, client: Client, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.WARNING):
            for index in range(10):
                get(client, f"h{index}.example")
            assert len(mismatch_records(caplog)) == 3
            caplog.clear()
            recorder.flush(final=True)
        (summary,) = mismatch_records(caplog)
        assert summary.suppressed == 7  # type: ignore[attr-defined]
        assert MismatchLog.OVERFLOW_HOST in summary.getMessage()


@pytest.mark.usefixtures("sites")
class TestSignal:
    def test_sent_for_every_refusal_with_its_details(self, client: Client) -> None:
        received: list[dict[str, Any]] = []

        def receiver(sender: Any, **kwargs: Any) -> None:
            received.append(kwargs)

        host_mismatch.connect(receiver)
        try:
            get(client, "evil.example:8080")
            get(client, "globex.example")
            get(client, "bad host\x07")
            get(client, "acme.example")
            get(client, "evil.example", path="/healthz")
        finally:
            host_mismatch.disconnect(receiver)
        assert [(k["reason"], k["host"], k["port"], k["scheme"]) for k in received] == [
            ("unknown_host", "evil.example", 8080, "http"),
            ("other_deployment", "globex.example", 80, "http"),
            ("malformed_host", "bad host\\x07", None, "http"),
        ]
        assert all(k["request"].path == "/api/whoami" for k in received)

    def test_a_raising_receiver_never_breaks_the_response(self, client: Client) -> None:
        def broken(sender: Any, **kwargs: Any) -> None:
            raise RuntimeError("receiver bug")

        host_mismatch.connect(broken)
        try:
            assert get(client, "evil.example").status_code == 421
            assert get(client, "a..b").status_code == 400
            with override_settings(HOSTGUARD_MODE="report"):
                assert get(client, "globex.example").status_code == 200
        finally:
            host_mismatch.disconnect(broken)

    def test_async_receivers_are_awaited_on_the_async_path(self) -> None:
        received: list[str] = []

        async def receiver(sender: Any, **kwargs: Any) -> None:
            received.append(kwargs["host"])

        host_mismatch.connect(receiver)
        try:
            # AsyncClient always sends "Host: testserver", a host nobody serves here.
            from asgiref.sync import async_to_sync

            response = async_to_sync(AsyncClient().get)("/api/whoami")
        finally:
            host_mismatch.disconnect(receiver)
        assert response.status_code == 421
        assert received == ["testserver"]


@pytest.mark.usefixtures("sites")
class TestReportMode:
    @pytest.fixture(autouse=True)
    def _report_mode(self) -> Any:
        with override_settings(HOSTGUARD_MODE="report"):
            yield

    def test_would_be_421s_pass_and_say_what_would_have_happened(self, client: Client) -> None:
        response = get(client, "globex.example")
        assert response.status_code == 200
        assert response.json()["tenant"] == "globex"
        decision = response.wsgi_request.hostguard
        assert (decision.verdict, decision.reason, decision.reported, decision.allowed) == (
            "misdirected",
            "other_deployment",
            True,
            False,
        )
        # Never more than the site served before: with ALLOWED_HOSTS = ["*"] a host
        # no tenant claims stays refused (a Host-header poisoning attempt, not a rollout gap).
        unknown = get(client, "evil.example")
        assert unknown.status_code == 421
        assert unknown.wsgi_request.hostguard.reported is False
        served = get(client, "acme.example")
        assert (served.json()["tenant"], served.wsgi_request.hostguard.reported) == ("acme", False)

    def test_malformed_hosts_are_still_refused(self, client: Client) -> None:
        response = get(client, "a..b")
        assert response.status_code == 400
        assert response.wsgi_request.hostguard.reported is False

    def test_would_be_421s_are_recorded_and_logged(self, client: Client, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                get(client, "globex.example")
            get(client, "evil.example")
            get(client, "a..b")
        audit.flush()
        assert totals() == {"other_deployment": 3, "unknown_host": 1, "malformed_host": 1}
        lines = {line.reason: line for line in mismatch_records(caplog)}  # type: ignore[attr-defined]
        assert lines["other_deployment"].getMessage().startswith("would refuse (report-only) other_deployment")
        assert lines["other_deployment"].enforced is False  # type: ignore[attr-defined]
        assert lines["unknown_host"].enforced is True  # type: ignore[attr-defined]
        assert lines["malformed_host"].enforced is True  # type: ignore[attr-defined]

    def test_async_path_reports_too(self) -> None:
        from asgiref.sync import async_to_sync

        # AsyncClient always sends "Host: testserver": a host no tenant claims stays refused.
        response = async_to_sync(AsyncClient().get)("/api/whoami")
        assert response.status_code == 421
        audit.flush()
        assert totals() == {"unknown_host": 1}


class TestPrune:
    @staticmethod
    def row(host: str, days_ago: float) -> MismatchLog:
        moment = timezone.now() - timedelta(days=days_ago)
        return MismatchLog.objects.create(
            reason="unknown_host",
            host=host,
            port=80,
            scheme="http",
            window_start=moment,
            first_seen=moment,
            last_seen=moment,
            count=1,
        )

    def prune(self, *args: str) -> str:
        """The mismatch log's line of the output (the change log's follows; tests/test_deltas.py)."""
        out = StringIO()
        call_command("hostguard_prune", *args, stdout=out)
        return out.getvalue().splitlines(keepends=True)[0]

    def test_retention_default_then_days_then_everything(self) -> None:
        self.row("old.example", 40)
        self.row("recent.example", 10)
        self.row("now.example", 0)
        assert self.prune() == "Deleted 1 host mismatch row last seen more than 30 days ago.\n"
        assert set(MismatchLog.objects.values_list("host", flat=True)) == {"recent.example", "now.example"}
        assert self.prune("--days", "5") == "Deleted 1 host mismatch row last seen more than 5 days ago.\n"
        assert self.prune("--days", "0", "--batch-size", "1") == "Deleted 1 host mismatch row (all of them).\n"
        assert MismatchLog.objects.count() == 0

    @override_settings(HOSTGUARD_AUDIT_RETENTION_DAYS=7)
    def test_retention_setting_and_batches(self) -> None:
        for index in range(5):
            self.row(f"h{index}.example", 8)
        self.row("kept.example", 1)
        assert self.prune("--batch-size", "2") == "Deleted 5 host mismatch rows last seen more than 7 days ago.\n"
        assert list(MismatchLog.objects.values_list("host", flat=True)) == ["kept.example"]

    def test_negative_days_is_a_clear_error(self) -> None:
        with pytest.raises(CommandError, match="--days must be 0 or more"):
            self.prune("--days", "-1")
