"""A database that hangs or fails never holds the audit writer silently, nor an exit.

The hanging database is real: another connection holds an exclusive lock on the
mismatch table (PostgreSQL; the SQLite test database is in memory, where a lock
fails at once instead of waiting). A stalled network is tested end to end, with a
relay, in tests/test_e2e_audit.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from hostguard.audit import Recorder, thread, writer
from hostguard.models import MismatchLog


def audit_lines(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "hostguard.audit" and text in r.getMessage()]


def record(writer_: Recorder, events: int, hosts: int = 1) -> None:
    for index in range(events):
        writer_.record("local", "unknown_host", f"h{index % hosts}.example", 80, "http")


@contextmanager
def table_locked(release_after: float) -> Iterator[Any]:
    """Another session holds ACCESS EXCLUSIVE on the mismatch table (released after
    ``release_after`` seconds at the latest, so that a writer with no timeout fails
    the test instead of hanging it)."""
    import psycopg

    settings = connection.settings_dict
    other = psycopg.connect(
        dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"], port=settings["PORT"] or 5432
    )
    other.execute(f"LOCK TABLE {MismatchLog._meta.db_table} IN ACCESS EXCLUSIVE MODE")
    release = threading.Timer(release_after, other.rollback)
    release.start()
    try:
        yield other
    finally:
        release.cancel()
        other.close()


@pytest.mark.django_db
def test_a_flush_leaves_the_connections_own_timeout_as_it_found_it() -> None:
    """The writer's bound is its own: a flush on a request's connection leaves it as it was."""
    query = "PRAGMA busy_timeout" if connection.vendor == "sqlite" else "SHOW statement_timeout"

    def current() -> Any:
        with connection.cursor() as cursor:
            cursor.execute(query)
            return cursor.fetchone()[0]

    before = current()
    bound = round(writer.timeout_seconds() * 1000)
    assert before not in (bound, f"{bound // 1000}s")  # else this test could not tell
    writer_ = Recorder()
    record(writer_, 3)
    assert writer_.flush() == 3
    assert current() == before


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_statement_held_by_a_lock_gives_up_after_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    writer_ = Recorder()
    record(writer_, 4)
    try:
        with override_settings(HOSTGUARD_AUDIT_FLUSH_SECONDS=0.2):
            assert writer.timeout_seconds() == 2.0
            with table_locked(release_after=8), caplog.at_level(logging.INFO):
                started = time.monotonic()
                assert writer_.flush() == 0
                waited = time.monotonic() - started
        assert 1.8 <= waited < 4, waited
        (failure,) = audit_lines(caplog, "could not write its mismatch log")
        assert "statement timeout" in failure.getMessage()
        assert writer_.pending() == (1, 4)
        # The bound was the writer's own: this connection's other users never see it.
        with connection.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone()[0] == "0"
        assert writer_.flush() == 4
    finally:
        writer_.shutdown()
    assert MismatchLog.objects.get().count == 4


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_write_that_overruns_is_reported_while_it_waits_then_when_it_ends(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(thread, "OVERRUN_MARGIN", 0.5)
    writer_ = Recorder()
    record(writer_, 5, hosts=2)
    try:
        with override_settings(HOSTGUARD_AUDIT_FLUSH_SECONDS=0.2), caplog.at_level(logging.INFO):
            assert thread.overrun_seconds() == pytest.approx(0.7)
            with table_locked(release_after=1.6):
                started = time.time()
                assert writer_.flush() == 5
                waited = time.time() - started
    finally:
        writer_.shutdown()
    (warning,) = audit_lines(caplog, "has been waiting for the database")
    assert warning.levelno == logging.WARNING
    # Said while the write was still waiting, not after it returned.
    assert 0.6 <= warning.created - started < 1.4
    (ended,) = audit_lines(caplog, "no longer waiting")
    assert ended.levelno == logging.INFO
    assert ended.created > warning.created
    assert waited >= 1.5
    assert MismatchLog.objects.count() == 2


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_exit_that_cannot_write_says_exactly_what_is_lost(caplog: pytest.LogCaptureFixture) -> None:
    writer_ = Recorder()
    record(writer_, 7, hosts=2)
    # A real failure: the table is gone (a database not migrated, or restored from an old dump).
    with connection.schema_editor() as editor:
        editor.delete_model(MismatchLog)
    try:
        with caplog.at_level(logging.INFO):
            started = time.monotonic()
            writer_.shutdown(deadline=time.monotonic() + 5)
            assert time.monotonic() - started < 2
            writer_.shutdown(deadline=time.monotonic() + 5)  # atexit, after worker_exit: nothing more
    finally:
        with connection.schema_editor() as editor:
            editor.create_model(MismatchLog)
    (lost,) = audit_lines(caplog, "exiting without writing")
    assert lost.levelno == logging.WARNING
    assert "without writing 7 mismatch events in 2 rows" in lost.getMessage()
    assert (lost.dropped, lost.dropped_rows) == (7, 2)  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if "retried" in r.getMessage()]
    assert writer_.pending() == (0, 0)


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_exit_deadline_holds_while_the_writer_thread_is_stuck(caplog: pytest.LogCaptureFixture) -> None:
    writer_ = Recorder()
    locked = table_locked(release_after=8)
    with override_settings(HOSTGUARD_AUDIT_FLUSH_SECONDS=0.2), locked, caplog.at_level(logging.INFO):
        record(writer_, 6, hosts=3)  # the thread takes these, and waits on the lock
        time.sleep(0.6)
        assert writer_.pending() == (0, 0)
        record(writer_, 4, hosts=4)  # these wait in the buffer
        started = time.monotonic()
        writer_.shutdown(deadline=started + 0.5)
        assert 0.45 <= time.monotonic() - started < 1.0
        (lost,) = audit_lines(caplog, "exiting without writing")
        assert (lost.dropped, lost.dropped_rows) == (10, 7)  # type: ignore[attr-defined]
        assert "did not answer before the exit deadline" in lost.getMessage()
        # The stuck write then times out (2 s): it is not retried, nor said to be.
        time.sleep(2.0)
    assert len(audit_lines(caplog, "exiting without writing")) == 1
    assert not [r for r in caplog.records if "retried" in r.getMessage()]
    assert MismatchLog.objects.count() == 0
