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
This module reads no settings at import and imports nothing server-specific.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import replace
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any

from hostguard.conf import derived
from hostguard.hosts import MalformedHost, parse_host_header

if TYPE_CHECKING:
    from hostguard.decision import Decision, Snapshot

ENVIRON_KEY = "hostguard.sni"
# The attribute record_sni() leaves on the TLS socket of each connection.
SOCKET_ATTRIBUTE = "hostguard_sni"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def request_sni(meta: dict[str, Any]) -> str | None:
    """The SNI name of a request's connection, or ``None`` when there is none to trust."""
    name = meta.get(ENVIRON_KEY)
    if name is not None:
        return str(name)
    key = derived.sni_meta_key
    if key is None or key not in meta:
        return None
    return str(meta[key]) if trusted_peer(meta.get("REMOTE_ADDR")) else None


def trusted_peer(remote_addr: str | None) -> bool:
    """Whether the direct peer is one of ``HOSTGUARD_TRUSTED_PROXIES``."""
    networks, any_peer = derived.trusted_proxies
    if any_peer:
        return True
    if not remote_addr or not networks:
        return False
    try:
        address = ip_address(remote_addr.strip("[]"))
    except ValueError:
        return False
    return any(address in network for network in networks)


def check(meta: dict[str, Any], snapshot: Snapshot, decision: Decision) -> Decision:
    """``decision`` (an allow), or a 421 ``sni_mismatch`` if the SNI name is another tenant's."""
    name = request_sni(meta)
    if not name:
        # Nginx's $ssl_server_name is empty when the client sent no SNI: no check.
        return decision
    from hostguard.decision import MISDIRECTED, SNI_MISMATCH

    try:
        host, port = parse_host_header(name)
    except MalformedHost:
        host, port = "", None
    # An SNI name is a bare DNS name (RFC 6066 §3): never a port or an IP literal.
    if host and port is None and not host.startswith("["):
        if host == decision.host:
            return decision
        sni_decision = snapshot.decide(host, decision.port or 0, decision.scheme, derived.deployment)
        if sni_decision.tenant_id is not None and sni_decision.tenant_id == decision.tenant_id:
            return decision
    return replace(decision, verdict=MISDIRECTED, reason=SNI_MISMATCH)


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
