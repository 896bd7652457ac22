"""The one request-decision pipeline: what a request carries + a snapshot → a :class:`Decision`.

The middleware, the admin's "Check a host" page and ``manage.py hostguard_check`` all
call :func:`decide`; each keeps only its own presentation, so the three agree by
construction. The steps, in DESIGN.md's order:

1. a path under ``HOSTGUARD_EXEMPT_PATHS`` passes, no tenant;
2. the authority — the absolute-form target if there is one (it must agree with
   Host), else Host (``X-Forwarded-Host``/``-Port`` only when Django trusts them) —
   malformed → 400;
3. a host in ``HOSTGUARD_ALWAYS_ALLOW`` passes, no tenant;
4–7. the snapshot's verdict (unknown host, port/scheme mismatch, inactive, another
   deployment) — no snapshot at all → 503;
8. an allowed request whose TLS server name belongs to another tenant → 421;
then report mode (let a would-be 421 through, never more than the site served
before) and ``HOSTGUARD_ADMIN_HOSTS`` (a restricted path on another host → 404).

Nothing here touches the database or the request object.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import NamedTuple

from django.utils.translation import gettext as _

from hostguard.conf import GateSettings
from hostguard.decision import (
    ALLOW,
    EXEMPT,
    HIDDEN,
    MALFORMED,
    MALFORMED_HOST,
    MISDIRECTED,
    SNI_MISMATCH,
    UNAVAILABLE,
    UNKNOWN_HOST,
    Decision,
)
from hostguard.escaping import clean, raw_host
from hostguard.hosts import (
    DEFAULT_PORTS,
    SCHEMES,
    HostPort,
    InvalidHost,
    MalformedHost,
    normalise_host,
    parse_host_header,
    request_port,
)
from hostguard.snapshot import Snapshot

EXEMPT_DECISION = Decision(EXEMPT)


class RequestFacts(NamedTuple):
    """What a request carries that the decision reads."""

    #: The Host header as received; ``None`` when the request has none.
    host: str | None
    #: The scheme the request arrived over (``request.is_secure()``).
    scheme: str
    #: The path, as Django routes it (``request.path_info``).
    path: str = "/"
    #: The request target as sent, when the server passes it (absolute-form or origin-form).
    target: str | None = None
    #: ``X-Forwarded-Host`` and ``X-Forwarded-Port``, read only when Django trusts them.
    forwarded_host: str | None = None
    forwarded_port: str | None = None
    #: The TLS server name the connection was opened for, when it can be trusted.
    sni: str | None = None
    #: The path with the site's ``SCRIPT_NAME`` in front (``request.path``), when the
    #: site is mounted under one: ``HOSTGUARD_ADMIN_HOSTS`` matches either form.
    full_path: str = ""


def decide(facts: RequestFacts, snapshot: Snapshot | None, gate: GateSettings) -> Decision:
    """The decision for a request, by the steps in this module's docstring."""
    if gate.exempt_paths and facts.path.startswith(gate.exempt_paths):
        return EXEMPT_DECISION
    scheme = facts.scheme
    try:
        host, port = authority(facts, gate)
    except MalformedHost as exc:
        return Decision(MALFORMED, MALFORMED_HOST, raw_host(exc), scheme=scheme)
    effective_port = port if port is not None else DEFAULT_PORTS[scheme]
    if gate.always_allow.matches(host):
        decision = Decision(ALLOW, "", host, effective_port, scheme)
    elif snapshot is None:
        return Decision(UNAVAILABLE, "", host, effective_port, scheme)
    else:
        decision = snapshot.decide(host, effective_port, scheme, gate.deployment)
        if decision.verdict == ALLOW and facts.sni:
            decision = check_sni(decision, facts.sni, snapshot, gate.deployment)
        if decision.verdict == MISDIRECTED and gate.report_mode and report_may_serve(decision, gate):
            decision = replace(decision, reported=True)
    if gate.restricted_prefixes and (decision.verdict == ALLOW or decision.reported):
        decision = restrict(decision, facts.path, facts.full_path, gate)
    return decision


def report_may_serve(decision: Decision, gate: GateSettings) -> bool:
    """Whether report mode may let this would-be 421 through.

    Report mode is for a rollout whose list of hosts may be incomplete, so it serves
    what hostguard would refuse — but never more than the site served before: the
    site's own ``ALLOWED_HOSTS`` still stands when it lists hosts; when it is ``'*'``,
    a host no tenant claims stays refused, as in enforce mode.
    """
    if gate.site_allowed_hosts is not None:
        return gate.site_allowed_hosts.matches(decision.host)
    return decision.reason != UNKNOWN_HOST


def restrict(decision: Decision, path: str, full_path: str, gate: GateSettings) -> Decision:
    """``decision``, or a 404 when ``HOSTGUARD_ADMIN_HOSTS`` keeps the path — as Django
    routes it, or with the site's ``SCRIPT_NAME`` in front (``full_path``) — to other hosts."""
    prefixes = gate.restricted_prefixes
    if path.startswith(prefixes):
        decision = restrict_path(decision, path, gate)
    if full_path and full_path != path and full_path.startswith(prefixes):
        decision = restrict_path(decision, full_path, gate)
    return decision


def restrict_path(decision: Decision, path: str, gate: GateSettings) -> Decision:
    """``decision``, or a 404 when ``HOSTGUARD_ADMIN_HOSTS`` keeps ``path`` to other hosts."""
    if decision.verdict == HIDDEN:
        return decision
    for rule in gate.path_rules:
        # "/admin/" covers "/admin" too: its redirect to "/admin/" would reveal the admin.
        if path.startswith(rule.prefix) or path == rule.prefix.rstrip("/"):
            if rule.hosts.matches(decision.host):
                return decision
            return Decision(HIDDEN, "", decision.host, decision.port, decision.scheme)
    return decision


def check_sni(decision: Decision, name: str, snapshot: Snapshot, deployment: str | None) -> Decision:
    """``decision`` (an allow), or 421 ``sni_mismatch`` when the connection's TLS server
    name is not a host of the same tenant (HTTP/2 connection reuse, DESIGN step 8)."""
    try:
        host, port = parse_host_header(name)
    except MalformedHost:
        host, port = "", None
    # An SNI name is a bare DNS name (RFC 6066 §3): never a port or an IP literal.
    if host and port is None and not host.startswith("["):
        if host == decision.host:
            return decision
        other = snapshot.decide(host, decision.port or 0, decision.scheme, deployment)
        if other.tenant_id is not None and other.tenant_id == decision.tenant_id:
            return decision
    return replace(decision, verdict=MISDIRECTED, reason=SNI_MISMATCH, sni=clean(name, 255))


# --- the authority a request targets (DESIGN matching rule 1) ---------------------------


def authority(facts: RequestFacts, gate: GateSettings) -> HostPort:
    """The host and port a request targets; raises :class:`MalformedHost`."""
    raw = facts.host
    target = absolute_target(facts.target)
    if target is not None:
        target_scheme, target_authority = target
        parsed_target = parse_host_header(target_authority)
        # Host is required with an absolute-form target too: HTTP/1.1 demands it
        # (RFC 9112 §3.2), and without it Django would build URLs from the listener's
        # address while hostguard decided for the target's.
        if raw is None or not same_authority(parse_host_header(raw), parsed_target, target_scheme):
            raise MalformedHost(raw or "")
    if raw is None:
        raise MalformedHost("")
    # X-Forwarded-Host replaces a present Host when the site trusts it; it never
    # stands in for a missing one.
    if gate.trust_forwarded_host and facts.forwarded_host is not None:
        raw = facts.forwarded_host
    parsed = parse_host_header(raw)
    if gate.trust_forwarded_port and facts.forwarded_port is not None:
        return HostPort(parsed.host, request_port(facts.forwarded_port, facts.forwarded_port))
    return parsed


def absolute_target(target: str | None) -> tuple[str, str] | None:
    """(scheme, authority) of an absolute-form request target, else ``None``."""
    if not target or target[0] == "/" or target == "*":
        return None
    scheme, sep, rest = target.partition("://")
    if not sep:
        return None
    authority = rest
    for delimiter in "/?#":
        authority = authority.partition(delimiter)[0]
    return scheme.lower(), authority


def same_authority(host: HostPort, target: HostPort, target_scheme: str) -> bool:
    # Host is the target URI's authority (RFC 9110 §7.2): a port either leaves out
    # is the default of the target's scheme, not of the connection's.
    default = DEFAULT_PORTS.get(target_scheme)
    return host.host == target.host and (host.port or default) == (target.port or default)


# --- a request described by staff (the check page, hostguard_check) ---------------------

#: The scheme of a request described without one: what browsers use first today.
DEFAULT_SCHEME = "https"

_URL_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)([^?#]*)")
_PATH_RE = re.compile(r"([^/?#]*)([^?#]*)")
_PORT_SUFFIX_RE = re.compile(r"(.*?)(:[^:\]]*)?")


class ProbeError(InvalidHost):
    """A described request that contradicts itself; ``field`` names the part at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class Probe(NamedTuple):
    """A request described by staff: what it carries, and how the description was read."""

    facts: RequestFacts
    #: Unicode names turned into what a browser sends, and the like, in words.
    notes: tuple[str, ...] = ()
    #: The text of the Host header before an A-label conversion, or ``""``.
    converted_from: str = ""


def probe(text: str, scheme: str | None = None, port: int | None = None, sni: str | None = None) -> Probe:
    """What a request for ``text`` — a Host value (``shop.example:8443``, a Unicode name) or
    a URL (``https://shop.example/cart``) — carries, to decide it as the middleware would.

    The scheme is the URL's, else ``scheme``, else :data:`DEFAULT_SCHEME`; the path is
    the URL's (exempt and admin paths depend on it). A Unicode host or SNI name is sent
    as its A-label, as browsers do. Raises :class:`~hostguard.hosts.InvalidHost` with a
    message for a contradiction (a URL's scheme or port against ``scheme``/``port``) or
    a scheme hostguard never serves; a malformed host is left for :func:`decide` to call
    malformed, exactly as a request carrying it.
    """
    text = text.strip()
    match = _URL_RE.fullmatch(text.split("?", 1)[0].split("#", 1)[0])
    if match:
        url_scheme = match.group(1).lower()
        if url_scheme not in SCHEMES:
            message = _("The scheme “%(scheme)s” is never served: use http or https.")
            raise ProbeError(message % {"scheme": url_scheme}, "host")
        if scheme and scheme != url_scheme:
            message = _("The scheme %(given)s contradicts the URL's scheme %(url)s: leave one of them out.")
            raise ProbeError(message % {"url": url_scheme, "given": scheme}, "scheme")
        scheme, header, path = url_scheme, match.group(2), match.group(3)
    else:
        header, path = _PATH_RE.match(text).groups()  # type: ignore[union-attr]
    notes: list[str] = []
    converted_from = ""
    if not header.isascii():
        converted_from, header = header, _a_label_authority(header)
        note = _("the Unicode host is sent as %(host)s, as browsers do (raw UTF-8 in Host is malformed)")
        notes.append(note % {"host": header})
    if port is not None:
        header = _with_port(header, port)
    if sni and not sni.isascii():
        sni = normalise_host(sni)
    facts = RequestFacts(header, scheme or DEFAULT_SCHEME, path or "/", sni=sni or None)
    return Probe(facts, tuple(notes), converted_from)


def _a_label_authority(header: str) -> str:
    name, port = _PORT_SUFFIX_RE.fullmatch(header).groups()  # type: ignore[union-attr]
    ascii_name = normalise_host(name)
    if ascii_name.startswith("*."):
        raise ProbeError(_("A request cannot be for a wildcard host."), "host")
    return ascii_name + (port or "")


def _with_port(header: str, port: int) -> str:
    try:
        header_port = parse_host_header(header).port
    except MalformedHost:
        return header  # malformed either way: decide() says so
    if header_port is None:
        return "%s:%d" % (header, port)
    if header_port != port:
        message = _("The port %(port)d contradicts the host's port %(host_port)d: leave one of them out.")
        raise ProbeError(message % {"host_port": header_port, "port": port}, "port")
    return header
