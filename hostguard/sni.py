"""TLS SNI: the name a client asked for when it opened the connection (step 8).

A browser that reuses one TLS connection for several hosts (HTTP/2 connection
coalescing through a wildcard or multi-name certificate) sends each request's own
``Host`` over a connection opened for another name. If that name belongs to another
tenant, this deployment must answer 421 ``sni_mismatch`` so the client retries on a
connection of its own.

Where the SNI name comes from, in this order:

* the WSGI environ key ``hostguard.sni`` (:data:`ENVIRON_KEY`), set by the server
  that terminated TLS — the shipped gunicorn config does it with :func:`record_sni`
  and :func:`wsgi_with_sni`; a client cannot set it (headers arrive as ``HTTP_*``);
* the header named by ``HOSTGUARD_SNI_HEADER``, when TLS ends at a proxy, and only
  if the direct peer (``REMOTE_ADDR``) is in ``HOSTGUARD_TRUSTED_PROXIES``.

No SNI at all (a client that sent none, plain HTTP, an untrusted peer) means no check.
The check itself is step 8 of :func:`hostguard.decide.decide`; this module finds the
name. It reads no settings at import and imports nothing server-specific.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from hostguard.conf import conf

logger = logging.getLogger("hostguard.sni")

ENVIRON_KEY = "hostguard.sni"
# The attribute record_sni() leaves on the TLS socket of each connection.
SOCKET_ATTRIBUTE = "hostguard_sni"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def request_sni(meta: dict[str, Any], meta_key: str | None) -> str | None:
    """The SNI name of a request's connection, or ``None`` when there is none to trust.

    ``meta_key`` is the ``request.META`` key of ``HOSTGUARD_SNI_HEADER`` (or ``None``).
    """
    name = meta.get(ENVIRON_KEY)
    if name is not None:
        return str(name)
    if meta_key is None or meta_key not in meta:
        return None
    peer = meta.get("REMOTE_ADDR")
    if conf.trusted_proxies.trusts(peer):
        return str(meta[meta_key])
    _untrusted_header(peer)
    return None


_warned: set[str] = set()


def _untrusted_header(peer: str | None) -> None:
    # A proxy that sends the header but is not trusted is a misconfiguration that turns
    # the SNI check off: say so once per process (and settings), not once per request.
    if _warned:
        return
    _warned.add(peer or "")
    logger.warning(
        "hostguard ignores %s from %s, which is not in HOSTGUARD_TRUSTED_PROXIES: the SNI check is off for "
        "requests through it. Trust the proxy's address (or 'unix' for a Unix socket) if it sets the header.",
        conf.SNI_HEADER,
        peer or "a peer with no address (a Unix socket)",
    )


@receiver(setting_changed)
def _on_setting_changed(**kwargs: Any) -> None:
    _warned.clear()


# --- capturing SNI where the server terminates TLS (gunicorn and friends) --------------


def record_sni(ssl_socket: Any, server_name: str | None, context: Any) -> None:
    """An ``ssl.SSLContext.sni_callback`` that remembers the name on the connection.

    Python passes the server-side ``SSLSocket`` (or ``SSLObject``); the name is an
    A-label already. Returning ``None`` lets the handshake go on with the same context.
    """
    with contextlib.suppress(AttributeError):
        setattr(ssl_socket, SOCKET_ATTRIBUTE, server_name or "")


def wsgi_with_sni(app: WSGIApp) -> WSGIApp:
    """Wrap a WSGI app so ``environ["hostguard.sni"]`` carries what :func:`record_sni` saw.

    Reads the connection from ``environ["gunicorn.socket"]``; other servers that expose
    the socket under another key can set ``hostguard.sni`` themselves.
    """

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        name = getattr(environ.get("gunicorn.socket"), SOCKET_ATTRIBUTE, None)
        if name:
            environ[ENVIRON_KEY] = name
        return app(environ, start_response)

    application.__wrapped__ = app  # type: ignore[attr-defined]
    return application
