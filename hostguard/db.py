"""hostguard's own database work in the background: every statement gives up in time.

A hanging database must never hold hostguard's threads silently: the policy's
refresher and the audit log's writer run their statements inside :func:`bounded`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db import transaction


@contextlib.contextmanager
def bounded(connection: Any, using: str, timeout: float) -> Iterator[None]:
    """A transaction on ``using`` whose statements give up after ``timeout`` seconds."""
    millis = max(1, round(timeout * 1000))
    if connection.vendor == "sqlite":
        with _busy_timeout(connection, millis), transaction.atomic(using=using):
            yield
    elif connection.vendor == "postgresql":
        with _statement_timeout(connection, using, millis):
            yield
    else:
        with transaction.atomic(using=using):
            yield


@contextlib.contextmanager
def _busy_timeout(connection: Any, millis: int) -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        previous = int(cursor.fetchone()[0])
        cursor.execute("PRAGMA busy_timeout = %d" % millis)
    try:
        yield
    finally:
        # The site's own wait (OPTIONS["timeout"]) for whoever uses this connection next.
        with contextlib.suppress(Exception), connection.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout = %d" % previous)


@contextlib.contextmanager
def _statement_timeout(connection: Any, using: str, millis: int) -> Iterator[None]:
    previous = None
    if connection.in_atomic_block:
        # Inside a caller's transaction (tests, a flush from a view) SET LOCAL would
        # outlive our savepoint: put the caller's value back afterwards.
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('statement_timeout')")
            previous = cursor.fetchone()[0]
    with transaction.atomic(using=using):
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = %d" % millis)
        yield
    if previous is not None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
