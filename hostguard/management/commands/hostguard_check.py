"""``manage.py hostguard_check HOST[:PORT]``: explain the verdict a request would get."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from hostguard import sni
from hostguard.conf import always_allowed, derived
from hostguard.decision import (
    ALLOW,
    INACTIVE,
    MISDIRECTED,
    OTHER_DEPLOYMENT,
    PORT_MISMATCH,
    SCHEME_MISMATCH,
    SNI_MISMATCH,
    UNKNOWN_HOST,
    Decision,
)
from hostguard.hosts import (
    DEFAULT_PORTS,
    SCHEMES,
    InvalidHost,
    MalformedHost,
    format_authority,
    normalise_host,
    parse_host_header,
)
from hostguard.models import Tenant
from hostguard.policy import policy

EXIT_ALLOWED = 0
EXIT_MISDIRECTED = 1
EXIT_MALFORMED = 2
EXIT_FAILED = 3

_URL_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)([^?#]*)")
_PORT_SUFFIX_RE = re.compile(r"(.*?)(:[^:\]]*)?")


@dataclass
class Target:
    """What to check: the Host header value, the scheme and the path (from a URL)."""

    authority: str
    scheme: str
    path: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    """The outcome: an exit code, a one-line verdict and labelled lines explaining it."""

    code: int
    verdict: str
    lines: list[tuple[str, str]] = field(default_factory=list)


class Command(BaseCommand):
    help = (
        "Explain what hostguard answers for a host, exactly as the middleware would decide it "
        "with the current database: the verdict, the reason, the matching authority, its tenant "
        "and the deployment serving it. Exit status: 0 allowed, 1 misdirected (421), "
        "2 malformed (400), 3 the policy could not be loaded."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "target",
            metavar="HOST[:PORT]",
            help="A Host header value such as shop.example.com:8443, or a URL such as https://shop.example.com/x.",
        )
        parser.add_argument(
            "--scheme",
            choices=SCHEMES,
            help="The scheme the request arrives over (default: the URL's scheme, otherwise http).",
        )
        parser.add_argument(
            "--sni",
            metavar="NAME",
            help="The TLS server name the connection was opened for, to check HTTP/2 connection reuse (step 8).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = check(options["target"], options["scheme"], options["sni"])
        lines = [(_("Verdict"), report.verdict), *report.lines]
        width = max(len(label) for label, _value in lines) + 1
        style = self.style.SUCCESS if report.code == EXIT_ALLOWED else self.style.ERROR
        for number, (label, value) in enumerate(lines):
            line = "%s %s" % ((label + ":").ljust(width), value)
            self.stdout.write(style(line) if number == 0 else line)
        if report.code != EXIT_ALLOWED:
            raise CommandError(report.verdict, returncode=report.code)


def check(text: str, scheme: str | None, sni_name: str | None = None) -> Report:
    """The verdict for ``text`` (a Host value or a URL) through the middleware's own steps.

    ``sni_name`` stands for the TLS server name of the connection, when there is one.
    """
    try:
        target = parse_target(text, scheme)
    except InvalidHost as exc:
        return Report(EXIT_MALFORMED, _("400 Bad Request (malformed_host)"), [(_("Reason"), exc.message)])
    shown = format_authority(target.scheme, target.authority, None) + target.path
    lines = [(_("Request"), shown)]
    lines += [(_("Note"), note) for note in target.notes]
    # The middleware's order: exempt paths, syntax, always-allowed hosts, the snapshot.
    if target.path and derived.exempt_paths and target.path.startswith(derived.exempt_paths):
        lines.append((_("Reason"), _("the path matches HOSTGUARD_EXEMPT_PATHS: never gated, whatever the host")))
        return Report(EXIT_ALLOWED, _("Allowed (exempt path, no tenant)."), lines)
    try:
        host, port = parse_host_header(target.authority)
    except MalformedHost:
        lines.append(
            (
                _("Reason"),
                _(
                    "malformed_host: not a host name, IPv4 address or [IPv6] literal with an optional "
                    "port from 1 to 65535"
                ),
            )
        )
        return Report(EXIT_MALFORMED, _("400 Bad Request (malformed_host)"), lines)
    effective_port = port if port is not None else DEFAULT_PORTS[target.scheme]
    lines.append((_("Decided as"), _("host %(host)s, port %(port)d") % {"host": host, "port": effective_port}))
    if always_allowed(host):
        lines.append((_("Reason"), _("the host matches HOSTGUARD_ALWAYS_ALLOW: let through with no tenant")))
        return Report(EXIT_ALLOWED, _("Allowed (always-allowed host, no tenant)."), lines)
    try:
        snapshot = policy.refresh()
    except Exception as exc:
        raise CommandError(
            _("Cannot load the policy from the database: %(error)s") % {"error": exc}, returncode=EXIT_FAILED
        ) from None
    here = derived.deployment
    decision = snapshot.decide(host, effective_port, target.scheme, here)
    if decision.verdict == ALLOW and sni_name:
        decision = sni.check({sni.ENVIRON_KEY: sni_name}, snapshot, decision)
    if decision.authority:
        lines.append((_("Authority"), decision.authority))
    if decision.tenant_id is not None:
        name = Tenant.objects.filter(pk=decision.tenant_id).values_list("name", flat=True).first()
        lines.append((_("Tenant"), "%s (%s)" % (decision.tenant_slug, name) if name else decision.tenant_slug))
        lines.append((_("Deployment"), decision.deployment))
    lines.append((_("This process"), here or _("HOSTGUARD_DEPLOYMENT is not set")))
    if decision.verdict != MISDIRECTED:
        lines.append((_("Reason"), _("served by this deployment")))
        return Report(EXIT_ALLOWED, _("Allowed: tenant %(tenant)s.") % {"tenant": decision.tenant_slug}, lines)
    tenant_active = decision.tenant_id is None or snapshot.tenants[decision.tenant_id][2]
    explanation = _explain(decision.reason, decision, here, tenant_active, sni_name)
    lines.append((_("Reason"), "%s: %s" % (decision.reason, explanation)))
    if derived.report_mode:
        lines.append((_("Mode"), _("HOSTGUARD_MODE is “report”: the request is logged as refused, then served")))
    if decision.reason in (PORT_MISMATCH, SCHEME_MISMATCH):
        for group in snapshot.candidates(host):
            for entry_port, entry_scheme, _pk, tenant_id, _active, pattern in group:
                claimed = format_authority(entry_scheme, pattern, entry_port)
                slug = snapshot.tenants[tenant_id][0]
                lines.append(
                    (_("Claimed as"), _("%(authority)s (tenant %(tenant)s)") % {"authority": claimed, "tenant": slug})
                )
    return Report(EXIT_MISDIRECTED, _("421 Misdirected Request (%(reason)s)") % {"reason": decision.reason}, lines)


def _explain(reason: str, decision: Decision, here: str | None, tenant_active: bool, sni_name: str | None) -> str:
    if reason == UNKNOWN_HOST:
        return _("no authority claims this host")
    if reason == PORT_MISMATCH:
        return _("the host is claimed, but not on port %(port)d") % {"port": decision.port}
    if reason == SCHEME_MISMATCH:
        return _("the host is claimed, but not over %(scheme)s") % {"scheme": decision.scheme}
    if reason == INACTIVE:
        if not tenant_active:
            return _("the tenant is suspended")
        return _("the authority is inactive")
    if reason == SNI_MISMATCH:
        return _("the connection was opened for “%(name)s”, which is not a host of this tenant") % {"name": sni_name}
    if reason == OTHER_DEPLOYMENT:
        if here is None:
            return _("HOSTGUARD_DEPLOYMENT is not set, so this process serves no tenant")
        return _("the tenant is served by the deployment “%(there)s”, not by this one (“%(here)s”)") % {
            "there": decision.deployment,
            "here": here,
        }
    return reason


def parse_target(text: str, scheme: str | None) -> Target:
    """Split a Host value or URL into what a request would carry; raises InvalidHost.

    A Unicode host name is sent in its punycode form, as browsers do.
    """
    text = text.strip()
    path = ""
    match = _URL_RE.fullmatch(text.split("?", 1)[0].split("#", 1)[0])
    if match:
        url_scheme = match.group(1).lower()
        if url_scheme not in SCHEMES:
            raise InvalidHost(_("The scheme “%(scheme)s” is not served: use http or https.") % {"scheme": url_scheme})
        if scheme is not None and scheme != url_scheme:
            raise InvalidHost(
                _("--scheme %(option)s contradicts the URL's scheme %(scheme)s.")
                % {"option": scheme, "scheme": url_scheme}
            )
        scheme = url_scheme
        text, path = match.group(2), match.group(3) or "/"
    target = Target(text, scheme or "http", path)
    if not text.isascii():
        name, port = _PORT_SUFFIX_RE.fullmatch(text).groups()  # type: ignore[union-attr]
        ascii_name = normalise_host(name)
        if ascii_name.startswith("*."):
            raise InvalidHost(_("A request cannot be for a wildcard host."))
        target.authority = ascii_name + (port or "")
        target.notes.append(
            _("the Unicode host is sent as %(host)s, as browsers do (raw UTF-8 in Host is malformed)")
            % {"host": ascii_name}
        )
    return target
