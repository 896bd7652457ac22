"""The policy: an immutable in-memory snapshot of every authority, and its freshness.

A request only ever reads the current :class:`Snapshot`; it never touches the
database in steady state. The snapshot is rebuilt

* at once in a process that writes a change (``changed()``, wired to model signals
  and to the bulk queryset methods), and
* in every other process by a background poller that compares the version stamp in
  the database at most every ``HOSTGUARD_REFRESH_SECONDS``.

The stamp is bumped inside the writer's transaction, so it is published on commit
and never for a rolled-back change. If the database is unreachable the last good
snapshot keeps serving; with none at all, the middleware answers 503.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections, transaction
from django.db.models import F
from django.utils import timezone

from hostguard.conf import conf
from hostguard.decision import Snapshot

logger = logging.getLogger("hostguard.policy")


def read_version(using: str) -> int:
    from hostguard.models import PolicyStamp

    version = PolicyStamp.objects.using(using).filter(pk=1).values_list("version", flat=True).first()
    return version or 0


#: The columns of an authority row, in the order :meth:`Snapshot.from_rows` reads them.
ROW_FIELDS = (
    "id",
    "host",
    "port",
    "scheme",
    "is_active",
    "tenant_id",
    "tenant__slug",
    "tenant__is_active",
    "tenant__deployment__name",
)


def build_snapshot(using: str | None = None) -> Snapshot:
    """Read the whole policy from the database (the stamp first, then one query)."""
    from hostguard.models import Authority

    using = using or conf.DATABASE
    version = read_version(using)
    rows = Authority.objects.using(using).order_by().values_list(*ROW_FIELDS).iterator(chunk_size=20000)
    return Snapshot.from_rows(version, rows)


class Policy:
    """The process-wide holder of the current snapshot."""

    #: The snapshot to decide with when no database work is due, else ``None``: one
    #: attribute read for the middleware's shortcut (see :meth:`ready`).
    fresh: Snapshot | None = None

    def __init__(self) -> None:
        self.__snapshot: Snapshot | None = None
        self.__stale = False
        self._lock = threading.Lock()
        self._wakeup = threading.Event()
        self._poller: threading.Thread | None = None
        self._last_attempt = float("-inf")
        self._last_warning = float("-inf")
        self._failing = False
        self._local = threading.local()

    @property
    def _snapshot(self) -> Snapshot | None:
        return self.__snapshot

    @_snapshot.setter
    def _snapshot(self, snapshot: Snapshot | None) -> None:
        self.__snapshot = snapshot
        self.fresh = None if self.__stale else snapshot

    @property
    def _stale(self) -> bool:
        return self.__stale

    @_stale.setter
    def _stale(self, stale: bool) -> None:
        self.__stale = stale
        self.fresh = None if stale else self.__snapshot

    # --- the request path ---------------------------------------------------------

    def ready(self) -> Snapshot | None:
        """The snapshot if no database work is due, else ``None``; never blocks."""
        snapshot = self._snapshot
        if snapshot is None or self._stale:
            return None
        if self._poller is None:
            self._start_poller()
        return snapshot

    def current(self) -> Snapshot | None:
        """The snapshot to decide with, loading it first when due (sync code only)."""
        snapshot = self.ready()
        if snapshot is not None:
            return snapshot
        return self._load_for_request()

    def _load_for_request(self) -> Snapshot | None:
        with self._lock:
            if self._snapshot is not None and not self._stale:
                return self._snapshot
            now = time.monotonic()
            if self._snapshot is None and now - self._last_attempt < conf.REFRESH_SECONDS:
                # Nothing loaded and the database failed a moment ago: answer 503 at
                # once rather than queue every request behind another timeout.
                return None
            self._last_attempt = now
            try:
                self._rebuild()
            except Exception:
                self._stale = False
                self._warn("hostguard could not load its policy; %s")
            if self._poller is None:
                self._start_poller()
            return self._snapshot

    # --- refreshing ---------------------------------------------------------------

    def refresh(self) -> Snapshot:
        """Rebuild the snapshot now, from the database; raises on database errors."""
        with self._lock:
            return self._rebuild()

    def _rebuild(self) -> Snapshot:
        self._stale = False
        try:
            snapshot = build_snapshot()
        except Exception:
            _close_connection(conf.DATABASE)
            raise
        self._snapshot = snapshot
        self._reachable()
        return snapshot

    def check(self) -> bool:
        """Rebuild if the stamp moved; return whether it did. Used by the poller."""
        current = self._snapshot
        using = conf.DATABASE
        if current is not None and not self._stale:
            try:
                version = read_version(using)
            except Exception:
                _close_connection(using)
                raise
            self._reachable()
            if version == current.version:
                return False
        with self._lock:
            self._rebuild()
        return True

    def _poll(self) -> None:
        while True:
            self._wakeup.wait(max(conf.REFRESH_SECONDS, 0.05))
            self._wakeup.clear()
            try:
                if self.check():
                    logger.info("hostguard policy reloaded: %d authorities", self.size)
            except Exception:
                self._warn("hostguard could not refresh its policy; %s")
            # Keep this thread's connection only as long as CONN_MAX_AGE allows, as
            # Django does for request threads: no idle connection per worker forever.
            close_old_connections()

    def _start_poller(self) -> None:
        with _POLLER_LOCK:
            if self._poller is not None:
                return
            thread = threading.Thread(target=self._poll, name="hostguard-policy", daemon=True)
            self._poller = thread
            thread.start()

    def _fallback_text(self) -> str:
        if self._snapshot is None:
            if _tables_missing(conf.DATABASE):
                return NOT_MIGRATED
            return "no policy loaded yet: answering 503 until the database is reachable"
        return "serving the last good policy (version %d)" % self._snapshot.version

    def _warn(self, message: str) -> None:
        """Log a failure to reach the database: ``message`` gets the fallback text."""
        # One warning per refresh interval, not one per request, and the traceback
        # only with the first of an outage: an hour without the database must not
        # bury the log in identical tracebacks. The fallback text is worked out only
        # when logging, as it may ask the database whether the tables exist.
        first = not self._failing
        self._failing = True
        now = time.monotonic()
        if now - self._last_warning < conf.REFRESH_SECONDS:
            return
        self._last_warning = now
        fallback = self._fallback_text()
        if fallback == NOT_MIGRATED:
            # A missing table needs `migrate`, not a traceback.
            logger.warning(message, fallback)
        elif first:
            logger.warning(message, fallback, exc_info=True)
        else:
            logger.warning(message + " (still failing: %s)", fallback, _gist(sys.exc_info()[1]))

    def _reachable(self) -> None:
        if self._failing:
            self._failing = False
            self._last_warning = float("-inf")
            logger.info("hostguard reached its database again; policy version %d", self._snapshot_version())

    def _snapshot_version(self) -> int:
        return self._snapshot.version if self._snapshot is not None else 0

    # --- writes ---------------------------------------------------------------------

    def changed(self, using: str = DEFAULT_DB_ALIAS) -> None:
        """Record that the policy changed in ``using``'s current transaction."""
        if getattr(self._local, "batch", 0):
            self._local.dirty = getattr(self._local, "dirty", set()) | {using}
            return
        self._stale = True
        bump_version(using)
        transaction.on_commit(self._committed, using=using)

    def _committed(self) -> None:
        # The next request in this process rebuilds at once. Waking the poller too
        # would only race that rebuild with a second query on another connection.
        self._stale = True

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Bump the stamp once for many writes (the import command, bulk actions)."""
        self._local.batch = getattr(self._local, "batch", 0) + 1
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            self._local.batch -= 1
            if not self._local.batch:
                dirty: set[str] = getattr(self._local, "dirty", set())
                self._local.dirty = set()
                for using in dirty:
                    if failed:
                        # The block's transaction may be aborted (PostgreSQL refuses any
                        # further statement): publish its writes only if it commits anyway.
                        self._stale = True
                        transaction.on_commit(partial(self._publish, using), using=using)
                    else:
                        self.changed(using)

    def _publish(self, using: str) -> None:
        bump_version(using)
        self._stale = True

    # --- introspection and tests --------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    @property
    def size(self) -> int:
        return self._snapshot.size if self._snapshot is not None else 0

    def reset(self) -> None:
        """Forget the snapshot (tests); the next request loads it again."""
        with self._lock:
            self._snapshot = None
            self._stale = False
            self._last_attempt = float("-inf")
            self._last_warning = float("-inf")
            self._failing = False

    def _after_fork(self) -> None:
        # Threads do not survive fork(): a forked worker starts its own poller.
        self._poller = None
        self._lock = threading.Lock()
        self._wakeup = threading.Event()


_POLLER_LOCK = threading.Lock()

policy = Policy()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=policy._after_fork)


def changed(using: str = DEFAULT_DB_ALIAS) -> None:
    """Tell hostguard its policy changed through ``using`` (call after raw SQL writes)."""
    policy.changed(using)


def bump_version(using: str) -> None:
    from hostguard.models import PolicyStamp

    stamps = PolicyStamp.objects.using(using).filter(pk=1)
    if not stamps.update(version=F("version") + 1, changed_at=timezone.now()):
        PolicyStamp.objects.using(using).get_or_create(pk=1, defaults={"version": 1, "changed_at": timezone.now()})


NOT_MIGRATED = "its tables do not exist: run `python manage.py migrate`; answering 503 until then"


def _tables_missing(using: str) -> bool:
    """Whether hostguard's tables are absent (not migrated), as opposed to the database failing."""
    try:
        from hostguard.models import Authority

        connection = connections[using]
        with connection.cursor() as cursor:
            return Authority._meta.db_table not in connection.introspection.table_names(cursor)
    except Exception:
        return False


def _gist(error: BaseException | None) -> str:
    """The first line of an error's message (database errors run to several lines)."""
    text = str(error).strip() if error is not None else ""
    return text.splitlines()[0] if text else repr(error)


def _close_connection(using: str) -> None:
    try:
        connections[using].close()
    except Exception:
        logger.debug("closing the %s connection failed", using, exc_info=True)
