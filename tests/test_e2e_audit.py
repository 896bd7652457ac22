"""End to end: the mismatch audit log under real gunicorn (2 sync workers) and floods.

Thousands of requests over hundreds of bogus hosts from several client threads:
exact totals per reason in MismatchLog, a bounded number of rows and log lines, fast
responses while the SQLite file is exclusively locked, and a graceful stop that
writes whatever the workers still buffer — or, when the database hangs, says
exactly what it could not write, within gunicorn's graceful timeout.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests import e2e
from tests.e2e import Server, Site
from tests.rawhttp import http_request, raw_request
from tests.relay import Relay

pytestmark = pytest.mark.e2e

DATA = {
    "deployments": [{"name": "eu-1"}, {"name": "us-1"}],
    "tenants": [
        {"slug": "acme", "name": "Acme", "deployment": "eu-1", "authorities": ["acme.example"]},
        {"slug": "globex", "name": "Globex", "deployment": "us-1", "authorities": ["globex.example"]},
    ],
}
# Malformed hosts that gunicorn itself passes on to the application.
MALFORMED = ["bad..host", "host:abc", "under_score.example", "-dash.example"]
REASON_BY_STATUS = {421: "unknown_host", 400: "malformed_host"}


def plan(prefix: str, hosts: int, repeats: int, foreign: int, malformed: int) -> list[tuple[str, str]]:
    """(host, expected reason) for every request of a flood, interleaved."""
    requests = [(f"{prefix}{index}.bogus.example", "unknown_host") for index in range(hosts)] * repeats
    requests += [("globex.example", "other_deployment")] * foreign
    requests += [(MALFORMED[index % len(MALFORMED)], "malformed_host") for index in range(malformed)]
    # Spread each kind over the whole flood and every client thread.
    random.Random(prefix).shuffle(requests)
    return requests


def flood(server: Server, requests: list[tuple[str, str]], threads: int = 8) -> tuple[Counter[int], list[float]]:
    """Send every request on its own connection from ``threads`` clients: statuses, latencies."""

    def one(host: str) -> tuple[int, float]:
        started = time.monotonic()
        response = raw_request(server.port, http_request("GET", "/api/whoami", host=host), timeout=10)
        return response.status, time.monotonic() - started

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(one, [host for host, _ in requests]))
    return Counter(status for status, _ in results), sorted(latency for _, latency in results)


def p99(latencies: list[float]) -> float:
    return latencies[int(len(latencies) * 0.99) - 1]


def expected_totals(*floods: list[tuple[str, str]]) -> dict[str, int]:
    return dict(Counter(reason for requests in floods for _, reason in requests))


def database(site: Site) -> Path:
    return site.directory / "db.sqlite3"


def totals(path: Path) -> dict[str, int]:
    with sqlite3.connect(path, timeout=10) as db:
        return dict(db.execute("SELECT reason, SUM(count) FROM hostguard_mismatchlog GROUP BY reason").fetchall())


def most_rows_for_one_host(path: Path) -> int:
    with sqlite3.connect(path, timeout=10) as db:
        row = db.execute(
            "SELECT COUNT(*) FROM hostguard_mismatchlog GROUP BY deployment, reason, host, port, scheme "
            "ORDER BY COUNT(*) DESC LIMIT 1"
        ).fetchone()
    return int(row[0]) if row else 0


def wait_for_totals(path: Path, expected: dict[str, int], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        seen = totals(path)
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def mismatch_lines(server: Server) -> list[str]:
    return [line for line in server.stderr(limit=10_000_000).splitlines() if " hostguard.mismatch " in line]


def test_floods_are_counted_exactly_with_bounded_rows_and_logs_even_while_the_database_is_locked(
    tmp_path: Path,
) -> None:
    with Site(tmp_path, deployment="eu-1") as site:
        site.load(DATA)
        path = database(site)
        with site.server(workers=2) as server:
            # A flood of scanners: 300 bogus hosts, a foreign tenant, malformed hosts.
            first = plan("a", hosts=300, repeats=4, foreign=100, malformed=100)
            started = time.time()
            statuses, latencies = flood(server, first)
            assert statuses == {421: 1300, 400: 100}
            assert p99(latencies) < 0.5
            assert wait_for_totals(path, expected_totals(first), timeout=10) == expected_totals(first)
            # One row per host and window: a flood of a few seconds spans at most two windows.
            assert most_rows_for_one_host(path) <= 2

            # The database locked by another process for 3 s during a second flood.
            second = plan("b", hosts=200, repeats=3, foreign=50, malformed=50)
            lock = sqlite3.connect(path, timeout=10, isolation_level=None)
            try:
                lock.execute("BEGIN EXCLUSIVE")
                locked_at = time.monotonic()
                results: list[tuple[Counter[int], list[float]]] = []
                sender = threading.Thread(target=lambda: results.append(flood(server, second)))
                sender.start()
                sender.join(30)
                assert not sender.is_alive()
                time.sleep(max(0.0, 3.0 - (time.monotonic() - locked_at)))
                assert time.monotonic() - locked_at >= 3.0
                # Nothing could be written meanwhile: the lock was ours throughout.
                assert lock.execute("SELECT SUM(count) FROM hostguard_mismatchlog").fetchone()[0] == sum(
                    expected_totals(first).values()
                )
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            (statuses, locked_latencies) = results[0]
            assert statuses == {421: 650, 400: 50}
            assert p99(locked_latencies) < 0.5, f"p99 {p99(locked_latencies):.3f} s under the lock"
            both = expected_totals(first, second)
            assert wait_for_totals(path, both, timeout=15) == both
            assert most_rows_for_one_host(path) <= 2

        # Stopped gracefully: nothing counted twice at exit, the log stayed small: each
        # (host, reason) once per worker and 60 s window (windows start on the minute,
        # so a run that crosses one logs its pairs again), whatever the number of requests.
        windows = int(time.time() // 60) - int(started // 60) + 1
        assert totals(path) == both
        lines = mismatch_lines(server)
        pairs = 300 + 200 + 1 + len(MALFORMED)
        requests = len(first) + len(second)
        assert pairs <= len(lines) <= 2 * windows * pairs + 16, (len(lines), windows)
        if windows == 1:
            assert len(lines) < requests / 2
        assert " ERROR " not in server.stderr(limit=10_000_000)
        assert any("more mismatches in the 60 s window" in line for line in lines)

        output = site.manage("hostguard_prune", "--days", "0")
        assert output.startswith("Deleted ")
        assert "host mismatch rows (all of them).\n" in output
        assert totals(path) == {}


def test_report_mode_lets_requests_through_and_a_graceful_stop_writes_the_buffer(tmp_path: Path) -> None:
    # A flush interval longer than the test: only the exit can write the rows.
    site = Site(tmp_path, deployment="eu-1", extra_env={"HOSTGUARD_AUDIT_FLUSH_SECONDS": "600"})
    with site:
        site.load(DATA)
        path = database(site)
        with site.server(workers=2, env={"HOSTGUARD_MODE": "report"}) as server:
            third = plan("c", hosts=100, repeats=4, foreign=50, malformed=50)
            statuses, _ = flood(server, third)
            # Would-be 421s of claimed hosts are served; a host no tenant claims and
            # malformed hosts are refused in both modes (report mode never serves more
            # than the site did: its ALLOWED_HOSTS is ["*"]).
            assert statuses == {421: 400, 200: 50, 400: 50}
            whoami = server.request(http_request("GET", "/api/whoami", host="globex.example"))
            assert whoami.json() == {"tenant": "globex", "deployment": "eu-1"}
            assert totals(path) == {}
            assert any("would refuse (report-only) other_deployment" in line for line in mismatch_lines(server))
        expected = expected_totals(third)
        expected["other_deployment"] += 1
        assert totals(path) == expected


def pg_totals(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://", 1), connect_timeout=5) as db:
        rows = db.execute("SELECT reason, SUM(count) FROM hostguard_mismatchlog GROUP BY reason").fetchall()
    return {reason: int(total) for reason, total in rows}


def test_postgres_unreachable_during_a_flood_loses_nothing(tmp_path: Path) -> None:
    e2e.require_postgres()
    with e2e.postgres_database() as direct_url, Relay(("127.0.0.1", 5432)) as relay:
        relayed = direct_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{relay.port}/")
        with Site(tmp_path, database_url=relayed, deployment="eu-1") as site:
            site.load(DATA)
            with site.server(workers=2) as server:
                before = plan("p", hosts=100, repeats=3, foreign=20, malformed=20)
                assert flood(server, before)[0] == {421: 320, 400: 20}
                relay.cut()  # every connection reset, new ones refused: the database host is gone
                cut_at = time.monotonic()
                during = plan("q", hosts=100, repeats=3, foreign=20, malformed=20)
                statuses, latencies = flood(server, during)
                assert statuses == {421: 320, 400: 20}
                assert p99(latencies) < 0.5, f"p99 {p99(latencies):.3f} s while the database is down"
                time.sleep(max(0.0, 2.5 - (time.monotonic() - cut_at)))
                relay.restore()
                expected = expected_totals(before, during)
                deadline = time.monotonic() + 15
                while pg_totals(direct_url) != expected and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert pg_totals(direct_url) == expected
            assert "could not write its mismatch log" in server.stderr(limit=10_000_000)


BUSY_SCRIPT = r"""
import json, logging, sqlite3, sys, time
from hostguard.audit import Recorder
from hostguard.models import MismatchLog

lines = []

class Lines(logging.Handler):
    def emit(self, record):
        lines.append((time.monotonic(), record.getMessage()))

logging.getLogger("hostguard.audit").addHandler(Lines())
lock = sqlite3.connect(sys.argv[1], isolation_level=None)
lock.execute("BEGIN EXCLUSIVE")
writer = Recorder()
started = time.monotonic()
for _ in range(5):
    writer.record("eu-1", "unknown_host", "evil.example", 80, "http")
while not lines and time.monotonic() - started < 40:
    time.sleep(0.05)
failed_after = lines[0][0] - started if lines else None
lock.execute("ROLLBACK")
while MismatchLog.objects.count() == 0 and time.monotonic() - started < 40:
    time.sleep(0.05)
writer.shutdown()
print(json.dumps({"failed_after": failed_after, "lines": [line for _, line in lines],
                  "count": sum(MismatchLog.objects.values_list("count", flat=True))}))
"""


EXIT_SCRIPT = r"""
import logging, sqlite3, sys
from hostguard.audit import recorder

logging.getLogger("hostguard.audit").addHandler(logging.StreamHandler(sys.stdout))
lock = sqlite3.connect(sys.argv[1], isolation_level=None)
lock.execute("BEGIN EXCLUSIVE")
for index in range(7):
    recorder.record("eu-1", "unknown_host", f"h{index % 2}.example", 80, "http")
# The script ends with the lock held: the atexit handler cannot write.
"""


def test_a_sqlite_lock_holds_the_writer_and_the_exit_no_longer_than_their_own_timeouts(tmp_path: Path) -> None:
    # The site waits 20 s for a lock (project/settings.py); the writer thread gives
    # up after its own timeout (5 flush intervals, at least 2 s), keeps the events and
    # writes them once the lock is gone.
    with Site(tmp_path, deployment="eu-1", extra_env={"HOSTGUARD_AUDIT_FLUSH_SECONDS": "0.2"}) as site:
        result = json.loads(site.python(BUSY_SCRIPT, str(database(site))))
        assert result["failed_after"] is not None, result
        assert 2.0 <= result["failed_after"] < 5.0, result
        assert "could not write its mismatch log (OperationalError: database is locked)" in result["lines"][0]
        assert result["count"] == 5
        # A process that is not a gunicorn worker: its atexit handler has a deadline
        # too, and its last word is the exact count it could not write.
        started = time.monotonic()
        output = site.python(EXIT_SCRIPT, str(database(site)))
        assert time.monotonic() - started < 15
    assert "exiting without writing 7 mismatch events in 2 rows (OperationalError: database is locked)" in output
    assert "retried" not in output


def test_sigterm_while_the_database_hangs_reports_exactly_what_it_loses(tmp_path: Path) -> None:
    """The network to PostgreSQL stalls mid-flood (persistent connections, as with
    CONN_MAX_AGE = 60); the writers notice; SIGTERM ends the server within gunicorn's
    graceful timeout, and the workers' last words are the exact number of events lost."""
    e2e.require_postgres()
    with e2e.postgres_database() as direct_url, Relay(("127.0.0.1", 5432)) as relay:
        relayed = direct_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{relay.port}/") + "?conn_max_age=60"
        with Site(tmp_path, database_url=relayed, deployment="eu-1") as site:
            site.load(DATA)
            server = site.server(workers=2)
            with server:
                before = plan("s", hosts=150, repeats=2, foreign=20, malformed=20)
                assert flood(server, before)[0] == {421: 320, 400: 20}
                # Every writer idle, nothing in flight: what is stored now stays stored.
                deadline = time.monotonic() + 15
                while pg_totals(direct_url) != expected_totals(before) and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert pg_totals(direct_url) == expected_totals(before)

                relay.stall()
                during = plan("t", hosts=200, repeats=3, foreign=30, malformed=30)
                statuses, latencies = flood(server, during)
                assert statuses == {421: 630, 400: 30}
                assert p99(latencies) < 0.5, f"p99 {p99(latencies):.3f} s while the database hangs"
                waiting = e2e.wait_until(lambda: "has been waiting for the database" in server.stderr(10**7), 10)
                assert waiting is not None, server.stderr()

                assert server.process is not None
                process = server.process
                graceful = 2.0  # GRACEFUL_TIMEOUT of tests/e2e.py's servers
                signalled = time.monotonic()
                os.kill(process.pid, signal.SIGTERM)
                process.wait(timeout=graceful + 5)
                exited = time.monotonic() - signalled
            relay.cut()  # what the stall held back never reaches the database
            stored = sum(pg_totals(direct_url).values())

    log = server.stderr(limit=10_000_000)
    lost = [int(events) for events in re.findall(r"exiting without writing (\d+) mismatch events", log)]
    sent = len(before) + len(during)
    print(f"\nsent {sent}, stored {stored}, reported lost {sum(lost)} ({lost}), exit {exited:.2f} s after SIGTERM")
    assert exited < graceful, log
    assert "SIGKILL" not in log
    assert "WORKER TIMEOUT" not in log
    assert 1 <= len(lost) <= 2
    assert sum(lost) == sent - stored == len(during)
    assert "retried" not in log
    assert 1 <= log.count("has been waiting for the database") <= 2
