"""The SQL writer: a batch of counts upserted in one transaction, every statement bounded.

``count = count + n``, ``first_seen = least(…)``, ``last_seen = greatest(…)``: several
processes add up exactly. Rows this process already wrote are updated together (one
``executemany`` per run of keys); new rows are inserted together, within the key cap
that holds across processes.

Timeouts: a hanging database must not hold the writer silently. Every transaction
here runs with a bound of :func:`timeout_seconds` — five times
``HOSTGUARD_AUDIT_FLUSH_SECONDS``, at least 2 s and at most 30 s (5 s by default):

* PostgreSQL: ``SET LOCAL statement_timeout`` inside the writer's own transaction, so
  it ends with it and the connection's other users never see it;
* SQLite: ``PRAGMA busy_timeout`` (how long to wait for another process's lock) for
  the transaction, then the connection's own value again;
* other databases: no bound of ours.

A stall in the network (packets that never come back) is beyond what the server can
time out; the flush thread's watchdog reports it (:mod:`hostguard.audit.thread`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, connections, router, transaction
from django.db.models import DateTimeField, F, Field, Value
from django.db.models.functions import Greatest, Least
from django.utils import timezone

from hostguard.audit.buffer import Entry, Key
from hostguard.audit.log import internal_logger
from hostguard.conf import conf
from hostguard.db import bounded

# The models are imported where they are used, never at import: hostguard.audit is
# imported (by the middleware) before the app registry is ready.
if TYPE_CHECKING:
    from django.db.models import Manager

    from hostguard.models import MismatchLog

#: Rows written per transaction.
BATCH_SIZE = 500
#: The writer's statement (PostgreSQL) or lock wait (SQLite) timeout is this many
#: flush intervals, within [MIN_TIMEOUT, MAX_TIMEOUT] seconds.
TIMEOUT_FACTOR = 5
MIN_TIMEOUT = 2.0
MAX_TIMEOUT = 30.0

# (deployment, window start) → the keys this process has written a row for.
Written = dict[tuple[str, int], set[Key]]
# (deployment, window start) → keys with no row yet, and their counts.
Fresh = dict[tuple[str, int], list[tuple[Key, Entry]]]


def timeout_seconds() -> float:
    """How long one statement of the writer may take before it gives up."""
    return min(MAX_TIMEOUT, max(MIN_TIMEOUT, TIMEOUT_FACTOR * conf.AUDIT_FLUSH_SECONDS))


def lock_order(item: tuple[Key, Entry]) -> tuple[bool, str, str, str, int, str, int]:
    """The order every process writes keys in, so that concurrent batches lock rows in
    the same order and cannot deadlock; NULL ports first, so that rows of either kind
    come in runs that :func:`write` updates together."""
    deployment, reason, host, port, scheme, start = item[0]
    return (port is not None, deployment, reason, host, -1 if port is None else port, scheme, start)


def as_datetime(timestamp: float) -> datetime:
    """A Unix time as the database's datetime (naive local time without ``USE_TZ``)."""
    value = datetime.fromtimestamp(timestamp, tz=UTC)
    if not settings.USE_TZ:
        value = timezone.make_naive(value, timezone.get_default_timezone())
    return value


def _datetime_value(timestamp: float) -> Value:
    return Value(as_datetime(timestamp), output_field=DateTimeField())


def _filter(manager: Manager[MismatchLog], key: Key) -> Any:
    deployment, reason, host, port, scheme, start = key
    return manager.filter(
        deployment=deployment, reason=reason, host=host, port=port, scheme=scheme, window_start=as_datetime(start)
    )


# --- timeouts ----------------------------------------------------------------------------


# --- statements ------------------------------------------------------------------------------


# The UPDATE _update() sends, per (connection vendor, NULL port): the statement the ORM
# builds below, written once. Built by the ORM, each one cost the writer ~20 times more,
# and a flood that keeps revisiting the same hosts makes one per host every flush.
_UPDATE_SQL: dict[tuple[str, bool], str] = {}
_LEAST_GREATEST = {"sqlite": ("MIN", "MAX"), "postgresql": ("LEAST", "GREATEST"), "mysql": ("LEAST", "GREATEST")}


def _update_sql(connection: Any, null_port: bool) -> str:
    statement = _UPDATE_SQL.get((connection.vendor, null_port))
    if statement is None:
        from hostguard.models import MismatchLog

        least, greatest = _LEAST_GREATEST[connection.vendor]

        def column(name: str) -> str:
            field = MismatchLog._meta.get_field(name)
            assert isinstance(field, Field)
            return str(connection.ops.quote_name(field.column))

        count, first, last = column("count"), column("first_seen"), column("last_seen")
        where = " AND ".join(
            f"{column(name)} = %s" for name in ("deployment", "reason", "host", "scheme", "window_start")
        )
        port = f"{column('port')} IS NULL" if null_port else f"{column('port')} = %s"
        statement = (
            f"UPDATE {connection.ops.quote_name(MismatchLog._meta.db_table)} "
            f"SET {count} = {count} + %s, {first} = {least}({first}, %s), {last} = {greatest}({last}, %s) "
            f"WHERE {where} AND {port}"
        )
        _UPDATE_SQL[(connection.vendor, null_port)] = statement
    return statement


def _update_params(connection: Any, key: Key, entry: Entry, starts: dict[int, Any] | None = None) -> list[Any]:
    """The parameters of :func:`_update_sql`; ``starts`` caches adapted window starts."""
    deployment, reason, host, port, scheme, start = key
    adapt = connection.ops.adapt_datetimefield_value
    if starts is None:
        window_start = adapt(as_datetime(start))
    else:
        window_start = starts.get(start)
        if window_start is None:
            window_start = starts[start] = adapt(as_datetime(start))
    params: list[Any] = [
        entry.count,
        adapt(as_datetime(entry.first)),
        adapt(as_datetime(entry.last)),
        deployment,
        reason,
        host,
        scheme,
        window_start,
    ]
    if port is not None:
        params.append(port)
    return params


def _update(manager: Manager[MismatchLog], key: Key, entry: Entry) -> bool:
    """Add ``entry`` to the row of ``key``; whether there was one."""
    connection = connections[manager.db]
    if connection.vendor in _LEAST_GREATEST:
        with connection.cursor() as cursor:
            cursor.execute(_update_sql(connection, key[3] is None), _update_params(connection, key, entry))
            return bool(cursor.rowcount > 0)
    updated: int = _filter(manager, key).update(
        count=F("count") + entry.count,
        first_seen=Least("first_seen", _datetime_value(entry.first)),
        last_seen=Greatest("last_seen", _datetime_value(entry.last)),
    )
    return updated > 0


class _RowMissing(Exception):
    """One of the rows an :func:`_update_many` expected is not there."""


def _update_many(connection: Any, using: str, run: list[tuple[Key, Entry]]) -> bool:
    """Add each entry to its key's row in one statement, if every one of the rows exists.

    The keys must share a NULL or non-NULL port. When a row is missing (pruned, or
    deleted by hand, since this process wrote it) nothing is changed and the result is
    False: the caller writes the run key by key.
    """
    starts: dict[int, Any] = {}
    params = [_update_params(connection, key, entry, starts) for key, entry in run]
    try:
        with transaction.atomic(using=using), connection.cursor() as cursor:
            cursor.executemany(_update_sql(connection, run[0][0][3] is None), params)
            # The total of rows changed (sqlite3 and psycopg 3 both sum it up); each
            # key matches at most one row (the unique constraints).
            if cursor.rowcount != len(params):
                raise _RowMissing
    except _RowMissing:
        return False
    return True


def _fields(key: Key, entry: Entry, tenants: set[int]) -> dict[str, Any]:
    deployment, reason, host, port, scheme, start = key
    method, path, remote_addr, user_agent, sni = entry.sample
    return {
        "deployment": deployment,
        "reason": reason,
        "host": host,
        "port": port,
        "scheme": scheme,
        "tenant_id": entry.tenant_id if entry.tenant_id in tenants else None,
        "window_start": as_datetime(start),
        "first_seen": as_datetime(entry.first),
        "last_seen": as_datetime(entry.last),
        "count": entry.count,
        "method": method,
        "path": path,
        "remote_addr": remote_addr,
        "user_agent": user_agent,
        "sni": sni,
    }


def _upsert(manager: Manager[MismatchLog], using: str, key: Key, entry: Entry, tenants: set[int]) -> None:
    if _update(manager, key, entry):
        return
    try:
        with transaction.atomic(using=using):
            manager.create(**_fields(key, entry, tenants))
    except IntegrityError:
        # Another process created the row between our UPDATE and INSERT.
        if not _update(manager, key, entry):
            raise


def _create(manager: Manager[MismatchLog], using: str, items: list[tuple[Key, Entry]], tenants: set[int]) -> None:
    """Insert rows for keys whose UPDATE found none: one statement for all of them.

    A flood of new hosts makes up to HOSTGUARD_AUDIT_MAX_KEYS new rows a window; one
    INSERT (and savepoint) each cost the writer thread several times more.
    """
    if not items:
        return
    try:
        with transaction.atomic(using=using):
            manager.bulk_create([manager.model(**_fields(key, entry, tenants)) for key, entry in items])
    except IntegrityError:
        # Another process created one of them meanwhile: row by row, as usual.
        for key, entry in items:
            _upsert(manager, using, key, entry, tenants)


def write(chunk: list[tuple[Key, Entry]], written: Written | None = None, timeout: float | None = None) -> None:
    """Upsert one batch in one transaction; raises on any database error, a timeout too.

    ``written``: the keys this process has already written a row for, by (deployment,
    window start). A flood that keeps revisiting the same hosts makes one UPDATE per
    host every flush; consecutive keys of ``chunk`` found there (in :func:`lock_order`,
    so that every process still locks rows in the same order) are updated with one
    statement, and key by key if one of their rows has gone. ``timeout``: seconds each
    statement may take (:func:`timeout_seconds` by default).
    """
    from hostguard.models import MismatchLog

    using = router.db_for_write(MismatchLog)
    manager = MismatchLog._default_manager.db_manager(using)
    connection = connections[using]
    if written is None or connection.vendor not in _LEAST_GREATEST:
        written = {}
    with bounded(connection, using, timeout_seconds() if timeout is None else timeout):
        # Updates first: on SQLite the first write takes the database's write lock,
        # so the reads below cannot race another process's batch.
        fresh = _update_rows(connection, manager, using, chunk, written)
        if fresh:
            _insert_rows(manager, using, fresh)


def _update_rows(
    connection: Any, manager: Manager[MismatchLog], using: str, chunk: list[tuple[Key, Entry]], written: Written
) -> Fresh:
    """Add to the rows that exist; the keys that have none yet."""
    fresh: Fresh = {}
    overflow_host = manager.model.OVERFLOW_HOST
    # Overflow rows carry no tenant: they need no tenant lookup.
    no_tenants: set[int] = set()

    def write_one(key: Key, entry: Entry) -> None:
        if key[2] == overflow_host:
            _upsert(manager, using, key, entry, no_tenants)
        elif not _update(manager, key, entry):
            fresh.setdefault((key[0], key[5]), []).append((key, entry))

    def write_run() -> None:
        if len(run) < 2 or not _update_many(connection, using, run):
            for key, entry in run:
                write_one(key, entry)
        run.clear()

    run: list[tuple[Key, Entry]] = []
    for key, entry in chunk:
        if key in written.get((key[0], key[5]), ()):
            if run and (run[0][0][3] is None) != (key[3] is None):
                write_run()
            run.append((key, entry))
        else:
            write_run()
            write_one(key, entry)
    write_run()
    return fresh


def _insert_rows(manager: Manager[MismatchLog], using: str, fresh: Fresh) -> None:
    from hostguard.models import get_tenant_model

    overflow_host = manager.model.OVERFLOW_HOST
    # A tenant deleted since the event was recorded must not fail the whole batch.
    wanted = {entry.tenant_id for new in fresh.values() for _, entry in new if entry.tenant_id is not None}
    tenants = set(get_tenant_model()._default_manager.using(using).filter(pk__in=wanted).values_list("pk", flat=True))
    max_keys = conf.AUDIT_MAX_KEYS
    for (deployment, start), new in fresh.items():
        # The key cap holds across processes: each one only knows its own keys.
        used = (
            manager.filter(deployment=deployment, window_start=as_datetime(start)).exclude(host=overflow_host).count()
        )
        room = max(0, max_keys - used)
        _create(manager, using, new[:room], tenants)
        overflow: dict[Key, Entry] = {}
        for key, entry in new[room:]:
            folded: Key = (deployment, key[1], overflow_host, None, "", start)
            # Never change the batch's own entries: a failed batch goes back to the buffer.
            if folded in overflow:
                overflow[folded].merge(entry)
            else:
                overflow[folded] = entry.copy(tenant_id=None)
        for key, entry in overflow.items():
            _upsert(manager, using, key, entry, tenants)


def close_connection() -> None:
    """Close the writer's connection after a failure, unless a transaction is using it."""
    from hostguard.models import MismatchLog

    try:
        connection = connections[router.db_for_write(MismatchLog)]
        # Inside an atomic block (a test's transaction) closing would break it.
        if not connection.in_atomic_block:
            connection.close()
    except Exception:
        internal_logger.debug("closing the audit log's connection failed", exc_info=True)


def prune(days: int, batch_size: int = 1000) -> int:
    """Delete rows last seen more than ``days`` days ago (``0``: every row); the number deleted."""
    from hostguard.models import MismatchLog

    rows = MismatchLog._default_manager.all()
    if days > 0:
        rows = rows.filter(last_seen__lt=timezone.now() - timedelta(days=days))
    deleted = 0
    while True:
        ids = list(rows.order_by().values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        deleted += MismatchLog._default_manager.filter(pk__in=ids).delete()[0]
