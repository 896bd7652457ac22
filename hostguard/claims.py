"""A host name belongs to one tenant: where a new claim would share names with another tenant's.

Two claims share names when the sets of host names they match meet, whatever their
ports and schemes: an exact host matches itself, ``*.example.com`` every name under
example.com (not example.com itself). So a new exact host shares with another
tenant's claim on the same host (any port or scheme) or on a wildcard above it; a new
wildcard with another tenant's wildcard equal to it or above it, and with every claim
under it. Staff may still make such a claim, but only explicitly: a confirmation that
names the other tenant in the admin, ``--allow-shared-names`` for ``hostguard_import``.

Cost of :func:`shared_names`: the rows of the host itself and of the wildcards above
it, one indexed ``IN`` query whatever the size of the policy. A wildcard also reads
the claims under it, a suffix match no B-tree index can narrow: a scan of the host
index, paid only when staff claim a wildcard, reading at most :data:`SHOWN` rows
and, past that, one ``COUNT``. Measured at 100,000 authorities: an exact host is one
query under a millisecond; a wildcard two or three queries, 10–25 ms, on SQLite and
PostgreSQL alike. :func:`find_shared` does the same in memory, for imports.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import NamedTuple

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from hostguard.hosts import format_authority, is_ip

#: How many of the shared claims a message lists before it only counts the rest.
SHOWN = 5


def wildcards_covering(host: str) -> list[str]:
    """Every wildcard whose names include all of ``host``'s: for a wildcard, itself and those above."""
    if host.startswith("[") or is_ip(host):
        return []
    patterns = []
    dot = host.find(".")
    while dot >= 0:
        patterns.append("*." + host[dot + 1 :])
        dot = host.find(".", dot + 1)
    return patterns


def patterns_matching(host: str) -> list[str]:
    """Every stored host pattern that can match the request host ``host``: itself and each wildcard above it."""
    return [host, *wildcards_covering(host)]


class Holding(NamedTuple):
    """One claim as the rule sees it: its host pattern, who holds it, and how to show it."""

    host: str
    owner: str
    label: str


class SharedNames(NamedTuple):
    """The other tenants' claims a claim on ``host`` would share names with."""

    host: str
    #: At most :data:`SHOWN` of them, in host order.
    holdings: tuple[Holding, ...]
    total: int

    @property
    def owners(self) -> list[str]:
        """The tenants among :attr:`holdings`, each once, in order."""
        return list(dict.fromkeys(holding.owner for holding in self.holdings))

    def describe(self) -> str:
        """``x.example shares host names with the tenant “Globex” (*.example).``"""
        return describe(self.host, self.holdings, self.total)


def describe(host: str, holdings: Sequence[Holding], total: int) -> str:
    by_owner: dict[str, list[str]] = {}
    for holding in holdings:
        by_owner.setdefault(holding.owner, []).append(holding.label)
    tenants = ", ".join("“%s” (%s)" % (owner, ", ".join(labels)) for owner, labels in by_owner.items())
    if total > len(holdings):
        more = total - len(holdings)
        tenants += " " + ngettext("and %(count)d more claim", "and %(count)d more claims", more) % {"count": more}
    return ngettext(
        "%(host)s shares host names with the tenant %(tenants)s.",
        "%(host)s shares host names with the tenants %(tenants)s.",
        len(by_owner),
    ) % {"host": host, "tenants": tenants}


def rule() -> str:
    return _("A host name belongs to one tenant: share it only if both tenants really serve it.")


# --- in the database ---------------------------------------------------------------------------


def shared_names(
    hosts: Iterable[str],
    tenant_id: int | None,
    *,
    exclude: Collection[int] = (),
    using: str | None = None,
) -> dict[str, SharedNames]:
    """For each host pattern in ``hosts`` claimed by tenant ``tenant_id`` (``None``: a new
    tenant), the claims of other tenants it shares names with; hosts that share none
    are left out. Rows with a primary key in ``exclude`` (the ones being edited) do not count.
    """
    from hostguard.models import Authority

    hosts = list(dict.fromkeys(hosts))
    if not hosts:
        return {}
    others = Authority.objects.db_manager(using).exclude(pk__in=list(exclude)).order_by("host", "port", "scheme")
    if tenant_id is not None:
        others = others.exclude(tenant_id=tenant_id)
    fields = ("pk", "host", "port", "scheme", "tenant__name")
    patterns = {host: set(patterns_matching(host)) for host in hosts}
    above = list(others.filter(host__in=set().union(*patterns.values())).values_list(*fields))
    found: dict[str, SharedNames] = {}
    for host in hosts:
        # The host itself and the wildcards above it; for a wildcard, the names under it next.
        rows = {row[0]: row for row in above if row[1] in patterns[host]}
        total = len(rows)
        if host.startswith("*."):
            under = others.filter(host__endswith=host[1:]).exclude(host=host)
            extra = list(under.values_list(*fields)[:SHOWN])
            total += len(extra) if len(extra) < SHOWN else under.count()
            rows.update((row[0], row) for row in extra)
        if not total:
            continue
        holdings = tuple(
            Holding(row[1], row[4], format_authority(row[3], row[1], row[2]))
            for row in sorted(rows.values(), key=lambda row: (row[1], row[3], row[2] or 0))[:SHOWN]
        )
        found[host] = SharedNames(host, holdings, total)
    return found


# --- in memory ---------------------------------------------------------------------------------


def find_shared(new: Sequence[Holding], held: Iterable[Holding]) -> list[tuple[Holding, list[Holding]]]:
    """For each claim in ``new``, the claims in ``held`` of other owners it shares names with.

    ``held`` is every claim as it will be, ``new`` among them. A pair of new claims is
    reported once, against the first of the two in ``new``. Cost: one pass over ``held``, and for new
    wildcards one more walking each held host's labels; no claim is compared with every other.
    """
    held = list(held)
    by_host: dict[str, list[Holding]] = {}
    for holding in held:
        by_host.setdefault(holding.host, []).append(holding)
    found: dict[Holding, dict[Holding, None]] = {claim: {} for claim in new}
    for claim in new:
        for pattern in dict.fromkeys(patterns_matching(claim.host)):
            for other in by_host.get(pattern, ()):
                if other.owner != claim.owner:
                    found[claim][other] = None
    wildcards: dict[str, list[Holding]] = {}
    for claim in new:
        if claim.host.startswith("*."):
            wildcards.setdefault(claim.host[2:], []).append(claim)
    if wildcards:
        for other in held:
            for pattern in wildcards_covering(other.host):
                for claim in wildcards.get(pattern[2:], ()):
                    if other.owner != claim.owner:
                        found[claim][other] = None
    reported: set[tuple[Holding, Holding]] = set()
    result = []
    for claim in new:
        others = [other for other in found[claim] if (other, claim) not in reported]
        reported.update((claim, other) for other in others)
        if others:
            result.append((claim, sorted(others)))
    return result
