"""What hostguard decides, and the snapshot it decides from: pure, no models, no database.

* :class:`Verdict` and :class:`Reason` — the one vocabulary of outcomes, used by the
  middleware, the audit log's model field, the admin, the chart, the logs and checks;
* :class:`Decision` — one request's outcome, set as ``request.hostguard``;
* :class:`Snapshot` — an immutable index of every authority, looked up by walking the
  host's labels (its cost depends on the number of labels, never on the number of
  authorities).

:mod:`hostguard.policy` keeps a process's current snapshot fresh; this module only
reads the rows it is given.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _

from hostguard.hosts import format_authority, is_ip


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


# An entry is (port or None, scheme or "", authority id, tenant id, active, host pattern).
Entry = tuple[int | None, str, int, int, bool, str]
# A tenant is (slug, deployment name, active).
TenantInfo = tuple[str, str, bool]


def _specificity(entry: Entry) -> tuple[bool, bool]:
    return (entry[0] is not None, entry[1] != "")


class Snapshot:
    """An immutable index of all authorities. Lookup walks the host's labels."""

    __slots__ = ("_memo", "built_at", "exact", "size", "tenants", "version", "wildcards")

    MEMO_SIZE = 8192

    def __init__(
        self,
        version: int,
        exact: dict[str, tuple[Entry, ...]],
        wildcards: dict[str, tuple[Entry, ...]],
        tenants: dict[int, TenantInfo],
        size: int,
    ) -> None:
        self.version = version
        self.exact = exact
        self.wildcards = wildcards
        self.tenants = tenants
        self.size = size
        self.built_at = time.monotonic()
        self._memo: dict[tuple[str, int, str, str | None], Decision] = {}

    @classmethod
    def from_rows(cls, version: int, rows: Any) -> Snapshot:
        """Rows are (id, host, port, scheme, active, tenant id, slug, tenant active, deployment)."""
        exact: dict[str, tuple[Entry, ...]] = {}
        wildcards: dict[str, tuple[Entry, ...]] = {}
        tenants: dict[int, TenantInfo] = {}
        # Each row brings its own copy of values that repeat (tenant ids, schemes,
        # ports, deployment names): keep one of each, which saves a tenth of the
        # snapshot's memory.
        shared: dict[Any, Any] = {}
        size = 0
        for pk, host, port, scheme, active, tenant_id, slug, tenant_active, deployment in rows:
            size += 1
            tenant_id = shared.setdefault(tenant_id, tenant_id)
            if tenant_id not in tenants:
                tenants[tenant_id] = (slug, shared.setdefault(deployment, deployment), tenant_active)
            port, scheme = shared.setdefault(port, port), shared.setdefault(scheme, scheme)
            entry: Entry = (port, scheme, pk, tenant_id, active, host)
            if host.startswith("*."):
                index, pattern = wildcards, host[2:]
            else:
                index, pattern = exact, host
            # Groups are built as tuples at once (no list per host to convert at the end).
            group = index.get(pattern)
            index[pattern] = (entry,) if group is None else _ordered((*group, entry))
        return cls(version, exact, wildcards, tenants, size)

    def candidates(self, host: str) -> Iterator[tuple[Entry, ...]]:
        """Entry groups whose pattern matches ``host``, most specific pattern first."""
        entries = self.exact.get(host)
        if entries:
            yield entries
        if not self.wildcards or is_ip(host):
            return
        dot = host.find(".")
        while dot >= 0:
            entries = self.wildcards.get(host[dot + 1 :])
            if entries:
                yield entries
            dot = host.find(".", dot + 1)

    def decide(self, host: str, port: int, scheme: str, deployment: str | None) -> Decision:
        """The verdict for a well-formed ``host`` on an effective ``port`` and ``scheme``."""
        key = (host, port, scheme, deployment)
        decision = self._memo.get(key)
        if decision is None:
            decision = self._decide(host, port, scheme, deployment)
            if len(self._memo) >= self.MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = decision
        return decision

    def _decide(self, host: str, port: int, scheme: str, deployment: str | None) -> Decision:
        matched = admits_port = False
        for group in self.candidates(host):
            matched = True
            for entry in group:
                port_ok = entry[0] is None or entry[0] == port
                admits_port = admits_port or port_ok
                if port_ok and (not entry[1] or entry[1] == scheme):
                    return self._verdict(entry, host, port, scheme, deployment)
        if not matched:
            reason = UNKNOWN_HOST
        else:
            reason = SCHEME_MISMATCH if admits_port else PORT_MISMATCH
        return Decision(MISDIRECTED, reason, host, port, scheme)

    def _verdict(self, entry: Entry, host: str, port: int, scheme: str, deployment: str | None) -> Decision:
        entry_port, entry_scheme, authority_id, tenant_id, active, pattern = entry
        slug, tenant_deployment, tenant_active = self.tenants[tenant_id]
        if not (active and tenant_active):
            verdict, reason = MISDIRECTED, INACTIVE
        elif tenant_deployment != deployment:
            verdict, reason = MISDIRECTED, OTHER_DEPLOYMENT
        else:
            verdict, reason = ALLOW, ""
        return Decision(
            verdict,
            reason,
            host,
            port,
            scheme,
            format_authority(entry_scheme, pattern, entry_port),
            authority_id,
            tenant_id,
            slug,
            tenant_deployment,
        )


def _ordered(entries: Iterable[Entry]) -> tuple[Entry, ...]:
    # Explicit port over any port, then explicit scheme over any scheme.
    return tuple(sorted(entries, key=_specificity, reverse=True))
