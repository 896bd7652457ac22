"""Importing a document: an upsert checked in full before anything is written, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, models, router, transaction
from django.utils.translation import gettext as _

from hostguard.models import Authority, Deployment, get_tenant_model
from hostguard.policy import policy
from hostguard.transfer import validation
from hostguard.transfer.document import AuthorityEntry, Document, Key, TenantEntry, parse_document
from hostguard.transfer.exporting import authority_order
from hostguard.transfer.reading import TransferError

_CHUNK = 500


@dataclass(slots=True)
class Tally:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0

    @property
    def changed(self) -> int:
        return self.created + self.updated + self.deleted


@dataclass(slots=True)
class ImportResult:
    """What an import did (or, for a dry run, would do)."""

    dry_run: bool = False
    deployments: Tally = field(default_factory=Tally)
    tenants: Tally = field(default_factory=Tally)
    authorities: Tally = field(default_factory=Tally)
    #: One human-readable line per change, in the order they were made.
    changes: list[str] = field(default_factory=list)
    #: Claims on host names other tenants hold, imported because they were allowed.
    shared_names: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        """How many records were (or would be) created, updated or deleted."""
        return self.deployments.changed + self.tenants.changed + self.authorities.changed

    def summary(self) -> list[str]:
        rows = [
            (_("Deployments"), self.deployments),
            (_("Tenants"), self.tenants),
            (_("Authorities"), self.authorities),
        ]
        return [
            _("%(what)s: %(created)d created, %(updated)d updated, %(deleted)d deleted, %(unchanged)d unchanged.")
            % {
                "what": what,
                "created": tally.created,
                "updated": tally.updated,
                "deleted": tally.deleted,
                "unchanged": tally.unchanged,
            }
            for what, tally in rows
        ]


def import_policy(
    data: Any,
    *,
    prune: bool = False,
    dry_run: bool = False,
    keep_existing: bool = False,
    allow_shared_names: bool = False,
    using: str | None = None,
) -> ImportResult:
    """Make the database hold what ``data`` (a parsed file) lists; return what changed.

    An upsert keyed on deployment name, tenant slug and (host, port, scheme): an
    authority listed under another tenant than the one holding it moves. Everything
    is checked before anything is written, all in one transaction, and the policy
    version is bumped once. ``prune`` also deletes what the file does not list;
    ``dry_run`` rolls everything back; ``keep_existing`` only creates what is
    missing and leaves every existing record as it is (the demo data). A new claim
    on host names another tenant holds is refused unless ``allow_shared_names``.
    Raises :class:`TransferError`, having written nothing.
    """
    document = parse_document(data)
    if prune and not document.lists_tenants:
        raise TransferError(
            [_("--prune needs a “tenants” list (an empty one to delete every tenant): the file has none.")]
        )
    db = using or router.db_for_write(Authority)
    try:
        with transaction.atomic(using=db):
            # The inner savepoint: after a failed write the outer transaction stays
            # usable for the batch's final stamp bump, then rolls back as a whole.
            with policy.batch(), transaction.atomic(using=db):
                importer = _Import(document, db, prune=prune, keep_existing=keep_existing)
                result = importer.run(allow_shared_names=allow_shared_names)
            result.dry_run = dry_run
            if dry_run:
                transaction.set_rollback(True, using=db)
    except DatabaseError as exc:
        raise TransferError([_("The database refused the import: %(error)s") % {"error": exc}]) from None
    return result


class _Import:
    def __init__(self, document: Document, db: str, *, prune: bool, keep_existing: bool) -> None:
        self.document = document
        self.db = db
        self.prune = prune
        self.keep_existing = keep_existing
        self.result = ImportResult()

    def run(self, *, allow_shared_names: bool) -> ImportResult:
        # Read the whole current state once; it is small next to any request volume.
        self.deployments = {d.name: d for d in Deployment.objects.using(self.db)}
        self.model = get_tenant_model()
        tenants = self.model._default_manager.using(self.db).select_related("deployment")
        # Instances of the tenant model, hostguard's or the site's own.
        self.tenants: dict[str, Any] = {t.slug: t for t in tenants}
        self.authorities: dict[Key, Authority] = {
            (a.host, a.port, a.scheme): a for a in Authority.objects.using(self.db).select_related("tenant")
        }
        self.validate(allow_shared_names=allow_shared_names)
        self.write_deployments()
        self.write_tenants()
        self.write_authorities()
        if self.prune:
            self.prune_tenants()
            self.prune_deployments()
        return self.result

    def note(self, message: str) -> None:
        self.result.changes.append(message)

    def validate(self, *, allow_shared_names: bool) -> None:
        plan = validation.Plan(self.document, self.deployments, self.authorities, self.prune, self.keep_existing)
        problems = validation.missing_deployments(plan) + validation.unlisted_owners(plan)
        problems += validation.unfillable_fields(plan, self.model, self.tenants)
        if problems:
            raise TransferError(problems)
        shared = validation.shared_names(plan)
        if shared and not allow_shared_names:
            raise TransferError(shared, hint=validation.shared_names_hint())
        self.result.shared_names = shared

    def write_deployments(self) -> None:
        tally = self.result.deployments
        for entry in self.document.deployments:
            deployment = self.deployments.get(entry.name)
            if deployment is None:
                deployment = Deployment(name=entry.name, description=entry.description)
                deployment.save(using=self.db)
                self.deployments[entry.name] = deployment
                tally.created += 1
                self.note(_("create deployment %(name)s") % {"name": entry.name})
            elif deployment.description != entry.description and not self.keep_existing:
                deployment.description = entry.description
                deployment.save(using=self.db, update_fields=["description"])
                tally.updated += 1
                self.note(_("update deployment %(name)s: description") % {"name": entry.name})
            else:
                tally.unchanged += 1

    def write_tenants(self) -> None:
        tally = self.result.tenants
        for entry in self.document.tenants:
            deployment = self.deployments[entry.deployment]
            tenant = self.tenants.get(entry.slug)
            if tenant is None:
                tenant = self.model(slug=entry.slug, name=entry.name, deployment=deployment, is_active=entry.active)
                tenant.save(using=self.db)
                self.tenants[entry.slug] = tenant
                tally.created += 1
                self.note(
                    _("create tenant %(slug)s on %(deployment)s%(inactive)s")
                    % {"slug": entry.slug, "deployment": entry.deployment, "inactive": _inactive(entry.active)}
                )
                continue
            if self.keep_existing:
                tally.unchanged += 1
                continue
            changes: list[tuple[str, str]] = []
            if tenant.name != entry.name:
                tenant.name = entry.name
                changes.append(("name", _("name")))
            if tenant.deployment_id != deployment.pk:
                changes.append(
                    (
                        "deployment",
                        _("moved %(old)s → %(new)s") % {"old": tenant.deployment.name, "new": deployment.name},
                    )
                )
                tenant.deployment = deployment
            if tenant.is_active != entry.active:
                tenant.is_active = entry.active
                changes.append(("is_active", _("activated") if entry.active else _("suspended")))
            if not changes:
                tally.unchanged += 1
                continue
            tenant.save(using=self.db, update_fields=[name for name, _label in changes])
            tally.updated += 1
            self.note(
                _("update tenant %(slug)s: %(changes)s")
                % {"slug": entry.slug, "changes": ", ".join(label for _name, label in changes)}
            )

    def write_authorities(self) -> None:
        tally = self.result.authorities
        wanted: dict[Key, tuple[TenantEntry, AuthorityEntry]] = {
            entry.key: (tenant, entry) for tenant in self.document.tenants for entry in tenant.authorities
        }
        if self.prune:
            # Deleted first, so a tenant pruned later has nothing left to cascade.
            doomed = sorted((a for key, a in self.authorities.items() if key not in wanted), key=authority_order)
            for gone in doomed:
                self.note(
                    _("delete authority %(authority)s of %(tenant)s") % {"authority": gone, "tenant": gone.tenant.slug}
                )
            self._delete(Authority, [gone.pk for gone in doomed])
            tally.deleted += len(doomed)
        new: list[Authority] = []
        for key, (tenant_entry, entry) in wanted.items():
            tenant = self.tenants[tenant_entry.slug]
            authority = self.authorities.get(key)
            if authority is None:
                new.append(
                    Authority(
                        host=entry.spec.host,
                        port=entry.spec.port,
                        scheme=entry.spec.scheme,
                        tenant=tenant,
                        is_active=entry.active,
                        note=entry.note,
                    )
                )
                self.note(
                    _("create authority %(authority)s for %(tenant)s%(inactive)s")
                    % {"authority": entry.spec, "tenant": tenant.slug, "inactive": _inactive(entry.active)}
                )
            elif self.keep_existing:
                tally.unchanged += 1
            else:
                self.update_authority(authority, tenant, entry)
        if new:
            Authority.objects.using(self.db).bulk_create(new, batch_size=_CHUNK)
            tally.created += len(new)

    def update_authority(self, authority: Authority, tenant: Any, entry: AuthorityEntry) -> None:
        changes: list[tuple[str, str]] = []
        if authority.tenant_id != tenant.pk:
            changes.append(
                ("tenant", _("moved %(old)s → %(new)s") % {"old": authority.tenant.slug, "new": tenant.slug})
            )
            authority.tenant = tenant
        if authority.is_active != entry.active:
            authority.is_active = entry.active
            changes.append(("is_active", _("activated") if entry.active else _("deactivated")))
        if authority.note != entry.note:
            authority.note = entry.note
            changes.append(("note", _("note")))
        if not changes:
            self.result.authorities.unchanged += 1
            return
        authority.save(using=self.db, update_fields=[name for name, _label in changes] + ["updated_at"])
        self.result.authorities.updated += 1
        self.note(
            _("update authority %(authority)s: %(changes)s")
            % {"authority": entry.spec, "changes": ", ".join(label for _name, label in changes)}
        )

    def prune_tenants(self) -> None:
        listed = {entry.slug for entry in self.document.tenants}
        doomed = sorted((t for slug, t in self.tenants.items() if slug not in listed), key=lambda t: t.slug)
        for tenant in doomed:
            self.note(_("delete tenant %(slug)s") % {"slug": tenant.slug})
        self._delete(self.model, [tenant.pk for tenant in doomed])
        self.result.tenants.deleted += len(doomed)

    def prune_deployments(self) -> None:
        # A deployment still serving a tenant of the file stays even when the file
        # does not declare it: the tenants need it, and they were checked against it.
        keep = {entry.name for entry in self.document.deployments}
        keep.update(entry.deployment for entry in self.document.tenants)
        doomed = sorted((d for name, d in self.deployments.items() if name not in keep), key=lambda d: d.name)
        for deployment in doomed:
            self.note(_("delete deployment %(name)s") % {"name": deployment.name})
        self._delete(Deployment, [deployment.pk for deployment in doomed])
        self.result.deployments.deleted += len(doomed)

    def _delete(self, model: type[models.Model], pks: list[int]) -> None:
        for start in range(0, len(pks), _CHUNK):
            model._default_manager.using(self.db).filter(pk__in=pks[start : start + _CHUNK]).delete()


def _inactive(active: bool) -> str:
    return "" if active else _(" (inactive)")
