"""The lockout guard: no admin write may stop serving the host the admin is used through.

Staff who reach the admin through a tenant's own host (not one in
``HOSTGUARD_ALWAYS_ALLOW``) could delete, deactivate, re-host or move away the
authority that serves the very page they are on, and be answered 421 from the next
click on. Before such a write, the guard replays the decision for the current
request's host against the claims as they would be after the write, and refuses
the write if the host would no longer be served.

Only the claims whose pattern can match the host are read (the host itself and the
wildcards above it): a handful of rows, whatever the size of the policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from django.http import HttpRequest
from django.utils.translation import gettext as _

from hostguard.claims import patterns_matching
from hostguard.conf import conf
from hostguard.decision import (
    ALLOW,
    INACTIVE,
    OTHER_DEPLOYMENT,
    PORT_MISMATCH,
    SCHEME_MISMATCH,
    UNKNOWN_HOST,
    Decision,
)
from hostguard.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class Claim:
    """An authority as the policy sees it: its own fields and its tenant's."""

    id: int | None
    host: str
    port: int | None
    scheme: str
    active: bool
    tenant_id: int | None
    tenant_slug: str
    tenant_active: bool
    deployment: str
    deployment_id: int | None


Edit = Callable[[list[Claim]], Iterable[Claim]]

#: The columns of a :class:`Claim`, in its order.
CLAIM_FIELDS = (
    "id",
    "host",
    "port",
    "scheme",
    "is_active",
    "tenant_id",
    "tenant__slug",
    "tenant__is_active",
    "tenant__deployment__name",
    "tenant__deployment_id",
)

# Stands for a tenant that has no primary key yet (an add form).
NEW_TENANT_ID = -1


def serving(request: HttpRequest | None) -> Decision | None:
    """The decision that let ``request`` in through an authority, if the guard protects it."""
    decision = getattr(request, "hostguard", None)
    if not isinstance(decision, Decision) or decision.verdict != ALLOW or decision.authority_id is None:
        return None
    if conf.always_allow.matches(decision.host):
        return None
    return decision


def current_claims(host: str, using: str | None = None) -> list[Claim]:
    from hostguard.models import Authority

    rows = (
        Authority.objects.db_manager(using)
        .filter(host__in=patterns_matching(host))
        .order_by()
        .values_list(*CLAIM_FIELDS)
    )
    return [Claim(*row) for row in rows]


def decide_after(decision: Decision, claims: Iterable[Claim]) -> Decision:
    rows = []
    for number, claim in enumerate(claims):
        tenant_id = claim.tenant_id if claim.tenant_id is not None else NEW_TENANT_ID
        authority_id = claim.id if claim.id is not None else -1 - number
        rows.append(
            (
                authority_id,
                claim.host,
                claim.port,
                claim.scheme,
                claim.active,
                tenant_id,
                claim.tenant_slug,
                claim.tenant_active,
                claim.deployment,
            )
        )
    snapshot = Snapshot.from_rows(0, rows)
    return snapshot.decide(decision.host, decision.port or 0, decision.scheme, conf.DEPLOYMENT)


def refusal(request: HttpRequest | None, edit: Edit, using: str | None = None) -> str | None:
    """Why the write described by ``edit`` is refused, or ``None`` if it is safe.

    ``edit`` takes the claims that match the request's host as they are now and
    returns them as they would be after the write.
    """
    decision = serving(request)
    if decision is None:
        return None
    after = decide_after(decision, edit(current_claims(decision.host, using)))
    if after.verdict == ALLOW:
        return None
    because = _consequence(after, decision.host)
    return _(
        "Refused: you are using this admin through %(host)s, which the authority %(authority)s of the "
        "tenant “%(tenant)s” serves. After this change %(host)s would be answered 421 Misdirected Request "
        "because %(because)s, and this page would lock you out. Nothing was changed. To make this change, "
        "use the admin through a host listed in HOSTGUARD_ALWAYS_ALLOW or through another tenant's host."
    ) % {"host": decision.host, "authority": decision.authority, "tenant": decision.tenant_slug, "because": because}


def _consequence(after: Decision, host: str) -> str:
    if after.reason == UNKNOWN_HOST:
        return _("no authority would claim it")
    if after.reason in (PORT_MISMATCH, SCHEME_MISMATCH):
        return _("no authority would admit its port and scheme")
    if after.reason == INACTIVE:
        return _("the authority %(authority)s or its tenant “%(tenant)s” would be inactive") % {
            "authority": after.authority,
            "tenant": after.tenant_slug,
        }
    if after.reason == OTHER_DEPLOYMENT:
        return _("its tenant “%(tenant)s” would be served by the deployment “%(deployment)s”, not “%(here)s”") % {
            "tenant": after.tenant_slug,
            "deployment": after.deployment,
            "here": conf.DEPLOYMENT or "",
        }
    return after.reason


# --- edits: how a write changes the claims ------------------------------------------------


def delete_authorities(ids: Collection[int]) -> Edit:
    return lambda claims: [c for c in claims if c.id not in ids]


def update_authorities(ids: Collection[int], *, active: bool) -> Edit:
    return lambda claims: [dataclasses.replace(c, active=active) if c.id in ids else c for c in claims]


def delete_tenants(ids: Collection[int]) -> Edit:
    return lambda claims: [c for c in claims if c.tenant_id not in ids]


def update_tenants(
    ids: Collection[int | None],
    *,
    active: bool | None = None,
    deployment: tuple[int | None, str] | None = None,
) -> Edit:
    def edit(claims: list[Claim]) -> list[Claim]:
        changed = []
        for claim in claims:
            if claim.tenant_id in ids:
                if active is not None:
                    claim = dataclasses.replace(claim, tenant_active=active)
                if deployment is not None:
                    claim = dataclasses.replace(claim, deployment_id=deployment[0], deployment=deployment[1])
            changed.append(claim)
        return changed

    return edit


def rename_deployment(deployment_id: int, name: str) -> Edit:
    return lambda claims: [
        dataclasses.replace(c, deployment=name) if c.deployment_id == deployment_id else c for c in claims
    ]


def delete_deployments(ids: Collection[int]) -> Edit:
    return lambda claims: [c for c in claims if c.deployment_id not in ids]


def replace_authorities(removed: Collection[int], added: Iterable[Claim]) -> Edit:
    """Drop the claims with ids in ``removed`` and add ``added`` (saved or new rows)."""
    added = list(added)
    return lambda claims: [c for c in claims if c.id not in removed] + added


def chain(*edits: Edit) -> Edit:
    def edit(claims: list[Claim]) -> list[Claim]:
        for step in edits:
            claims = list(step(claims))
        return claims

    return edit
