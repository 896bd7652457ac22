"""What the audit log says: escaped values, logfmt lines, and how often it says them.

* :func:`quote` makes a value :func:`~hostguard.escaping.clean` made safe one
  ``key=value`` field of a line (logfmt), so a hostile ``Host: a port=443 tenant=acme``
  cannot forge fields;
* :class:`Throttle` keeps a window's log to one line per (host, reason), then
  :func:`summary` writes one line for all that were left out;
* the writer's health lines (failed, buffer full, slow, lost at exit) are here too,
  so that every sentence the audit log writes can be read in one place.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from django.utils.translation import ngettext

from hostguard.escaping import clean

logger = logging.getLogger("hostguard.mismatch")
internal_logger = logging.getLogger("hostguard.audit")

MAX_METHOD = 16
MAX_PATH = 500
MAX_REMOTE_ADDR = 64
MAX_USER_AGENT = 300
MAX_SNI = 255

#: The most frequent (host, reason) pairs a summary line names.
SUMMARY_TOP = 5

# A sample: (method, path, remote address, user agent, SNI name), each already clean().
Sample = tuple[str, str, str, str, str]


# --- escaping --------------------------------------------------------------------------


# clean() leaves no control characters; any other space would end a bare value.
_NEEDS_QUOTES = re.compile(r'[\s="]')


def quote(value: str) -> str:
    """A :func:`clean` value as one logfmt value: bare if it can be, else in double quotes.

    Quoted when empty, ``-`` (which a line writes for "none"), or holding a space,
    ``=`` or ``"``. Inside the quotes a ``"`` is written ``\\x22``, the way
    :func:`clean` writes characters a line must not hold; every other backslash is
    one of its escapes already, so a reader that decodes escapes gets the raw value.
    """
    if value and value != "-" and _NEEDS_QUOTES.search(value) is None:
        return value
    return '"' + value.replace('"', "\\x22") + '"'


def _field(value: object) -> str:
    # None and "" are "none here": a bare "-", never confused with a quoted "-".
    if value is None or value == "":
        return "-"
    return quote(str(value))


# --- mismatch lines ----------------------------------------------------------------------


class Throttle:
    """One window's log de-duplication: which (host, reason) pairs were logged."""

    __slots__ = ("logged", "unlogged")

    def __init__(self) -> None:
        # (host, reason) logged once → how many more were not logged.
        self.logged: dict[tuple[str, str], int] = {}
        # Events of pairs beyond the cap, never logged individually.
        self.unlogged = 0

    def first(self, pair: tuple[str, str], limit: int) -> bool:
        """Count one event of ``pair``; whether it is the one to log."""
        repeats = self.logged.get(pair)
        if repeats is not None:
            self.logged[pair] = repeats + 1
        elif len(self.logged) < limit:
            self.logged[pair] = 0
            return True
        else:
            self.unlogged += 1
        return False

    def suppressed(self) -> int:
        return self.unlogged + sum(self.logged.values())


def event(
    enforced: bool,
    deployment: str,
    reason: str,
    host: str,
    port: int | None,
    scheme: str,
    tenant: str,
    sample: Sample,
) -> None:
    """The line of the first event of a (host, reason) in a window."""
    method, path, remote_addr, user_agent, sni = sample
    fields: list[tuple[str, object]] = [
        ("host", host),
        ("port", port),
        ("scheme", scheme),
        ("deployment", deployment),
        ("tenant", tenant),
        ("method", method),
        ("path", path),
        ("remote_addr", remote_addr),
        ("user_agent", user_agent),
    ]
    if sni:
        fields.append(("sni", sni))
    logger.warning(
        "%s %s: " + " ".join(name + "=%s" for name, _ in fields),
        "refused" if enforced else "would refuse (report-only)",
        reason,
        *(_field(value) for _, value in fields),
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
            "sni": sni,
            "enforced": enforced,
        },
    )


def summary(deployment: str, window_start: datetime, width: int, throttle: Throttle, overflow_host: str) -> None:
    """The line for the events of a window that had no line of their own; none if none."""
    suppressed = throttle.suppressed()
    if not suppressed:
        return
    top = sorted(((count, pair) for pair, count in throttle.logged.items() if count), reverse=True)[:SUMMARY_TOP]
    named = ", ".join("%s %s ×%d" % (quote(host), reason, count) for count, (host, reason) in top)
    if throttle.unlogged:
        named = (named + ", " if named else "") + "%s ×%d" % (quote(overflow_host), throttle.unlogged)
    logger.warning(
        ngettext(
            "%(count)d more mismatch in the %(width)d s window from %(start)s was not logged on its own (the "
            "audit log counts it); most frequent: %(top)s",
            "%(count)d more mismatches in the %(width)d s window from %(start)s were not logged one by one (the "
            "audit log counts them all); most frequent: %(top)s",
            suppressed,
        ),
        {"count": suppressed, "width": width, "start": window_start.isoformat(), "top": named},
        extra={"suppressed": suppressed, "deployment": deployment, "window_start": window_start},
    )


# --- the writer's health -------------------------------------------------------------------


def buffer_full(dropped: int, since_start: int) -> None:
    internal_logger.warning(
        "hostguard dropped %d mismatch events (%d since it started): the audit buffer is full "
        "because the database has been unavailable; they are missing from the audit log",
        dropped,
        since_start,
        extra={"dropped": dropped},
    )


def write_failed(exc: BaseException, events: int, rows: int) -> None:
    internal_logger.warning(
        "hostguard could not write its mismatch log (%s: %s); %d events in %d rows are kept in memory and retried",
        type(exc).__name__,
        clean(exc, 300),
        events,
        rows,
        extra={"pending_events": events, "pending_rows": rows},
    )


def written_again(failures: int) -> None:
    internal_logger.info("hostguard wrote its mismatch log again after %d failed attempts", failures)


def slow(seconds: float, interval: float) -> None:
    internal_logger.warning(
        "hostguard's mismatch log writer has been waiting for the database for %.1f s (it writes every %g s): "
        "the database is slow or not answering; refusals are still counted in memory",
        seconds,
        interval,
        extra={"waiting_seconds": seconds},
    )


def slow_ended(seconds: float) -> None:
    internal_logger.info("hostguard's mismatch log writer is no longer waiting: its write ended after %.1f s", seconds)


def lost_at_exit(events: int, rows: int, cause: str) -> None:
    """The last word on events this process will never write: exactly how many."""
    internal_logger.warning(
        "hostguard is exiting without writing %d mismatch events in %d rows (%s); they are missing from the audit log",
        events,
        rows,
        cause,
        extra={"dropped": events, "dropped_rows": rows},
    )
