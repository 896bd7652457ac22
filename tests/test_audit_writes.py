"""The audit writer makes a window's new rows in one statement and still adds up exactly."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext

from hostguard.audit import Recorder
from hostguard.models import MismatchLog

pytestmark = pytest.mark.django_db


def inserts(queries: Any) -> int:
    return sum(1 for query in queries if query["sql"].startswith("INSERT") and "hostguard_mismatchlog" in query["sql"])


def test_new_hosts_are_inserted_together() -> None:
    writer = Recorder()
    now = time.time()
    for index in range(50):
        writer.record("local", "unknown_host", f"h{index}.example", 80, "http", now=now)
    with CaptureQueriesContext(connection) as queries:
        writer.flush()
    assert inserts(queries.captured_queries) == 1
    assert MismatchLog.objects.count() == 50
    assert MismatchLog.objects.aggregate(total=Sum("count"))["total"] == 50


def test_a_row_another_process_made_meanwhile_is_added_to(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = Recorder(), Recorder()
    now = time.time()
    for index in range(3):
        first.record("local", "unknown_host", f"h{index}.example", 80, "http", now=now)
        second.record("local", "unknown_host", f"h{index}.example", 80, "http", now=now)
        second.record("local", "unknown_host", f"h{index}.example", 80, "http", now=now)
    from hostguard.audit import writer

    update = writer._update
    raced = {"done": False}

    def update_then_race(manager: Any, key: Any, entry: Any) -> bool:
        # The second writer's UPDATE finds nothing; the first writer then commits the
        # same keys before the second one inserts.
        found = update(manager, key, entry)
        if not found and not raced["done"]:
            raced["done"] = True
            first.flush()
        return found

    monkeypatch.setattr(writer, "_update", update_then_race)
    second.flush()
    assert second.pending() == (0, 0)
    assert MismatchLog.objects.count() == 3
    assert set(MismatchLog.objects.values_list("count", flat=True)) == {3}


@pytest.mark.parametrize("port", [80, None])
def test_a_later_flush_widens_first_and_last_seen_and_adds_the_count(port: int | None) -> None:
    writer = Recorder()
    start = (time.time() // 60) * 60
    writer.record("local", "unknown_host", "evil.example", port, "http", now=start + 20)
    writer.record("local", "unknown_host", "evil.example", port, "http", now=start + 30)
    writer.flush()
    writer.record("local", "unknown_host", "evil.example", port, "http", now=start + 10)
    writer.record("local", "unknown_host", "evil.example", port, "http", now=start + 50)
    writer.record("local", "unknown_host", "evil.example", port, "http", now=start + 40)
    writer.flush()
    row = MismatchLog.objects.get()
    assert (row.count, row.port) == (5, port)
    assert row.first_seen.timestamp() == start + 10
    assert row.last_seen.timestamp() == start + 50
    assert row.window_start.timestamp() == start


def updates(queries: Any) -> list[str]:
    # An executemany is captured once, as "N times: UPDATE ...".
    return [query["sql"] for query in queries if "UPDATE" in query["sql"] and "hostguard_mismatchlog" in query["sql"]]


def counts() -> dict[tuple[str, int | None], int]:
    return {(row.host, row.port): row.count for row in MismatchLog.objects.all()}


def test_a_flush_revisiting_its_rows_updates_them_in_one_statement_per_kind_of_port() -> None:
    writer = Recorder()
    now = time.time()
    hosts = [(f"h{index}.example", 8000 + index if index % 2 else None) for index in range(40)]
    for host, port in hosts:
        writer.record("local", "unknown_host", host, port, "http", now=now)
    writer.flush()
    for _ in range(2):
        for host, port in hosts:
            writer.record("local", "unknown_host", host, port, "http", now=now)
    with CaptureQueriesContext(connection) as queries:
        assert writer.flush() == 80
    # One executemany for the rows with a port, one for those without.
    statements = updates(queries.captured_queries)
    assert len(statements) == 2
    assert all(sql.startswith("20 times: ") for sql in statements)
    assert inserts(queries.captured_queries) == 0
    assert counts() == dict.fromkeys(hosts, 3)


def test_a_row_deleted_between_flushes_is_made_again_with_only_the_new_count() -> None:
    writer = Recorder()
    now = time.time()
    hosts = [f"h{index}.example" for index in range(10)]
    for host in hosts:
        writer.record("local", "unknown_host", host, 80, "http", now=now)
        writer.record("local", "unknown_host", host, 80, "http", now=now)
    writer.flush()
    MismatchLog.objects.filter(host="h4.example").delete()  # pruned, say
    for host in hosts:
        writer.record("local", "unknown_host", host, 80, "http", now=now)
    with CaptureQueriesContext(connection) as queries:
        assert writer.flush() == 10
    assert inserts(queries.captured_queries) == 1
    assert writer.pending() == (0, 0)
    assert counts() == {(host, 80): 1 if host == "h4.example" else 3 for host in hosts}
    # The row made again is known from now on: the next flush is one statement again.
    for host in hosts:
        writer.record("local", "unknown_host", host, 80, "http", now=now)
    with CaptureQueriesContext(connection) as queries:
        writer.flush()
    assert len(updates(queries.captured_queries)) == 1
    assert counts() == {(host, 80): 2 if host == "h4.example" else 4 for host in hosts}
