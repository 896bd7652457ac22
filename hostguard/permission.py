"""Which names a TLS server may get a certificate for, decided from the snapshot. Pure.

Caddy's on-demand TLS asks, at the first handshake for a name it holds no certificate
for in memory, whether a certificate for that name is wanted (the view is
:func:`hostguard.views.tls_permission`). The answer is yes for a host that an active
authority of an active tenant claims:

* an exact authority, on any port and scheme — the certificate is for the name;
* of a tenant this deployment serves, or of any deployment's tenant with
  ``HOSTGUARD_TLS_ANY_DEPLOYMENT`` (a client still routed here after the tenant
  moved then gets a TLS connection and a 421 it can act on, not a handshake failure);
* a name that only a wildcard authority claims, only with ``HOSTGUARD_TLS_WILDCARDS``:
  on-demand issuance for every name under a domain is what abuse of on-demand TLS
  relies on (any number of certificates, each counting against the CA's rate limits).

As for requests, the most specific pattern decides: when an exact authority claims
the name, a wildcard above it plays no part. IP addresses are never certified on
demand, and nothing here touches the database.
"""

from __future__ import annotations

from typing import NamedTuple

from hostguard.decision import INACTIVE, OTHER_DEPLOYMENT, UNKNOWN_HOST
from hostguard.hosts import InvalidHost, MalformedHost, is_ip, normalise_host, parse_host_header
from hostguard.snapshot import Entry, Snapshot

#: Refusal reasons of this module's own, beside the request vocabulary's
#: ``unknown_host``, ``inactive`` and ``other_deployment``.
WILDCARD_ONLY = "wildcard_only"
IP_ADDRESS = "ip_address"


class MalformedName(ValueError):
    """A ``domain`` that is not one DNS name: empty, a port, a wildcard, bad syntax."""


class Permission(NamedTuple):
    """Whether a certificate for ``name`` is wanted, and if not, why not."""

    name: str
    allowed: bool
    reason: str = ""


def certificate_name(value: str) -> str:
    """``value`` (Caddy's ``domain``) as the canonical host name; raises :class:`MalformedName`.

    The name is read as hosts are everywhere in hostguard: lower case, one trailing dot
    dropped, a Unicode name as its A-label (IDNA 2008, UTS 46). A port, a ``*.``
    wildcard or anything that is not a host name is malformed: TLS server names are
    bare DNS names (RFC 6066 §3). An IP address is well-formed, and refused later.
    """
    if not value:
        raise MalformedName(value)
    if not value.isascii():
        try:
            value = normalise_host(value)
        except InvalidHost:
            raise MalformedName(value) from None
    try:
        host, port = parse_host_header(value)
    except MalformedHost:
        raise MalformedName(value) from None
    if port is not None:
        raise MalformedName(value)
    return host


def decide(
    snapshot: Snapshot, name: str, deployment: str | None, *, any_deployment: bool = False, wildcards: bool = False
) -> Permission:
    """Whether a certificate for ``name`` (canonical, see :func:`certificate_name`) is wanted."""
    if is_ip(name):
        return Permission(name, False, IP_ADDRESS)
    # The most specific pattern that claims the name decides: the name itself, else the
    # longest wildcard above it.
    group = snapshot.group(name) or next(snapshot.candidates(name), ())
    if not group:
        return Permission(name, False, UNKNOWN_HOST)
    *_, pattern = group[0]
    if pattern.startswith("*.") and not wildcards:
        return Permission(name, False, WILDCARD_ONLY)
    reason = INACTIVE
    for entry in group:
        reason = _refusal(snapshot, entry, deployment, any_deployment)
        if not reason:
            return Permission(name, True)
    return Permission(name, False, reason)


def _refusal(snapshot: Snapshot, entry: Entry, deployment: str | None, any_deployment: bool) -> str:
    """Why ``entry`` does not make its name wanted, or ``""`` when it does."""
    _port, _scheme, _authority_id, tenant_id, active, _pattern = entry
    tenant = snapshot.tenant(tenant_id)
    if not active or tenant is None or not tenant.active:
        return INACTIVE
    if not any_deployment and snapshot.deployments.get(tenant.deployment_id) != deployment:
        return OTHER_DEPLOYMENT
    return ""
