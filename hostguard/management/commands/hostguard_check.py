"""``manage.py hostguard_check HOST[:PORT]``: explain the verdict a request would get."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from hostguard.conf import conf
from hostguard.decide import DEFAULT_SCHEME, Probe, decide, probe
from hostguard.decision import (
    ALLOW,
    EXEMPT,
    HIDDEN,
    INACTIVE,
    MALFORMED,
    OTHER_DEPLOYMENT,
    PORT_MISMATCH,
    SCHEME_MISMATCH,
    SNI_MISMATCH,
    UNAVAILABLE,
    UNKNOWN_HOST,
    Decision,
)
from hostguard.hosts import SCHEMES, InvalidHost, format_authority
from hostguard.models import get_tenant_model
from hostguard.policy import policy
from hostguard.snapshot import Snapshot

EXIT_ALLOWED = 0
EXIT_MISDIRECTED = 1
EXIT_MALFORMED = 2
EXIT_FAILED = 3
EXIT_NOT_FOUND = 4


@dataclass
class Report:
    """The outcome: an exit code, a one-line verdict and labelled lines explaining it."""

    code: int
    verdict: str
    lines: list[tuple[str, str]] = field(default_factory=list)


class Command(BaseCommand):
    help = (
        "Explain what hostguard answers for a host, decided by the middleware's own pipeline "
        "with the current database: the verdict, the reason, the matching authority, its tenant "
        "and the deployment serving it. Exit status: 0 served, 1 misdirected (421), "
        "2 malformed (400), 3 the policy could not be loaded, 4 a path HOSTGUARD_ADMIN_HOSTS hides (404)."
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
            help="The scheme the request arrives over (default: the URL's scheme, otherwise %s)." % DEFAULT_SCHEME,
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
    """The verdict for ``text`` (a Host value or a URL), from :func:`hostguard.decide.decide`.

    ``sni_name`` stands for the TLS server name of the connection, when there is one.
    """
    try:
        described = probe(text, scheme, sni=sni_name)
    except InvalidHost as exc:
        return Report(EXIT_MALFORMED, _("400 Bad Request (malformed_host)"), [(_("Reason"), exc.message)])
    facts = described.facts
    lines = [(_("Request"), format_authority(facts.scheme, facts.host or "", None) + facts.path)]
    lines += [(_("Note"), note) for note in described.notes]
    gate = conf.gate
    snapshot = None
    decision = decide(facts, None, gate)
    if decision.verdict == UNAVAILABLE:
        try:
            snapshot = policy.refresh()
        except Exception as exc:
            message = _("Cannot load the policy from the database: %(error)s") % {"error": exc}
            raise CommandError(message, returncode=EXIT_FAILED) from None
        decision = decide(facts, snapshot, gate)
    return _report(described, decision, snapshot, lines)


def _report(described: Probe, decision: Decision, snapshot: Snapshot | None, lines: list[tuple[str, str]]) -> Report:
    if decision.verdict == EXEMPT:
        lines.append((_("Reason"), _("the path matches HOSTGUARD_EXEMPT_PATHS: never gated, whatever the host")))
        return Report(EXIT_ALLOWED, _("Allowed (exempt path, no tenant)."), lines)
    if decision.verdict == MALFORMED:
        reason = _("not a host name, IPv4 address or [IPv6] literal with an optional port from 1 to 65535")
        lines.append((_("Reason"), "malformed_host: %s" % reason))
        return Report(EXIT_MALFORMED, _("400 Bad Request (malformed_host)"), lines)
    lines.append((_("Decided as"), _("host %(host)s, port %(port)d") % {"host": decision.host, "port": decision.port}))
    if decision.verdict == HIDDEN:
        lines.append((_("Reason"), _("HOSTGUARD_ADMIN_HOSTS keeps this path to other hosts")))
        return Report(EXIT_NOT_FOUND, _("404 Not Found (the path is kept to other hosts)"), lines)
    if decision.verdict == ALLOW and decision.tenant_id is None:
        lines.append((_("Reason"), _("the host matches HOSTGUARD_ALWAYS_ALLOW: let through with no tenant")))
        return Report(EXIT_ALLOWED, _("Allowed (always-allowed host, no tenant)."), lines)
    assert snapshot is not None
    _describe_match(decision, lines)
    if decision.verdict == ALLOW:
        lines.append((_("Reason"), _("served by this deployment")))
        return Report(EXIT_ALLOWED, _("Allowed: tenant %(tenant)s.") % {"tenant": decision.tenant_slug}, lines)
    tenant = snapshot.tenant(decision.tenant_id) if decision.tenant_id is not None else None
    tenant_active = tenant is None or tenant.active
    explanation = _explain(decision, conf.DEPLOYMENT, tenant_active)
    lines.append((_("Reason"), "%s: %s" % (decision.reason, explanation)))
    if decision.reported:
        lines.append((_("Mode"), _("HOSTGUARD_MODE is “report”: the request is logged as refused, then served")))
    elif conf.report_mode:
        lines.append(
            (
                _("Mode"),
                _("HOSTGUARD_MODE is “report”, but this host stays refused: %(why)s") % {"why": _report_refusal()},
            )
        )
    if decision.reason in (PORT_MISMATCH, SCHEME_MISMATCH):
        for group in snapshot.candidates(decision.host):
            for entry_port, entry_scheme, _pk, tenant_id, _active, pattern in group:
                claimed = format_authority(entry_scheme, pattern, entry_port)
                record = snapshot.tenant(tenant_id)
                slug = record.slug if record is not None else "?"
                lines.append(
                    (_("Claimed as"), _("%(authority)s (tenant %(tenant)s)") % {"authority": claimed, "tenant": slug})
                )
    return Report(EXIT_MISDIRECTED, _("421 Misdirected Request (%(reason)s)") % {"reason": decision.reason}, lines)


def _describe_match(decision: Decision, lines: list[tuple[str, str]]) -> None:
    if decision.authority:
        lines.append((_("Authority"), decision.authority))
    if decision.tenant_id is not None:
        name = get_tenant_model()._default_manager.filter(pk=decision.tenant_id).values_list("name", flat=True).first()
        lines.append((_("Tenant"), "%s (%s)" % (decision.tenant_slug, name) if name else decision.tenant_slug))
        lines.append((_("Deployment"), decision.deployment))
    lines.append((_("This process"), conf.DEPLOYMENT or _("HOSTGUARD_DEPLOYMENT is not set")))


def _report_refusal() -> str:
    if conf.site_allowed_hosts is not None:
        return _("report mode serves only hosts ALLOWED_HOSTS lists")
    return _("report mode never serves a host no tenant claims")


def _explain(decision: Decision, here: str | None, tenant_active: bool) -> str:
    reason = decision.reason
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
        return _("the connection was opened for “%(name)s”, which is not a host of this tenant") % {
            "name": decision.sni
        }
    if reason == OTHER_DEPLOYMENT:
        if here is None:
            return _("HOSTGUARD_DEPLOYMENT is not set, so this process serves no tenant")
        return _("the tenant is served by the deployment “%(there)s”, not by this one (“%(here)s”)") % {
            "there": decision.deployment,
            "here": here,
        }
    return reason
