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
  the database; the excess folds into one ``MismatchLog.OVERFLOW_HOST`` row per
  reason, still counted;
* if the database fails, the buffer is kept and retried on the next tick; while it
  stays down, memory is capped at ten times that many keys, and events beyond the
  cap are counted and reported at WARNING, never silently lost;
* logging is one line per (host, reason) per window, then one summary line; every
  value in a line is logfmt-quoted, so a hostile Host cannot forge fields.

A hanging database is never silent:

* every statement of the writer gives up after five flush intervals, at least 2 s
  and at most 30 s (5 s by default): ``SET LOCAL statement_timeout`` in the
  writer's own transaction on PostgreSQL, ``PRAGMA busy_timeout`` on SQLite;
* a write still waiting after the flush interval plus the interval or 2 s (3 s by
  default) is reported at WARNING while it waits — a stalled network, where no
  server-side timeout can fire, included — and its end at INFO.

Recording never raises into the request and never blocks on the database.
:func:`flush` is synchronous, for tests. :func:`shutdown` is for the gunicorn
``worker_exit`` hook, with a deadline inside the graceful timeout; an ``atexit``
handler does the same with :data:`EXIT_SECONDS`. What cannot be written by the
deadline is logged at WARNING as lost, with the exact number of events and rows.

The modules: :mod:`~hostguard.audit.buffer` (the in-memory counts),
:mod:`~hostguard.audit.writer` (the SQL), :mod:`~hostguard.audit.log` (every line
it writes and their throttling), :mod:`~hostguard.audit.thread` (the flush thread).
"""

from __future__ import annotations

import atexit
import os
import time
from typing import TYPE_CHECKING

from hostguard.audit.buffer import OVERFLOW_SLACK, PENDING_FACTOR
from hostguard.audit.log import (
    MAX_METHOD,
    MAX_PATH,
    MAX_REMOTE_ADDR,
    MAX_SNI,
    MAX_USER_AGENT,
    internal_logger,
)
from hostguard.audit.thread import Recorder
from hostguard.audit.writer import prune
from hostguard.conf import conf
from hostguard.escaping import MAX_HOST, clean, raw_host

if TYPE_CHECKING:
    from django.http import HttpRequest

    from hostguard.decision import Decision

__all__ = [
    "EXIT_SECONDS",
    "MAX_HOST",
    "MAX_METHOD",
    "MAX_PATH",
    "MAX_REMOTE_ADDR",
    "MAX_SNI",
    "MAX_USER_AGENT",
    "OVERFLOW_SLACK",
    "PENDING_FACTOR",
    "Recorder",
    "clean",
    "flush",
    "mismatch",
    "prune",
    "raw_host",
    "recorder",
    "shutdown",
]

#: How long the ``atexit`` handler waits for the database before it reports the
#: buffer lost (servers that know their own graceful timeout call :func:`shutdown`).
EXIT_SECONDS = 5.0

#: This process's recorder.
recorder = Recorder()

_last_internal_warning = float("-inf")


def mismatch(request: HttpRequest, decision: Decision) -> None:
    """Count and log a refusal, or a would-be refusal in report mode. Never raises."""
    global _last_internal_warning
    try:
        meta = request.META
        recorder.record(
            conf.gate.deployment or "",
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
            # Escaped and bounded where it was read, as the host is (hostguard.decide).
            decision.sni[:MAX_SNI],
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


def shutdown(deadline: float | None = None) -> None:
    """Write everything buffered and stop the background writer: call at worker exit.

    ``deadline`` is a :func:`time.monotonic` time: by then this returns, whether the
    database answered or not, and logs exactly how many events it could not write.
    Without one it waits for the database as long as the writer's timeouts allow.
    """
    recorder.shutdown(deadline)


def _at_exit() -> None:
    recorder.shutdown(time.monotonic() + EXIT_SECONDS)


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=recorder.after_fork)
