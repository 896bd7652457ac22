"""The process's policy: its current snapshot, kept fresh off the request path.

A request reads :attr:`Policy.fresh` — one attribute — and never waits for the
database. The snapshot moves forward in three ways:

* **the writer's own change**, applied at commit in the writing thread (the admin
  page that saved, so its next page already sees it): a delta, a few rows;
* **a push**: on PostgreSQL each write sends ``NOTIFY`` and every process listens
  (:mod:`hostguard.push`), which wakes its refresher at once;
* **polling**, the fallback everywhere: the refresher thread compares the version
  stamp every ``HOSTGUARD_REFRESH_SECONDS``.

The refresher applies the change log after its version (:func:`hostguard.store.delta`)
and reads the whole policy only at start, or when the log no longer reaches back.
New snapshots are installed only if they are newer than the current one, so the
writer and the refresher can both move it forward without a lock on the way.

If the database is unreachable or hangs (hostguard's own queries have timeouts, and
a watchdog says when a refresh overruns), the last good snapshot keeps serving.
With none at all, a request is answered 503 at once: a starting process reads its
first snapshot as the site loads (:meth:`Policy.preload`, from the middleware),
waiting at most :data:`STARTUP_WAIT`, before any request arrives.

Tests and management commands may set :attr:`Policy.background` to ``False``: then
snapshots are read on the calling thread (which sees its own uncommitted writes).
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
from typing import Any

from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections, transaction

from hostguard import changes, metrics, store
from hostguard.changes import Change
from hostguard.conf import conf
from hostguard.snapshot import Snapshot

logger = logging.getLogger("hostguard.policy")

#: How long a starting process waits for its first snapshot (as the site loads, never
#: in a request): then it serves, answering 503 at once until the snapshot arrives.
STARTUP_WAIT = 2.0
#: An overlay this large (or past a fiftieth of the snapshot) is merged into new base indexes.
COMPACT_AT = 2048

NOT_MIGRATED = "its tables do not exist: run `python manage.py migrate`; answering 503 until then"


class Policy:
    """The process-wide holder of the current snapshot."""

    #: The snapshot requests decide with, or ``None`` when there is none to use without
    #: database work: one attribute read for the middleware.
    fresh: Snapshot | None = None
    #: When (``time.time()``) the database last confirmed the current snapshot is up to date.
    confirmed_at: float | None = None

    def __init__(self) -> None:
        #: Refresh in background threads (servers); ``False``: on the calling thread.
        self.background = True
        self._current: Snapshot | None = None
        self._stale = False
        self._install_lock = threading.Lock()
        self._foreground_lock = threading.Lock()
        self._init_threads()
        self._health = _Health()

    def _init_threads(self) -> None:
        self._wakeup = threading.Event()
        #: Set when the refresher has finished its first attempt (either way).
        self._confirmed = threading.Event()
        #: The snapshot came with fork() and the database has not confirmed it yet.
        self._inherited = False
        self._attempt_started: float | None = None
        self._thread: threading.Thread | None = None
        self._listener: Any = None
        self._loader: threading.Thread | None = None

    # --- the request path ---------------------------------------------------------

    def obtain(self) -> Snapshot | None:
        """The snapshot to decide with, for sync callers that found :attr:`fresh` empty.

        In the background it starts this process's refresher and returns what there is
        (``None`` before a first snapshot: the request gets 503); in the foreground it
        reads the database now, on this thread.
        """
        snapshot = self.fresh
        if snapshot is not None:
            return snapshot
        if not self.background:
            return self._foreground()
        # Never waits: with nothing loaded (or confirmed) yet, the request gets 503 at once.
        self.start()
        return None if self._inherited else self._current

    def preload(self, timeout: float = STARTUP_WAIT) -> None:
        """Read the policy now, for a process that is starting (the middleware does it as
        the site loads, before any request): wait at most ``timeout`` seconds for it.

        The read runs on a short-lived thread of its own, so a hanging database holds
        the start-up for ``timeout`` at most, and no thread is left running for good —
        a gunicorn master (``--preload``) must not fork with one. The snapshot read is
        used from the first request on; the refresher starts with that request.
        """
        if not self.background:
            return
        loader = self._loader
        if loader is not None and loader.is_alive():
            return  # a previous read still waits on the database: one is enough
        loader = threading.Thread(target=self._preload, name="hostguard-policy-preload", daemon=True)
        self._loader = loader
        loader.start()
        loader.join(timeout)

    def _preload(self) -> None:
        try:
            base = self._current
            if base is None:
                snapshot = store.full(conf.DATABASE)
            else:
                try:
                    delta = store.delta(conf.DATABASE, base.version, base.token)
                except store.Unreachable:
                    snapshot = store.full(conf.DATABASE)
                else:
                    snapshot = base if delta is None else base.with_changes(*delta)
            with self._install_lock:
                current = self._current
                if current is None or current is base or snapshot.version > current.version:
                    self._current = snapshot  # not yet fresh: the first request starts the refresher
            self.confirmed_at = time.time()
        except Exception:
            logger.debug("hostguard's start-up read failed; its refresher will retry", exc_info=True)
        finally:
            connections.close_all()  # this thread's own: it ends here

    def start(self, wait: float = 0.0) -> None:
        """Start this process's refresher (and its listener), if they are not running.

        A worker forked with a snapshot (gunicorn's ``--preload``) serves it only once
        its refresher has brought it up to date — until then, 503 — so a worker started
        during an outage never answers from an older policy than its siblings.
        ``wait``: how long to wait for that (a booting worker, never a request).
        """
        if not self.background:
            return
        if self._thread is None:
            with _START_LOCK:
                if self._thread is None:
                    thread = threading.Thread(target=self._run, name="hostguard-policy", daemon=True)
                    self._thread = thread
                    thread.start()
                    threading.Thread(target=self._watch, name="hostguard-policy-watchdog", daemon=True).start()
                    from hostguard import push

                    self._listener = push.listen(self)
            if not self._inherited:
                self._publish()
        if wait > 0:
            self._confirmed.wait(wait)

    def _publish(self) -> None:
        with self._install_lock:
            if self._current is not None and not self._stale:
                self.fresh = self._current

    def wake(self) -> None:
        """Check the database now rather than at the next interval (a push, a missed commit)."""
        self._wakeup.set()

    # --- moving forward -------------------------------------------------------------

    def refresh(self, using: str | None = None) -> Snapshot:
        """Read the whole policy now, on this thread, and install it; raises on database errors."""
        base = self._current
        snapshot = store.full(using or conf.DATABASE)
        self._stale = False  # everything written so far, on this thread's connection too, is in it
        self._install(snapshot, base)
        return self._current or snapshot

    def advance(self, using: str | None = None) -> Snapshot | None:
        """Apply what changed since the current snapshot (or read it all); raises on database errors."""
        using = using or conf.DATABASE
        base = self._current
        if base is None:
            snapshot = store.full(using)
        else:
            try:
                delta = store.delta(using, base.version, base.token, committed_only=self.background)
            except store.Unreachable:
                logger.info("hostguard's change log no longer reaches back to version %d: reading it all", base.version)
                snapshot = store.full(using)
            else:
                if delta is None:
                    return base
                snapshot = base.with_changes(*delta)
        self._install(snapshot, base)
        return self._current

    def _install(self, snapshot: Snapshot, base: Snapshot | None) -> bool:
        with self._install_lock:
            current = self._current
            if current is not None and current is not base and snapshot.version <= current.version:
                return False  # someone installed something as new while this was being read
            self._current = snapshot
            self.fresh = None if self._stale else snapshot
            return True

    def _foreground(self) -> Snapshot | None:
        """Read or advance the snapshot on this thread (``background = False``)."""
        with self._foreground_lock:
            if self.fresh is not None:
                return self.fresh
            if self._current is None and not self._health.may_retry():
                return None  # failed a moment ago: answer 503 at once
            self._stale = False
            try:
                self.advance()
            except Exception:
                self._warn("hostguard could not load its policy; %s")
                self.fresh = self._current
                return self._current
            self.confirmed_at = time.time()
            self._health.reachable(self._current)
            return self._current

    # --- writes ---------------------------------------------------------------------

    def record(self, using: str, changes: list[Change], failed: bool = False) -> None:
        """Record ``changes`` written through ``using`` in its current transaction."""
        if failed:
            # The writer's transaction may be aborted (PostgreSQL refuses any further
            # statement): record the changes only if it commits anyway.
            transaction.on_commit(partial(self._record_after, using, changes), using=using)
            return
        store.record(using, changes)
        if not self.background:
            self._stale = True
            self.fresh = None
        transaction.on_commit(partial(self._committed, using), using=using)

    def _record_after(self, using: str, changes: list[Change]) -> None:
        store.record(using, changes)
        self._committed(using)

    def _committed(self, using: str) -> None:
        if not self.background:
            self._stale = True
            self.fresh = None
            return
        if self._current is None:
            self.wake()
            return
        # Read-your-writes: the writing process sees its change before it answers.
        try:
            self.advance(using)
        except Exception:
            logger.debug("applying this process's own change failed; the refresher will", exc_info=True)
            self.wake()

    # --- the background -------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._attempt_started = time.monotonic()
            try:
                before = self._current
                snapshot = self.advance()
                if snapshot is not None and snapshot.overlay_size > max(COMPACT_AT, snapshot.size // 50):
                    self._install(snapshot.compacted(), snapshot)
                if snapshot is not before and snapshot is not None:
                    logger.debug("hostguard policy at version %d: %d authorities", snapshot.version, snapshot.size)
                self.confirmed_at = time.time()
                self._inherited = False
                self._publish()
                self._health.reachable(self._current)
            except Exception:
                if self._current is None:
                    self._warn("hostguard could not load its policy; %s")
                else:
                    self._warn("hostguard could not refresh its policy; %s")
            finally:
                self._attempt_started = None
                self._confirmed.set()
                # Keep this thread's connection only as long as CONN_MAX_AGE allows, as
                # Django does for request threads.
                close_old_connections()
            self._wakeup.wait(max(conf.REFRESH_SECONDS, 0.05))
            self._wakeup.clear()

    def _watch(self) -> None:
        # The refresher's queries have timeouts, but a stalled network can hold a query
        # past any server-side timeout: say so while it lasts, and when it ends.
        stalled_since: float | None = None
        while True:
            time.sleep(min(1.0, max(conf.REFRESH_SECONDS, 0.05)))
            started = self._attempt_started
            limit = max(conf.REFRESH_SECONDS, 1.0) + 1.0
            if started is not None and time.monotonic() - started > limit:
                if stalled_since != started:
                    stalled_since = started
                    logger.warning(
                        "hostguard's policy refresh has waited on the database for %.0f s (longer than "
                        "HOSTGUARD_REFRESH_SECONDS allows); requests keep using version %d",
                        time.monotonic() - started,
                        self._current.version if self._current is not None else 0,
                    )
            elif stalled_since is not None and started != stalled_since:
                logger.info("hostguard's stalled policy refresh has ended")
                stalled_since = None

    def _warn(self, message: str) -> None:
        self._health.failed(message, self._current)

    # --- introspection and tests ------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot | None:
        return self._current

    @property
    def size(self) -> int:
        return self._current.size if self._current is not None else 0

    @property
    def listening(self) -> bool:
        """Whether this process hears changes pushed by PostgreSQL right now."""
        return bool(self._listener is not None and self._listener.connected)

    def install(self, snapshot: Snapshot) -> None:
        """Decide with ``snapshot`` from now on, whatever its version (benchmarks, tests)."""
        with self._install_lock:
            self._current = self.fresh = snapshot
            self._stale = False

    def reset(self) -> None:
        """Forget the snapshot (tests): the next request loads it again."""
        with self._install_lock:
            self._current = None
            self.fresh = None
            self.confirmed_at = None
            self._stale = False
            self._health = _Health()

    def _after_fork(self) -> None:
        # Threads do not survive fork(): a forked worker starts its own refresher, and
        # keeps the snapshot it inherited (gunicorn's preload_app shares it).
        self._install_lock = threading.Lock()
        self._foreground_lock = threading.Lock()
        self._init_threads()
        self._inherited = self._current is not None
        # The first request goes through obtain(), which starts this process's threads.
        self.fresh = None

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Record every write in the block as one change (the import command, bulk actions)."""
        with changes.batch():
            yield


class _Health:
    """Whether the database answers, and the warnings that say so: one per refresh
    interval, the traceback with the first of an outage only."""

    def __init__(self) -> None:
        self.failing = False
        self.last_attempt = float("-inf")
        self.last_warning = float("-inf")

    def may_retry(self) -> bool:
        now = time.monotonic()
        if now - self.last_attempt < conf.REFRESH_SECONDS:
            return False
        self.last_attempt = now
        return True

    def failed(self, message: str, current: Snapshot | None) -> None:
        metrics.refresh_failed()
        first = not self.failing
        self.failing = True
        now = time.monotonic()
        if now - self.last_warning < conf.REFRESH_SECONDS:
            return
        self.last_warning = now
        if current is None:
            fallback = (
                NOT_MIGRATED
                if _tables_missing(conf.DATABASE)
                else ("no policy loaded yet: answering 503 until the database is reachable")
            )
        else:
            fallback = "serving the last good policy (version %d)" % current.version
        if fallback == NOT_MIGRATED:
            logger.warning(message, fallback)
        elif first:
            logger.warning(message, fallback, exc_info=True)
        else:
            logger.warning(message + " (still failing: %s)", fallback, _gist(sys.exc_info()[1]))

    def reachable(self, current: Snapshot | None) -> None:
        metrics.policy_confirmed(current)
        if self.failing:
            self.failing = False
            self.last_warning = float("-inf")
            logger.info("hostguard reached its database again; policy version %d", current.version if current else 0)


_START_LOCK = threading.Lock()

policy = Policy()
metrics.watch(policy)

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=policy._after_fork)


def _on_rows_changed(sender: Any, using: str, changes: list[Change], failed: bool, **kwargs: Any) -> None:
    policy.record(using, changes, failed)


def connect() -> None:
    """Hear the models' writes (from ``HostGuardConfig.ready()``)."""
    changes.rows_changed.connect(_on_rows_changed, dispatch_uid="hostguard.policy")


def changed(using: str = DEFAULT_DB_ALIAS) -> None:
    """Tell hostguard its policy changed through ``using`` in a way no row says (raw SQL
    writes): every process reads the whole policy again."""
    changes.send(using, changes.everything())


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
