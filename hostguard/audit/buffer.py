"""The in-memory buffer: exact counts per key for the current windows, bounded.

A refusal is a dictionary update under one lock, never a database query. Keys are
(deployment, reason, host, port, scheme, window start); each holds a count, the
first and last moment, and the sample of the window's first request.

Bounded whatever the traffic: at most ``HOSTGUARD_AUDIT_MAX_KEYS`` distinct keys
per window (the excess folds into one ``MismatchLog.OVERFLOW_HOST`` row per reason,
still counted); while the database fails, at most :data:`PENDING_FACTOR` times as
many rows wait here, and events beyond that are counted as dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import cached_property
from typing import NamedTuple

from hostguard.audit.log import Sample, Throttle
from hostguard.conf import conf

#: While the database is unavailable, a process keeps at most this many times
#: ``HOSTGUARD_AUDIT_MAX_KEYS`` rows in memory.
PENDING_FACTOR = 10
#: Room for the overflow rows themselves once the buffer is full.
OVERFLOW_SLACK = 64
#: A window's log summary is written this long after the window ends, so that
#: requests still in flight at the boundary are counted in it.
SUMMARY_GRACE = 2.0

# (deployment, reason, host, port, scheme, window start as a Unix time)
Key = tuple[str, str, str, int | None, str, int]
# (deployment, reason, host, port, scheme): what was refused, and where.
Refusal = tuple[str, str, str, int | None, str]


class Entry:
    """Counts and the sample request for one key."""

    __slots__ = ("count", "first", "last", "sample", "tenant_id")

    def __init__(self, tenant_id: int | None, now: float, sample: Sample) -> None:
        self.count = 0
        self.first = self.last = now
        self.tenant_id = tenant_id
        self.sample = sample

    def copy(self, tenant_id: int | None) -> Entry:
        twin = Entry(tenant_id, self.first, self.sample)
        twin.count, twin.last = self.count, self.last
        return twin

    def merge(self, other: Entry) -> None:
        self.count += other.count
        if other.first < self.first:
            self.first = other.first
            self.sample = other.sample
        self.last = max(self.last, other.last)


class Window:
    """Per-process state of one time window: the key cap and the log throttle."""

    __slots__ = ("deployment", "keys", "start", "throttle", "width")

    def __init__(self, deployment: str, start: int, width: int) -> None:
        self.deployment = deployment
        self.start = start
        self.width = width
        # Distinct (reason, host, port, scheme) recorded under their own key.
        self.keys: set[tuple[str, str, int | None, str]] = set()
        self.throttle = Throttle()


class Added(NamedTuple):
    """What :meth:`Buffer.add` leaves its caller to do, outside the lock."""

    #: This event is the first of its (host, reason) in the window: log it.
    log_line: bool
    #: Windows that ended: write their summary lines.
    summaries: list[Window]
    #: Whether the event was stored (``HOSTGUARD_AUDIT``): a writer must run.
    stored: bool


class Batch(NamedTuple):
    """What :meth:`Buffer.take` hands to the writer."""

    pending: dict[Key, Entry]
    summaries: list[Window]
    #: (deployment, window start) of the windows still open.
    live: set[tuple[str, int]]
    #: Events dropped for lack of room that are due to be reported now.
    dropped: int


class Buffer:
    """One process's pending counts and open windows, behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._clear()

    def reset(self) -> None:
        """Forget everything (tests)."""
        with self.lock:
            self._clear()

    def after_fork(self) -> None:
        """Start empty in a forked child, with a new lock: the parent's may have been held."""
        self.lock = threading.Lock()
        self._clear()

    @cached_property
    def overflow_host(self) -> str:
        """``MismatchLog.OVERFLOW_HOST``, read once it is needed.

        Not at import: hostguard.audit is imported (by the middleware) before the app
        registry is ready, and must not stop a site without hostguard in
        ``INSTALLED_APPS`` from hearing why.
        """
        from hostguard.models import MismatchLog

        return MismatchLog.OVERFLOW_HOST

    def _clear(self) -> None:
        self.pending: dict[Key, Entry] = {}
        self.windows: dict[tuple[str, int], Window] = {}
        self.dropped = 0
        self.dropped_reported = 0
        self.last_drop_report = float("-inf")

    def add(self, refusal: Refusal, tenant_id: int | None, sample: Sample, now: float) -> Added:
        """Count one event."""
        deployment, reason, host, port, scheme = refusal
        width, max_keys, store = conf.audit_limits
        start = int(now // width) * width
        summaries: list[Window] = []
        with self.lock:
            window = self.windows.get((deployment, start))
            if window is None:
                summaries = self._retire(now)
                window = self.windows[(deployment, start)] = Window(deployment, start, width)
            log_line = window.throttle.first((host, reason), max_keys)
            if store:
                self._add(window, max_keys, reason, host, port, scheme, tenant_id, now, sample)
        return Added(log_line, summaries, store)

    def _add(
        self,
        window: Window,
        max_keys: int,
        reason: str,
        host: str,
        port: int | None,
        scheme: str,
        tenant_id: int | None,
        now: float,
        sample: Sample,
    ) -> None:
        ident = (reason, host, port, scheme)
        if ident not in window.keys:
            if len(window.keys) < max_keys:
                window.keys.add(ident)
            else:
                host, port, scheme, tenant_id = self.overflow_host, None, "", None
        key: Key = (window.deployment, reason, host, port, scheme, window.start)
        entry = self.pending.get(key)
        if entry is None:
            limit = max_keys * PENDING_FACTOR
            if len(self.pending) >= limit:
                # The database has been failing for a while: fold into the window's
                # overflow row while there is room for it, else drop and count.
                key = (window.deployment, reason, self.overflow_host, None, "", window.start)
                entry = self.pending.get(key)
                if entry is None:
                    if len(self.pending) >= limit + OVERFLOW_SLACK:
                        self.dropped += 1
                        return
                    entry = self.pending[key] = Entry(None, now, sample)
            else:
                entry = self.pending[key] = Entry(tenant_id, now, sample)
        entry.count += 1
        if now > entry.last:
            entry.last = now
        elif now < entry.first:
            entry.first = now

    def _retire(self, now: float, everything: bool = False) -> list[Window]:
        """Drop the state of windows that are over; return those that need a summary."""
        done = [
            key
            for key, window in self.windows.items()
            if everything or window.start + window.width + SUMMARY_GRACE <= now
        ]
        return [window for window in (self.windows.pop(key) for key in done) if window.throttle.suppressed()]

    def take(self, now: float, everything: bool, report_every: float) -> Batch:
        """Empty the buffer for a write; ``everything`` also ends the open windows (exit)."""
        with self.lock:
            pending, self.pending = self.pending, {}
            summaries = self._retire(now, everything)
            dropped = self.dropped - self.dropped_reported
            # One report per window's worth of time: a long outage must not flood the log.
            if dropped and (everything or now - self.last_drop_report >= report_every):
                self.dropped_reported = self.dropped
                self.last_drop_report = now
            else:
                dropped = 0
            return Batch(pending, summaries, set(self.windows), dropped)

    def restore(self, items: Iterable[tuple[Key, Entry]]) -> None:
        """Put back entries a failed write took, merged with what arrived meanwhile."""
        with self.lock:
            for key, entry in items:
                current = self.pending.get(key)
                if current is None:
                    self.pending[key] = entry
                else:
                    current.merge(entry)

    def counts(self) -> tuple[int, int]:
        """(rows, events) waiting to be written."""
        with self.lock:
            return len(self.pending), sum(entry.count for entry in self.pending.values())

    def is_idle(self) -> bool:
        """Nothing to write, summarise or report."""
        with self.lock:
            return not self.pending and not self.windows and self.dropped == self.dropped_reported

    def give_up(self) -> tuple[int, int]:
        """Forget what is pending (the process is exiting); the (rows, events) lost.

        The events counted as dropped and not yet reported are in the total.
        """
        with self.lock:
            rows = len(self.pending)
            events = sum(entry.count for entry in self.pending.values()) + self.dropped - self.dropped_reported
            self.pending = {}
            self.dropped_reported = self.dropped
            return rows, events
