"""What an import is checked against before it writes anything: the database as it is.

Every check works on the state the import read once, in memory: never a query per entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db.models import Model
from django.utils.translation import gettext as _

from hostguard.claims import SHOWN, Holding, describe, find_shared, rule
from hostguard.models import Authority, Deployment
from hostguard.transfer.document import AuthorityEntry, Document, Key, TenantEntry

SHARED_NAMES_FLAG = "--allow-shared-names"


@dataclass(frozen=True, slots=True)
class Plan:
    """The file and the database side by side, as the checks and the writer see them."""

    document: Document
    deployments: dict[str, Deployment]
    authorities: dict[Key, Authority]
    prune: bool
    keep_existing: bool

    def wanted(self) -> dict[Key, tuple[TenantEntry, AuthorityEntry]]:
        """Every authority the file lists, with the tenant entry that lists it."""
        return {entry.key: (tenant, entry) for tenant in self.document.tenants for entry in tenant.authorities}


def missing_deployments(plan: Plan) -> list[str]:
    declared = {entry.name for entry in plan.document.deployments}
    return [
        _(
            "tenant “%(tenant)s”: the deployment “%(deployment)s” is neither listed under “deployments” "
            "nor in the database."
        )
        % {"tenant": tenant.slug, "deployment": tenant.deployment}
        for tenant in plan.document.tenants
        if tenant.deployment not in declared and tenant.deployment not in plan.deployments
    ]


def unlisted_owners(plan: Plan) -> list[str]:
    """A claim may move away from a tenant the file lists (its entry no longer claims it)
    or one --prune removes; never silently from a tenant the file does not mention."""
    if plan.keep_existing or plan.prune:
        return []
    listed = {entry.slug for entry in plan.document.tenants}
    problems = []
    for tenant in plan.document.tenants:
        for entry in tenant.authorities:
            current = plan.authorities.get(entry.key)
            if current is None:
                continue
            owner = current.tenant.slug
            if owner != tenant.slug and owner not in listed:
                problems.append(
                    _(
                        "tenant “%(tenant)s”: “%(authority)s” already belongs to tenant “%(owner)s”, "
                        "which the file does not list; list “%(owner)s” without it, or use --prune."
                    )
                    % {"tenant": tenant.slug, "authority": entry.text, "owner": owner}
                )
    return problems


def unfillable_fields(plan: Plan, model: type[Model], existing: Mapping[str, Model]) -> list[str]:
    """One line per new tenant the tenant model cannot take from a file alone: a site's own
    tenant model may require fields of its own, which the file format has no place for."""
    problems = []
    base = ["slug", "name", "deployment", "is_active"]
    for entry in plan.document.tenants:
        if entry.slug in existing:
            continue  # an existing row keeps its own fields; the import changes only hostguard's
        tenant = model(slug=entry.slug, name=entry.name, is_active=entry.active)
        try:
            tenant.clean_fields(exclude=base)
        except ValidationError as exc:
            missing = ", ".join(
                "“%s” (%s)" % (getattr(model._meta.get_field(name), "verbose_name", name), " ".join(messages))
                for name, messages in exc.message_dict.items()
            )
            problems.append(
                _(
                    "tenant “%(tenant)s”: a new %(model)s needs %(fields)s, which an import cannot fill; "
                    "create the tenant in the admin (an import then updates it by its slug), or give the "
                    "field a default."
                )
                % {"tenant": entry.slug, "model": model._meta.label, "fields": missing}
            )
    return problems


def shared_names(plan: Plan) -> list[str]:
    """One line per new claim and other tenant whose host names it would share after the import.

    A claim is new when the database does not hold it, or holds it for another tenant.
    It is compared with every claim as the import leaves them: the file's, and the
    database's that stay (not listed by the file, not pruned).
    """
    wanted = plan.wanted()
    after: dict[Key, Holding] = {}
    for key, authority in plan.authorities.items():
        if (key in wanted and not plan.keep_existing) or (plan.prune and key not in wanted):
            continue
        after[key] = Holding(authority.host, authority.tenant.slug, str(authority))
    new: dict[Holding, tuple[TenantEntry, AuthorityEntry]] = {}
    for key, (tenant, entry) in wanted.items():
        current = plan.authorities.get(key)
        if current is not None and (plan.keep_existing or current.tenant.slug == tenant.slug):
            after.setdefault(key, Holding(current.host, current.tenant.slug, str(current)))
            continue
        claim = Holding(entry.spec.host, tenant.slug, entry.text)
        after[key] = claim
        new[claim] = (tenant, entry)
    problems = []
    for claim, others in find_shared(list(new), after.values()):
        tenant, entry = new[claim]
        where = _("tenant “%(tenant)s”, authority %(position)d") % {"tenant": tenant.slug, "position": entry.position}
        by_owner: dict[str, list[Holding]] = {}
        for other in others:
            by_owner.setdefault(other.owner, []).append(other)
        for holdings in by_owner.values():
            problems.append("%s: %s" % (where, describe(entry.text, holdings[:SHOWN], len(holdings))))
    return problems


def shared_names_hint() -> str:
    return " ".join(
        [
            rule(),
            _("To import these claims all the same, run again with %(flag)s.") % {"flag": SHARED_NAMES_FLAG},
        ]
    )
