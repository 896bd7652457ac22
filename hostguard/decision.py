"""What hostguard decides: pure, no models, no database.

* :class:`Verdict` and :class:`Reason` — the one vocabulary of outcomes, used by the
  middleware, the audit log's model field, the admin, the chart, the logs and checks;
* :class:`Decision` — one request's outcome, set as ``request.hostguard``.

The snapshot the decision is read from is :mod:`hostguard.snapshot`.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models
from django.utils.translation import gettext_lazy as _


class Verdict(models.TextChoices):
    ALLOW = "allow", _("served")
    MISDIRECTED = "misdirected", _("421 Misdirected Request")
    MALFORMED = "malformed", _("400 Bad Request")
    #: The path is in ``HOSTGUARD_EXEMPT_PATHS``: not gated, no tenant.
    EXEMPT = "exempt", _("exempt path")
    #: No snapshot could be loaded yet: 503 Service Unavailable.
    UNAVAILABLE = "unavailable", _("503 Service Unavailable")
    #: A served host asked for a path ``HOSTGUARD_ADMIN_HOSTS`` keeps to other hosts: 404.
    HIDDEN = "hidden", _("404 Not Found")


class Reason(models.TextChoices):
    """Why a request was refused (or, in report mode, would have been)."""

    UNKNOWN_HOST = "unknown_host", _("unknown host")
    OTHER_DEPLOYMENT = "other_deployment", _("served by another deployment")
    INACTIVE = "inactive", _("inactive")
    PORT_MISMATCH = "port_mismatch", _("port mismatch")
    SCHEME_MISMATCH = "scheme_mismatch", _("scheme mismatch")
    SNI_MISMATCH = "sni_mismatch", _("SNI mismatch")
    MALFORMED_HOST = "malformed_host", _("malformed host")


# Plain strings for the request path: comparing with an enum member costs a method call.
ALLOW: str = Verdict.ALLOW.value
MISDIRECTED: str = Verdict.MISDIRECTED.value
MALFORMED: str = Verdict.MALFORMED.value
EXEMPT: str = Verdict.EXEMPT.value
UNAVAILABLE: str = Verdict.UNAVAILABLE.value
HIDDEN: str = Verdict.HIDDEN.value

UNKNOWN_HOST: str = Reason.UNKNOWN_HOST.value
PORT_MISMATCH: str = Reason.PORT_MISMATCH.value
SCHEME_MISMATCH: str = Reason.SCHEME_MISMATCH.value
INACTIVE: str = Reason.INACTIVE.value
OTHER_DEPLOYMENT: str = Reason.OTHER_DEPLOYMENT.value
SNI_MISMATCH: str = Reason.SNI_MISMATCH.value
MALFORMED_HOST: str = Reason.MALFORMED_HOST.value


@dataclass(frozen=True, slots=True)
class Decision:
    """What hostguard decided for a request; set as ``request.hostguard``."""

    verdict: str
    reason: str = ""
    host: str = ""
    port: int | None = None
    scheme: str = ""
    authority: str = ""
    authority_id: int | None = None
    tenant_id: int | None = None
    tenant_slug: str = ""
    deployment: str = ""
    #: True when ``HOSTGUARD_MODE = "report"`` let this would-be 421 through: the
    #: verdict and reason say what enforcing would have answered.
    reported: bool = False
    #: The TLS server name the connection was opened for, when one was checked.
    sni: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict in (ALLOW, EXEMPT)
