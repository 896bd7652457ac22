"""The mismatch audit log: every refusal counted exactly, at no cost to the request.

A request never writes to the database here. :func:`mismatch` adds the event to a
per-process buffer keyed by (deployment, reason, host, port, scheme, time window)
— a dictionary update under a lock — and logs the first event of each (host,
reason) per window on the ``hostguard.mismatch`` logger. A background thread,
started on the first event and again in every forked worker, upserts the buffer
every ``HOSTGUARD_AUDIT_FLUSH_SECONDS`` in one transaction per batch:
``count = count + n``, so several processes add up exactly.

Bounded whatever the traffic:

* at most ``HOSTGUARD_AUDIT_MAX_KEYS`` distinct keys per window, in memory and in
  the database; the excess folds into one ``(other hosts)`` row per reason, still
  counted;
* if the database fails, the buffer is kept and retried on the next tick; while it
  stays down, memory is capped at ten times that many keys, and events beyond the
  cap are counted and reported at WARNING, never silently lost;
* logging is one line per (host, reason) per window, then one summary line.

Recording never raises into the request and never blocks on the database.
:meth:`Recorder.flush` is synchronous, for tests and for the gunicorn
``worker_exit`` hook; an ``atexit`` handler flushes what is left at exit.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connections, router, transaction
from django.db.models import DateTimeField, F, Field, Value
from django.db.models.functions import Greatest, Least
from django.utils import timezone

from hostguard.conf import conf

if TYPE_CHECKING:
    from django.db.models import Manager
    from django.http import HttpRequest

    from hostguard.decision import Decision
    from hostguard.models import MismatchLog

logger = logging.getLogger("hostguard.mismatch")
internal_logger = logging.getLogger("hostguard.audit")

#: The host of the row that counts hosts beyond ``HOSTGUARD_AUDIT_MAX_KEYS`` in a window.
OVERFLOW_HOST = "(other hosts)"

MAX_HOST = 255
MAX_METHOD = 16
MAX_PATH = 500
MAX_REMOTE_ADDR = 64
MAX_USER_AGENT = 300

#: While the database is unavailable, a process keeps at most this many times
#: ``HOSTGUARD_AUDIT_MAX_KEYS`` rows in memory.
PENDING_FACTOR = 10
#: Room for the overflow rows themselves once the buffer is full.
OVERFLOW_SLACK = 64
#: Rows written per transaction.
BATCH_SIZE = 500
#: A window's log summary is written this long after the window ends, so that
#: requests still in flight at the boundary are counted in it.
SUMMARY_GRACE = 2.0
#: The most frequent (host, reason) pairs a summary line names.
SUMMARY_TOP = 5

# (deployment, reason, host, port, scheme, window start as a Unix time)
Key = tuple[str, str, str, int | None, str, int]


# --- escaping --------------------------------------------------------------------------


def _escape_char(char: str) -> str:
    if char == "\\":
        return "\\\\"
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x100:
        return "\\x%02x" % code
    if code < 0x10000:
        return "\\u%04x" % code
    return "\\U%08x" % code


def clean(value: object, limit: int) -> str:
    """``value`` as text safe for a log line, a database column and a spreadsheet cell.

    Control and format characters (and lone surrogates, which no database stores)
    become ``\\xNN`` / ``\\uNNNN`` escapes, a backslash becomes two; the result has at
    most ``limit`` characters, ending in ``…`` when cut.
    """
    text = value if isinstance(value, str) else str(value)
    text = text[: limit * 4]  # bound the work on hostile input
    if not (text.isascii() and text.isprintable() and "\\" not in text):
        text = "".join(_escape_char(char) for char in text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def raw_host(exc: BaseException) -> str:
    """The offending value of a :class:`~hostguard.hosts.MalformedHost`, escaped and bounded."""
    return clean(exc.args[0] if exc.args else "", MAX_HOST)


# --- the buffer ------------------------------------------------------------------------


class _Entry:
    """Counts and the sample request for one key, in memory."""

    __slots__ = ("count", "first", "last", "method", "path", "remote_addr", "tenant_id", "user_agent")

    def __init__(
        self, tenant_id: int | None, now: float, method: str, path: str, remote_addr: str, user_agent: str
    ) -> None:
        self.count = 0
        self.first = self.last = now
        self.tenant_id = tenant_id
        self.method = method
        self.path = path
        self.remote_addr = remote_addr
        self.user_agent = user_agent

    def copy(self, tenant_id: int | None) -> _Entry:
        twin = _Entry(tenant_id, self.first, self.method, self.path, self.remote_addr, self.user_agent)
        twin.count, twin.last = self.count, self.last
        return twin

    def merge(self, other: _Entry) -> None:
        self.count += other.count
        if other.first < self.first:
            self.first = other.first
            self.method, self.path = other.method, other.path
            self.remote_addr, self.user_agent = other.remote_addr, other.user_agent
        self.last = max(self.last, other.last)


class _Window:
    """Per-process state of one time window: the key cap and the log de-duplication."""

    __slots__ = ("deployment", "keys", "logged", "start", "unlogged", "width")

    def __init__(self, deployment: str, start: int, width: int) -> None:
        self.deployment = deployment
        self.start = start
        self.width = width
        # Distinct (reason, host, port, scheme) recorded under their own key.
        self.keys: set[tuple[str, str, int | None, str]] = set()
        # (host, reason) logged once → how many more were not logged.
        self.logged: dict[tuple[str, str], int] = {}
        # Events of pairs beyond the cap, never logged individually.
        self.unlogged = 0

    def suppressed(self) -> int:
        return self.unlogged + sum(self.logged.values())


class Recorder:
    """One process's buffer of mismatches and the thread that writes it out."""

    def __init__(self) -> None:
        self._pending: dict[Key, _Entry] = {}
        self._windows: dict[tuple[str, int], _Window] = {}
        # Keys this process has written a row for, per live window: their next flush
        # updates them together (see _write). Only the flushing thread touches it.
        self._written: dict[tuple[str, int], set[Key]] = {}
        self._dropped = 0
        self._dropped_reported = 0
        self._last_drop_report = float("-inf")
        self._failures = 0
        self._last_failure_report = float("-inf")
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._init_locks()

    def _init_locks(self) -> None:
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._wakeup = threading.Event()

    # --- the request path ---------------------------------------------------------------

    def record(
        self,
        deployment: str,
        reason: str,
        host: str,
        port: int | None,
        scheme: str,
        tenant_id: int | None = None,
        tenant_slug: str = "",
        method: str = "",
        path: str = "",
        remote_addr: str = "",
        user_agent: str = "",
        *,
        enforced: bool = True,
        now: float | None = None,
    ) -> None:
        """Count one mismatch; log it if it is the first of its (host, reason) in the window.

        Values must already be escaped and bounded (:func:`clean`); :func:`mismatch`
        does that for a request.
        """
        if now is None:
            now = time.time()
        width, max_keys, store = conf.audit_limits
        start = int(now // width) * width
        log_line = False
        summaries: list[_Window] = []
        with self._lock:
            window = self._windows.get((deployment, start))
            if window is None:
                summaries = self._retire(now)
                window = self._windows[(deployment, start)] = _Window(deployment, start, width)
            pair = (host, reason)
            repeats = window.logged.get(pair)
            if repeats is not None:
                window.logged[pair] = repeats + 1
            elif len(window.logged) < max_keys:
                window.logged[pair] = 0
                log_line = True
            else:
                window.unlogged += 1
            if store:
                sample = (method, path, remote_addr, user_agent)
                self._add(window, max_keys, reason, host, port, scheme, tenant_id, now, sample)
        if log_line:
            _log_event(
                enforced, deployment, reason, host, port, scheme, tenant_slug, method, path, remote_addr, user_agent
            )
        for old in summaries:
            _log_summary(old)
        if store and self._thread is None and not self._stopping:
            self._start()

    def _add(
        self,
        window: _Window,
        max_keys: int,
        reason: str,
        host: str,
        port: int | None,
        scheme: str,
        tenant_id: int | None,
        now: float,
        sample: tuple[str, str, str, str],
    ) -> None:
        ident = (reason, host, port, scheme)
        if ident not in window.keys:
            if len(window.keys) < max_keys:
                window.keys.add(ident)
            else:
                host, port, scheme, tenant_id = OVERFLOW_HOST, None, "", None
        key: Key = (window.deployment, reason, host, port, scheme, window.start)
        entry = self._pending.get(key)
        if entry is None:
            limit = max_keys * PENDING_FACTOR
            if len(self._pending) >= limit:
                # The database has been failing for a while: fold into the window's
                # overflow row while there is room for it, else drop and count.
                key = (window.deployment, reason, OVERFLOW_HOST, None, "", window.start)
                entry = self._pending.get(key)
                if entry is None:
                    if len(self._pending) >= limit + OVERFLOW_SLACK:
                        self._dropped += 1
                        return
                    entry = self._pending[key] = _Entry(None, now, *sample)
            else:
                entry = self._pending[key] = _Entry(tenant_id, now, *sample)
        entry.count += 1
        if now > entry.last:
            entry.last = now
        elif now < entry.first:
            entry.first = now

    def _retire(self, now: float, everything: bool = False) -> list[_Window]:
        """Drop the state of windows that are over; return those that need a summary."""
        done = [
            key
            for key, window in self._windows.items()
            if everything or window.start + window.width + SUMMARY_GRACE <= now
        ]
        return [window for window in (self._windows.pop(key) for key in done) if window.suppressed()]

    # --- writing ---------------------------------------------------------------------------

    def flush(self, *, final: bool = False) -> int:
        """Write the buffer to the database now; return how many events were written.

        Never raises: on a database error the unwritten events go back into the
        buffer for the next attempt. ``final`` also writes the log summaries of
        windows that have not ended yet (at exit).
        """
        try:
            return self._flush(final)
        except Exception:
            internal_logger.warning("hostguard could not flush its mismatch log", exc_info=True)
            return 0

    def _flush(self, final: bool) -> int:
        now = time.time()
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
                summaries = self._retire(now, everything=final)
                live = set(self._windows)
                dropped = self._dropped - self._dropped_reported
                if dropped and (final or now - self._last_drop_report >= conf.AUDIT_WINDOW_SECONDS):
                    self._dropped_reported = self._dropped
                    self._last_drop_report = now
                else:
                    dropped = 0
            for window in summaries:
                _log_summary(window)
            if dropped:
                internal_logger.warning(
                    "hostguard dropped %d mismatch events (%d since it started): the audit buffer is full "
                    "because the database has been unavailable; they are missing from the audit log",
                    dropped,
                    self._dropped,
                    extra={"dropped": dropped},
                )
            for window_key in [window_key for window_key in self._written if window_key not in live]:
                del self._written[window_key]
            if not batch:
                return 0
            # One order in every process, so that concurrent batches lock rows in the
            # same order and cannot deadlock each other.
            items = sorted(batch.items(), key=_lock_order)
            written = 0
            for offset in range(0, len(items), BATCH_SIZE):
                chunk = items[offset : offset + BATCH_SIZE]
                try:
                    _write(chunk, self._written)
                except Exception as exc:
                    self._restore(items[offset:])
                    self._failed(exc, now)
                    return written
                written += sum(entry.count for _, entry in chunk)
                for key, _ in chunk:
                    window_key = (key[0], key[5])
                    if window_key in live:
                        self._written.setdefault(window_key, set()).add(key)
            if self._failures:
                internal_logger.info("hostguard wrote its mismatch log again after %d failed attempts", self._failures)
                self._failures = 0
            return written

    def _restore(self, items: Iterable[tuple[Key, _Entry]]) -> None:
        with self._lock:
            for key, entry in items:
                current = self._pending.get(key)
                if current is None:
                    self._pending[key] = entry
                else:
                    current.merge(entry)

    def _failed(self, exc: Exception, now: float) -> None:
        self._failures += 1
        _close_connection()
        # The first failure of a streak, then one line per window: a database that
        # is down for an hour must not write a line per second.
        if self._failures == 1 or now - self._last_failure_report >= conf.AUDIT_WINDOW_SECONDS:
            self._last_failure_report = now
            keys, events = self.pending()
            internal_logger.warning(
                "hostguard could not write its mismatch log (%s: %s); %d events in %d rows are kept in memory "
                "and retried",
                type(exc).__name__,
                clean(exc, 300),
                events,
                keys,
                extra={"pending_events": events, "pending_rows": keys},
            )

    # --- the background thread -----------------------------------------------------------

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="hostguard-audit", daemon=True)
            self._thread = thread
            thread.start()

    def _run(self) -> None:
        try:
            while not self._stopping:
                self._wakeup.wait(conf.AUDIT_FLUSH_SECONDS)
                self._wakeup.clear()
                if self._stopping:
                    return
                self.flush()
                # Honour CONN_MAX_AGE in this thread as Django does for requests.
                close_old_connections()
        finally:
            connections.close_all()  # this thread's connections only

    def shutdown(self) -> None:
        """Stop the background thread and write everything buffered (graceful exit)."""
        self._stopping = True
        self._wakeup.set()
        self.flush(final=True)

    def _after_fork(self) -> None:
        # The parent still holds (and will write) what was buffered before the fork;
        # the child starts empty, with fresh locks and its own thread.
        self._pending = {}
        self._windows = {}
        self._written = {}
        self._dropped = self._dropped_reported = 0
        self._failures = 0
        self._stopping = False
        self._thread = None
        self._init_locks()

    # --- introspection and tests ---------------------------------------------------------------

    def pending(self) -> tuple[int, int]:
        """(rows, events) waiting to be written."""
        with self._lock:
            return len(self._pending), sum(entry.count for entry in self._pending.values())

    @property
    def dropped(self) -> int:
        """Events dropped since the process started because the buffer was full."""
        return self._dropped

    def reset(self) -> None:
        """Forget everything buffered (tests)."""
        with self._flush_lock, self._lock:
            self._pending = {}
            self._windows = {}
            self._written = {}
            self._dropped = self._dropped_reported = 0
            self._last_drop_report = self._last_failure_report = float("-inf")
            self._failures = 0
            self._stopping = False
            if self._thread is not None and not self._thread.is_alive():
                self._thread = None


def _lock_order(item: tuple[Key, _Entry]) -> tuple[bool, str, str, str, int, str, int]:
    # NULL ports first: rows of either kind come in runs that _write updates together.
    deployment, reason, host, port, scheme, start = item[0]
    return (port is not None, deployment, reason, host, -1 if port is None else port, scheme, start)


def _as_datetime(timestamp: float) -> datetime:
    value = datetime.fromtimestamp(timestamp, tz=UTC)
    if not settings.USE_TZ:
        value = timezone.make_naive(value, timezone.get_default_timezone())
    return value


def _datetime_value(timestamp: float) -> Value:
    return Value(_as_datetime(timestamp), output_field=DateTimeField())


def _filter(manager: Manager[MismatchLog], key: Key) -> Any:
    deployment, reason, host, port, scheme, start = key
    return manager.filter(
        deployment=deployment, reason=reason, host=host, port=port, scheme=scheme, window_start=_as_datetime(start)
    )


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


def _update_params(connection: Any, key: Key, entry: _Entry, starts: dict[int, Any] | None = None) -> list[Any]:
    """The parameters of :func:`_update_sql`; ``starts`` caches adapted window starts."""
    deployment, reason, host, port, scheme, start = key
    adapt = connection.ops.adapt_datetimefield_value
    if starts is None:
        window_start = adapt(_as_datetime(start))
    else:
        window_start = starts.get(start)
        if window_start is None:
            window_start = starts[start] = adapt(_as_datetime(start))
    params: list[Any] = [
        entry.count,
        adapt(_as_datetime(entry.first)),
        adapt(_as_datetime(entry.last)),
        deployment,
        reason,
        host,
        scheme,
        window_start,
    ]
    if port is not None:
        params.append(port)
    return params


def _update(manager: Manager[MismatchLog], key: Key, entry: _Entry) -> bool:
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


def _update_many(connection: Any, using: str, run: list[tuple[Key, _Entry]]) -> bool:
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


def _fields(key: Key, entry: _Entry, tenants: set[int]) -> dict[str, Any]:
    deployment, reason, host, port, scheme, start = key
    return {
        "deployment": deployment,
        "reason": reason,
        "host": host,
        "port": port,
        "scheme": scheme,
        "tenant_id": entry.tenant_id if entry.tenant_id in tenants else None,
        "window_start": _as_datetime(start),
        "first_seen": _as_datetime(entry.first),
        "last_seen": _as_datetime(entry.last),
        "count": entry.count,
        "method": entry.method,
        "path": entry.path,
        "remote_addr": entry.remote_addr,
        "user_agent": entry.user_agent,
    }


def _upsert(manager: Manager[MismatchLog], using: str, key: Key, entry: _Entry, tenants: set[int]) -> None:
    if _update(manager, key, entry):
        return
    try:
        with transaction.atomic(using=using):
            manager.create(**_fields(key, entry, tenants))
    except IntegrityError:
        # Another process created the row between our UPDATE and INSERT.
        if not _update(manager, key, entry):
            raise


def _create(manager: Manager[MismatchLog], using: str, items: list[tuple[Key, _Entry]], tenants: set[int]) -> None:
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


def _write(chunk: list[tuple[Key, _Entry]], written: dict[tuple[str, int], set[Key]] | None = None) -> None:
    """Upsert one batch in one transaction; raises on any database error.

    ``written``: the keys this process has already written a row for, by (deployment,
    window start). A flood that keeps revisiting the same hosts makes one UPDATE per
    host every flush; consecutive keys of ``chunk`` found there (in lock order, so
    that every process still locks rows in the same order) are updated with one
    statement, and key by key if one of their rows has gone.
    """
    from hostguard.models import MismatchLog, get_tenant_model

    using = router.db_for_write(MismatchLog)
    manager = MismatchLog._default_manager.db_manager(using)
    connection = connections[using]
    if written is None or connection.vendor not in _LEAST_GREATEST:
        written = {}
    # A tenant deleted since the event was recorded must not fail the whole batch.
    wanted = {entry.tenant_id for _, entry in chunk if entry.tenant_id is not None}
    tenants = set(get_tenant_model()._default_manager.using(using).filter(pk__in=wanted).values_list("pk", flat=True))
    max_keys = conf.AUDIT_MAX_KEYS
    with transaction.atomic(using=using):
        # Updates first: on SQLite the first write takes the database's write lock,
        # so the reads below cannot race another process's batch.
        fresh: dict[tuple[str, int], list[tuple[Key, _Entry]]] = {}

        def write_one(key: Key, entry: _Entry) -> None:
            if key[2] == OVERFLOW_HOST:
                _upsert(manager, using, key, entry, tenants)
            elif not _update(manager, key, entry):
                fresh.setdefault((key[0], key[5]), []).append((key, entry))

        def write_run() -> None:
            if len(run) < 2 or not _update_many(connection, using, run):
                for key, entry in run:
                    write_one(key, entry)
            run.clear()

        run: list[tuple[Key, _Entry]] = []
        for key, entry in chunk:
            if key in written.get((key[0], key[5]), ()):
                if run and (run[0][0][3] is None) != (key[3] is None):
                    write_run()
                run.append((key, entry))
            else:
                write_run()
                write_one(key, entry)
        write_run()
        for (deployment, start), new in fresh.items():
            # The key cap holds across processes: each one only knows its own keys.
            used = (
                manager.filter(deployment=deployment, window_start=_as_datetime(start))
                .exclude(host=OVERFLOW_HOST)
                .count()
            )
            room = max(0, max_keys - used)
            _create(manager, using, new[:room], tenants)
            overflow: dict[Key, _Entry] = {}
            for index, (key, entry) in enumerate(new):
                if index < room:
                    continue
                folded: Key = (deployment, key[1], OVERFLOW_HOST, None, "", start)
                # Never change the batch's own entries: a failed batch goes back to the buffer.
                if folded in overflow:
                    overflow[folded].merge(entry)
                else:
                    overflow[folded] = entry.copy(tenant_id=None)
            for key, entry in overflow.items():
                _upsert(manager, using, key, entry, tenants)


def _close_connection() -> None:
    from hostguard.models import MismatchLog

    try:
        connection = connections[router.db_for_write(MismatchLog)]
        # Inside an atomic block (a test's transaction) closing would break it.
        if not connection.in_atomic_block:
            connection.close()
    except Exception:
        internal_logger.debug("closing the audit log's connection failed", exc_info=True)


# --- logging -----------------------------------------------------------------------------


def _log_event(
    enforced: bool,
    deployment: str,
    reason: str,
    host: str,
    port: int | None,
    scheme: str,
    tenant: str,
    method: str,
    path: str,
    remote_addr: str,
    user_agent: str,
) -> None:
    logger.warning(
        "%s %s: host=%s port=%s scheme=%s deployment=%s tenant=%s method=%s path=%s remote_addr=%s user_agent=%s",
        "refused" if enforced else "would refuse (report-only)",
        reason,
        host,
        port if port is not None else "-",
        scheme or "-",
        deployment or "-",
        tenant or "-",
        method or "-",
        path or "-",
        remote_addr or "-",
        user_agent or "-",
        extra={
            "reason": reason,
            "host": host,
            "port": port,
            "scheme": scheme,
            "deployment": deployment,
            "tenant": tenant,
            "method": method,
            "path": path,
            "remote_addr": remote_addr,
            "user_agent": user_agent,
            "enforced": enforced,
        },
    )


def _log_summary(window: _Window) -> None:
    suppressed = window.suppressed()
    top = sorted(((count, pair) for pair, count in window.logged.items() if count), reverse=True)[:SUMMARY_TOP]
    named = ", ".join("%s %s ×%d" % (host, reason, count) for count, (host, reason) in top)
    if window.unlogged:
        named = (named + ", " if named else "") + "%s ×%d" % (OVERFLOW_HOST, window.unlogged)
    logger.warning(
        "%d more mismatches in the %d s window from %s were not logged one by one (the audit log counts them "
        "all); most frequent: %s",
        suppressed,
        window.width,
        _as_datetime(window.start).isoformat(),
        named,
        extra={
            "suppressed": suppressed,
            "deployment": window.deployment,
            "window_start": _as_datetime(window.start),
        },
    )


# --- the entry point ------------------------------------------------------------------------


recorder = Recorder()

_last_internal_warning = float("-inf")


def mismatch(request: HttpRequest, decision: Decision) -> None:
    """Count and log a refusal, or a would-be refusal in report mode. Never raises."""
    global _last_internal_warning
    try:
        meta = request.META
        recorder.record(
            conf.DEPLOYMENT or "",
            decision.reason,
            decision.host,
            decision.port,
            decision.scheme,
            decision.tenant_id,
            decision.tenant_slug,
            clean(request.method or "", MAX_METHOD),
            clean(request.path, MAX_PATH),
            clean(meta.get("REMOTE_ADDR") or "", MAX_REMOTE_ADDR),
            clean(meta.get("HTTP_USER_AGENT") or "", MAX_USER_AGENT),
            enforced=not decision.reported,
        )
    except Exception:
        now = time.monotonic()
        if now - _last_internal_warning >= 60:
            _last_internal_warning = now
            internal_logger.warning("hostguard could not record a mismatch", exc_info=True)


def flush() -> int:
    """Write this process's buffered mismatches now; the number of events written."""
    return recorder.flush()


def shutdown() -> None:
    """Write everything buffered and stop the background writer: call at worker exit."""
    recorder.shutdown()


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


atexit.register(recorder.shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=recorder._after_fork)
