"""The flush thread: a :class:`Recorder` owns one buffer and the thread that writes it out.

The thread starts on the first stored event (again in every forked worker) and
writes the buffer every ``HOSTGUARD_AUDIT_FLUSH_SECONDS``. If the database fails,
the events go back into the buffer and the next tick retries; one line says so per
outage, not per attempt.

A watchdog notices a write that overruns: one that has waited on the database
:func:`overrun_seconds` (the flush interval, plus the interval or 2 s, whichever is
more; 3 s by default) gets a warning while it is still waiting — also when the
database never answers at all, as in a network stall no statement timeout can end —
and a line when it ends. At most one warning per ``HOSTGUARD_AUDIT_WINDOW_SECONDS``.

At exit, :meth:`Recorder.shutdown` writes what is left. With a ``deadline`` it
gives up then, and says exactly how many events and rows it could not write.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from django.db import close_old_connections, connections

from hostguard.audit import log, writer
from hostguard.audit.buffer import Buffer, Entry, Key, Window
from hostguard.conf import conf
from hostguard.escaping import clean

if TYPE_CHECKING:
    from collections.abc import Callable

#: A write is overdue after the flush interval plus this margin (or plus the
#: interval, when that is longer).
OVERRUN_MARGIN = 2.0


def overrun_seconds() -> float:
    """How long a write may wait on the database before the watchdog warns."""
    interval = conf.AUDIT_FLUSH_SECONDS
    return interval + max(OVERRUN_MARGIN, interval)


class Recorder:
    """One process's buffer of mismatches and the thread that writes it out."""

    def __init__(self) -> None:
        self.buffer = Buffer()
        self._init_state()
        self._init_locks()

    def _init_state(self) -> None:
        # Keys this process has written a row for, per live window: their next flush
        # updates them together (see writer.write). Only the flushing thread touches it.
        self._written: writer.Written = {}
        self._failures = 0
        self._last_failure_report = float("-inf")
        self._stopping = False
        self._thread: threading.Thread | None = None
        # The write under way: its items and how many of them are committed (guarded
        # by _watch_lock), so an exit that cannot wait for it knows what it loses.
        self._inflight: list[tuple[Key, Entry]] = []
        self._committed = 0
        self._write_started: float | None = None
        self._overrun_warned = False
        self._last_overrun_report = float("-inf")
        # Set when shutdown() gave up: what is left is reported lost, never retried.
        self._abandoned = False

    def _init_locks(self) -> None:
        self._flush_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._watch_lock = threading.Lock()
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
        sni: str = "",
        *,
        enforced: bool = True,
        now: float | None = None,
    ) -> None:
        """Count one mismatch; log it if it is the first of its (host, reason) in the window.

        Values must already be escaped and bounded (:func:`~hostguard.audit.clean`);
        :func:`~hostguard.audit.mismatch` does that for a request.
        """
        if now is None:
            now = time.time()
        sample = (method, path, remote_addr, user_agent, sni)
        added = self.buffer.add((deployment, reason, host, port, scheme), tenant_id, sample, now)
        if added.log_line:
            log.event(enforced, deployment, reason, host, port, scheme, tenant_slug, sample)
        for window in added.summaries:
            self._summarise(window)
        if added.stored and self._thread is None and not self._stopping:
            self._start()

    def _summarise(self, window: Window) -> None:
        start = writer.as_datetime(window.start)
        log.summary(window.deployment, start, window.width, window.throttle, self.buffer.overflow_host)

    # --- writing ---------------------------------------------------------------------------

    def flush(self, *, final: bool = False) -> int:
        """Write the buffer to the database now; return how many events were written.

        Never raises: on a database error the unwritten events go back into the
        buffer for the next attempt. ``final`` also writes the log summaries of
        windows that have not ended yet, and reports what it cannot write as lost.
        """
        return self._guarded_flush(final, None)

    def _guarded_flush(self, final: bool, deadline: float | None) -> int:
        try:
            return self._flush(final, deadline)
        except Exception:
            log.internal_logger.warning("hostguard could not flush its mismatch log", exc_info=True)
            return 0

    def _flush(self, final: bool, deadline: float | None) -> int:
        now = time.time()
        with self._flush_lock:
            # Taken and marked in flight at once: an exit that gives up meanwhile
            # finds every event in one of the two places.
            with self._watch_lock:
                batch = self.buffer.take(now, final, conf.AUDIT_WINDOW_SECONDS)
                # One order in every process (see writer.lock_order).
                items = sorted(batch.pending.items(), key=writer.lock_order)
                self._inflight, self._committed = items, 0
            for window in batch.summaries:
                self._summarise(window)
            if batch.dropped:
                log.buffer_full(batch.dropped, self.buffer.dropped)
            for window_key in [window_key for window_key in self._written if window_key not in batch.live]:
                del self._written[window_key]
            if not items:
                return 0
            return self._write(items, batch.live, final, deadline)

    def _write(
        self, items: list[tuple[Key, Entry]], live: set[tuple[str, int]], final: bool, deadline: float | None
    ) -> int:
        timer = self._watch()
        written = 0
        try:
            for offset in range(0, len(items), writer.BATCH_SIZE):
                chunk = items[offset : offset + writer.BATCH_SIZE]
                try:
                    writer.write(chunk, self._written, self._timeout(deadline))
                except Exception as exc:
                    self._write_failed(items[offset:], exc, final)
                    return written
                with self._watch_lock:
                    self._committed = offset + len(chunk)
                written += sum(entry.count for _, entry in chunk)
                for key, _ in chunk:
                    window_key = (key[0], key[5])
                    if window_key in live:
                        self._written.setdefault(window_key, set()).add(key)
        finally:
            self._unwatch(timer)
        if self._failures:
            log.written_again(self._failures)
            self._failures = 0
        return written

    @staticmethod
    def _timeout(deadline: float | None) -> float:
        timeout = writer.timeout_seconds()
        if deadline is not None:
            timeout = min(timeout, max(0.1, deadline - time.monotonic()))
        return timeout

    def _write_failed(self, rest: list[tuple[Key, Entry]], exc: Exception, final: bool) -> None:
        writer.close_connection()
        with self._watch_lock:
            if self._abandoned:
                return  # shutdown() has already reported these as lost
            self._inflight, self._committed = [], 0
            if not final:
                self.buffer.restore(rest)
        if final:
            cause = "%s: %s" % (type(exc).__name__, clean(exc, 300))
            log.lost_at_exit(sum(entry.count for _, entry in rest), len(rest), cause)
            return
        if self._stopping:
            return  # the final flush writes them or says they are lost; no promise of a retry
        self._failures += 1
        # The first failure of a streak, then one line per window: a database that
        # is down for an hour must not write a line per second.
        now = time.time()
        if self._failures == 1 or now - self._last_failure_report >= conf.AUDIT_WINDOW_SECONDS:
            self._last_failure_report = now
            rows, events = self.buffer.counts()
            log.write_failed(exc, events, rows)

    # --- the watchdog ------------------------------------------------------------------------

    def _watch(self) -> threading.Timer | None:
        started = time.monotonic()
        with self._watch_lock:
            self._write_started = started
            self._overrun_warned = False
        timer = threading.Timer(overrun_seconds(), self._overran, (started,))
        timer.daemon = True
        try:
            timer.start()
        except RuntimeError:  # no new threads at interpreter shutdown: write unwatched
            return None
        return timer

    def _overran(self, started: float) -> None:
        with self._watch_lock:
            now = time.monotonic()
            if self._write_started != started or now - self._last_overrun_report < conf.AUDIT_WINDOW_SECONDS:
                return
            self._overrun_warned = True
            self._last_overrun_report = now
        log.slow(now - started, conf.AUDIT_FLUSH_SECONDS)

    def _unwatch(self, timer: threading.Timer | None) -> None:
        if timer is not None:
            timer.cancel()
        with self._watch_lock:
            started, warned = self._write_started, self._overrun_warned
            self._inflight, self._committed = [], 0
            self._write_started, self._overrun_warned = None, False
        if warned and started is not None:
            log.slow_ended(time.monotonic() - started)

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

    def shutdown(self, deadline: float | None = None) -> None:
        """Stop the background thread and write everything buffered (graceful exit).

        ``deadline``: a :func:`time.monotonic` time to give up at. The write then runs
        in a thread of its own, so that a database that does not answer cannot hold
        the exit; whatever is not written by then is logged as lost, to the event.
        """
        self._stopping = True
        self._wakeup.set()
        if self._abandoned or (self.buffer.is_idle() and not self._inflight):
            return
        if deadline is None:
            self._guarded_flush(True, None)
            return
        done = threading.Event()
        finisher = threading.Thread(
            target=self._finish, args=(deadline, done.set), name="hostguard-audit-exit", daemon=True
        )
        try:
            finisher.start()
        except RuntimeError:  # no new threads at interpreter shutdown (Python 3.12+)
            self._guarded_flush(True, deadline)
            return
        if not done.wait(max(0.0, deadline - time.monotonic())):
            self._give_up()

    def _finish(self, deadline: float, done: Callable[[], None]) -> None:
        try:
            self._guarded_flush(True, deadline)
        finally:
            connections.close_all()  # this thread's connections only
            done()

    def _give_up(self) -> None:
        with self._watch_lock:
            self._abandoned = True
            rest = self._inflight[self._committed :]
            started = self._write_started
            rows, events = self.buffer.give_up()
        rows += len(rest)
        events += sum(entry.count for _, entry in rest)
        if not events:
            return
        waited = "" if started is None else " after waiting %.1f s for it" % (time.monotonic() - started)
        log.lost_at_exit(events, rows, "the database did not answer before the exit deadline" + waited)

    def after_fork(self) -> None:
        """In a forked child: start empty, with fresh locks and no thread.

        The parent still holds (and will write) what was buffered before the fork.
        """
        self.buffer.after_fork()
        self._init_state()
        self._init_locks()

    # --- introspection and tests ---------------------------------------------------------------

    def pending(self) -> tuple[int, int]:
        """(rows, events) waiting to be written."""
        return self.buffer.counts()

    @property
    def dropped(self) -> int:
        """Events dropped since the process started because the buffer was full."""
        return self.buffer.dropped

    def reset(self) -> None:
        """Forget everything buffered (tests)."""
        with self._flush_lock:
            self.buffer.reset()
            thread = self._thread
            self._init_state()
            if thread is not None and thread.is_alive():
                self._thread = thread
