"""Verdicts and reasons in words, for the check page and the lockout guard."""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from hostguard.decision import Reason, Verdict

#: What a client gets, by verdict.
VERDICTS: dict[str, Promise] = {
    Verdict.ALLOW: _("Served"),
    Verdict.MISDIRECTED: _("421 Misdirected Request"),
    Verdict.MALFORMED: _("400 Bad Request"),
    Verdict.EXEMPT: _("Served (exempt path)"),
    Verdict.HIDDEN: _("404 Not Found"),
    Verdict.UNAVAILABLE: _("503 Service Unavailable"),
}

ALWAYS_ALLOWED = "always_allowed"

#: Why, by reason (and for verdicts without one). Placeholders: host, port, scheme,
#: authority, tenant, deployment, here, sni, path.
REASONS: dict[str, Promise] = {
    "": _("The authority %(authority)s of the tenant “%(tenant)s” claims it, and this deployment serves that tenant."),
    ALWAYS_ALLOWED: _(
        "%(host)s is listed in HOSTGUARD_ALWAYS_ALLOW: it is let through with no tenant, whatever the authorities say."
    ),
    Reason.UNKNOWN_HOST: _("No authority claims %(host)s: add one to a tenant to serve it."),
    Reason.PORT_MISMATCH: _("An authority claims %(host)s, but none of them on port %(port)s."),
    Reason.SCHEME_MISMATCH: _("An authority claims %(host)s on port %(port)s, but none of them over %(scheme)s."),
    Reason.INACTIVE: _("The authority %(authority)s that claims it, or its tenant “%(tenant)s”, is inactive."),
    Reason.OTHER_DEPLOYMENT: _(
        "The tenant “%(tenant)s” is served by the deployment “%(deployment)s”; this process serves “%(here)s”."
    ),
    Reason.SNI_MISMATCH: _(
        "The connection was opened for the TLS server name %(sni)s, which is not a host of the tenant “%(tenant)s”."
    ),
    Reason.MALFORMED_HOST: _(
        "This is not a well-formed Host header: a host name of letters, digits, hyphens and dots, "
        "an IPv4 address or a bracketed IPv6 address, with an optional port from 1 to 65535."
    ),
    Verdict.EXEMPT: _("The path %(path)s is in HOSTGUARD_EXEMPT_PATHS: it is never gated, whatever the host."),
    Verdict.HIDDEN: _(
        "HOSTGUARD_ADMIN_HOSTS keeps the path %(path)s to other hosts: %(host)s gets a plain 404 Not Found there."
    ),
    Verdict.UNAVAILABLE: _(
        "The policy cannot be loaded from the database right now: every request gets "
        "503 Service Unavailable until it can."
    ),
}


def explain(reason: str, **values: object) -> str:
    """The reason in words, with whatever of host, port, scheme, tenant… it mentions filled in."""
    text = REASONS.get(reason)
    if text is None:
        return str(reason)
    defaults: dict[str, object] = {
        "host": "",
        "port": "",
        "scheme": "",
        "authority": "",
        "tenant": "",
        "deployment": "",
        "here": "",
        "sni": "",
        "path": "",
    }
    defaults.update(values)
    return str(text) % defaults
