"""Signals hostguard sends, for sites that want to react to refused hosts."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.dispatch import Signal

from hostguard.decision import MALFORMED, MISDIRECTED

if TYPE_CHECKING:
    from django.http import HttpRequest

logger = logging.getLogger("hostguard.signals")

#: Sent for every request hostguard refuses (421 or 400), and in report mode for
#: every request it would have refused, with ``request``, ``reason``, ``host``,
#: ``port`` and ``scheme``. For a malformed host, ``host`` is the raw value,
#: escaped and at most 255 characters, and ``port`` is ``None``. Receivers run on
#: the request's thread (``await``-ed under ASGI): keep them fast. One that
#: raises is logged by Django and never changes the response.
host_mismatch = Signal()


def _arguments(request: HttpRequest) -> dict[str, Any] | None:
    decision = getattr(request, "hostguard", None)
    if decision is None or decision.verdict not in (MISDIRECTED, MALFORMED):
        return None
    return {
        "request": request,
        "reason": decision.reason,
        "host": decision.host,
        "port": decision.port,
        "scheme": decision.scheme,
    }


def send_host_mismatch(sender: Any, request: HttpRequest) -> None:
    """Send :data:`host_mismatch` if ``request`` was refused; never raises."""
    arguments = _arguments(request)
    if arguments is None:
        return
    try:
        host_mismatch.send_robust(sender, **arguments)
    except Exception:
        logger.warning("sending host_mismatch failed", exc_info=True)


async def asend_host_mismatch(sender: Any, request: HttpRequest) -> None:
    """:func:`send_host_mismatch` for the async path."""
    arguments = _arguments(request)
    if arguments is None:
        return
    try:
        await host_mismatch.asend_robust(sender, **arguments)
    except Exception:
        logger.warning("sending host_mismatch failed", exc_info=True)
