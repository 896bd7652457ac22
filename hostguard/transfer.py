"""Import and export of the policy — deployments, tenants, authorities — as JSON.

``hostguard_import``, ``hostguard_export`` and ``hostguard_demo`` are thin wrappers
around :func:`read_document`, :func:`import_policy` and :func:`export_policy`.

The format::

    {"deployments": [{"name": "eu-1", "description": ""}],
     "tenants": [{"slug": "acme", "name": "Acme", "deployment": "eu-1", "active": true,
                  "authorities": ["acme.example", {"authority": "https://shop.acme.example:8443",
                                                   "active": false, "note": "moving"}]}]}

Every entry states the whole record: an omitted optional field takes its default
(``description`` and ``note`` empty, ``active`` true, ``authorities`` none).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import DatabaseError, models, router, transaction
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from hostguard.hosts import AuthoritySpec, InvalidHost, format_authority, parse_authority
from hostguard.models import Authority, Deployment, Tenant
from hostguard.policy import policy

TOP_KEYS = ("deployments", "tenants")
DEPLOYMENT_KEYS = ("name", "description")
TENANT_KEYS = ("slug", "name", "deployment", "active", "authorities")
AUTHORITY_KEYS = ("authority", "active", "note")

SLUG_MAX_LENGTH = 64
TENANT_NAME_MAX_LENGTH = 200
NOTE_MAX_LENGTH = 255
# Enough to fix a file in one go without burying the terminal.
MAX_REPORTED_PROBLEMS = 50
_CHUNK = 500

# (host, port, scheme): what no two authorities may share.
Key = tuple[str, int | None, str]


class TransferError(Exception):
    """The file cannot be imported; ``problems`` lists every reason found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    def describe(self, limit: int = MAX_REPORTED_PROBLEMS) -> str:
        """The problems as one message, headed by what happened to the database."""
        count = len(self.problems)
        head = ngettext(
            "Nothing was imported: %(count)d problem.",
            "Nothing was imported: %(count)d problems.",
            count,
        ) % {"count": count}
        lines = [head, *("  - " + problem for problem in self.problems[:limit])]
        if count > limit:
            lines.append("  " + _("… and %(count)d more.") % {"count": count - limit})
        return "\n".join(lines)


# --- the document ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeploymentEntry:
    name: str
    description: str


@dataclass(frozen=True, slots=True)
class AuthorityEntry:
    text: str
    spec: AuthoritySpec
    active: bool
    note: str

    @property
    def key(self) -> Key:
        return (self.spec.host, self.spec.port, self.spec.scheme)


@dataclass(frozen=True, slots=True)
class TenantEntry:
    slug: str
    name: str
    deployment: str
    active: bool
    authorities: tuple[AuthorityEntry, ...]


@dataclass(frozen=True, slots=True)
class Document:
    deployments: tuple[DeploymentEntry, ...]
    tenants: tuple[TenantEntry, ...]
    # Whether the file had a "tenants" list at all: --prune refuses to empty the
    # database because of a forgotten key.
    lists_tenants: bool


def read_document(path: str) -> Any:
    """The parsed JSON of ``path`` (``-`` for standard input); raises :class:`TransferError`."""
    source = _("standard input") if path == "-" else path
    try:
        if path == "-":
            buffer = getattr(sys.stdin, "buffer", None)
            raw: bytes | str = buffer.read() if buffer is not None else sys.stdin.read()
        else:
            with open(path, "rb") as handle:
                raw = handle.read()
    except OSError as exc:
        raise TransferError(
            [_("Cannot read %(source)s: %(error)s.") % {"source": source, "error": exc.strerror or exc}]
        ) from None
    if isinstance(raw, str):
        return parse_json(raw, source)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TransferError(
            [_("The text of %(source)s is not UTF-8 (line %(line)d).") % {"source": source, "line": line}]
        ) from None
    return parse_json(text, source)


def parse_json(text: str, source: str = "") -> Any:
    """Parse JSON text, naming the line and column of a syntax error."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise TransferError(
            [
                _("Invalid JSON in %(source)s at line %(line)d, column %(column)d: %(error)s.")
                % {"source": source or _("the file"), "error": exc.msg, "line": exc.lineno, "column": exc.colno}
            ]
        ) from None
    except _DuplicateKey as exc:
        raise TransferError(
            [
                _("The key “%(key)s” appears twice in one object in %(source)s.")
                % {"source": source or _("the file"), "key": exc.key}
            ]
        ) from None


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads silently keeps the last of two equal keys: a second "tenants" list
    # would hide the first.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _json_type(value: object) -> str:
    if isinstance(value, dict):
        return _("an object")
    if isinstance(value, list):
        return _("a list")
    if isinstance(value, str):
        return _("a string")
    if isinstance(value, bool):
        return _("true/false")
    if value is None:
        return "null"
    return _("a number")


class _Fields:
    """Typed reads from one JSON object, each mistake recorded against ``where``."""

    def __init__(self, obj: dict[str, Any], where: str, allowed: tuple[str, ...], problems: list[str]) -> None:
        self.obj = obj
        self.where = where
        self.problems = problems
        for key in obj:
            if key not in allowed:
                self.problem(
                    _("unknown key “%(key)s” (expected %(allowed)s)")
                    % {"key": key, "allowed": ", ".join("“%s”" % name for name in allowed)}
                )

    def problem(self, message: str) -> None:
        self.problems.append("%s: %s" % (self.where, message))

    def text(
        self, key: str, *, required: bool = False, max_length: int | None = None, blank: bool = True
    ) -> str | None:
        if key not in self.obj:
            if required:
                self.problem(_("“%(key)s” is required") % {"key": key})
                return None
            return ""
        value = self.obj[key]
        if not isinstance(value, str):
            self.problem(_("“%(key)s” must be a string, not %(type)s") % {"key": key, "type": _json_type(value)})
            return None
        if not blank and not value.strip():
            self.problem(_("“%(key)s” must not be empty") % {"key": key})
            return None
        if max_length is not None and len(value) > max_length:
            self.problem(_("“%(key)s” is longer than %(limit)d characters") % {"key": key, "limit": max_length})
            return None
        if "\x00" in value:
            self.problem(_("“%(key)s” contains a NUL character") % {"key": key})
            return None
        return value

    def flag(self, key: str) -> bool | None:
        value = self.obj.get(key, True)
        if not isinstance(value, bool):
            self.problem(_("“%(key)s” must be true or false, not %(type)s") % {"key": key, "type": _json_type(value)})
            return None
        return value

    def slug(self, key: str, what: str) -> str | None:
        value = self.text(key, required=True)
        if value is None:
            return None
        try:
            validate_slug(value)
        except ValidationError:
            value = None
        if value is None or len(value) > SLUG_MAX_LENGTH:
            self.problem(
                _("“%(value)s” is not a valid %(what)s: use 1 to %(limit)d letters, digits, hyphens or underscores")
                % {"value": self.obj[key], "what": what, "limit": SLUG_MAX_LENGTH}
            )
            return None
        return value


def _entries(data: dict[str, Any], key: str, problems: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based position, object) for each entry of the list ``data[key]``."""
    items = data.get(key, [])
    if not isinstance(items, list):
        problems.append(_("“%(key)s” must be a list, not %(type)s.") % {"key": key, "type": _json_type(items)})
        return
    for position, item in enumerate(items, 1):
        if isinstance(item, dict):
            yield position, item
        else:
            problems.append(
                _("Entry %(position)d of “%(key)s” must be an object, not %(type)s.")
                % {"position": position, "key": key, "type": _json_type(item)}
            )


def parse_document(data: Any) -> Document:
    """Check the structure and every value of a parsed file; raises :class:`TransferError`.

    All problems are collected, so one run reports everything that needs fixing.
    """
    if not isinstance(data, dict):
        raise TransferError(
            [
                _("The file must hold a JSON object with the keys “deployments” and “tenants”, not %(type)s.")
                % {"type": _json_type(data)}
            ]
        )
    problems: list[str] = []
    for key in data:
        if key not in TOP_KEYS:
            problems.append(
                _("Unknown top-level key “%(key)s”: the file may hold only “deployments” and “tenants”.") % {"key": key}
            )
    deployments = _parse_deployments(data, problems)
    tenants = _parse_tenants(data, problems)
    if problems:
        raise TransferError(problems)
    return Document(tuple(deployments), tuple(tenants), "tenants" in data)


def _parse_deployments(data: dict[str, Any], problems: list[str]) -> list[DeploymentEntry]:
    entries: list[DeploymentEntry] = []
    seen: set[str] = set()
    for position, obj in _entries(data, "deployments", problems):
        where = _("entry %(position)d of “deployments”") % {"position": position}
        fields = _Fields(obj, where, DEPLOYMENT_KEYS, problems)
        name = fields.slug("name", _("deployment name"))
        if name is not None:
            fields.where = _("deployment “%(name)s”") % {"name": name}
        description = fields.text("description")
        if name is None or description is None:
            continue
        if name in seen:
            fields.problem(_("listed twice"))
            continue
        seen.add(name)
        entries.append(DeploymentEntry(name, description))
    return entries


def _parse_tenants(data: dict[str, Any], problems: list[str]) -> list[TenantEntry]:
    entries: list[TenantEntry] = []
    seen: set[str] = set()
    claims: dict[Key, tuple[str, str]] = {}
    for position, obj in _entries(data, "tenants", problems):
        where = _("entry %(position)d of “tenants”") % {"position": position}
        fields = _Fields(obj, where, TENANT_KEYS, problems)
        slug = fields.slug("slug", _("tenant slug"))
        if slug is not None:
            fields.where = _("tenant “%(slug)s”") % {"slug": slug}
        name = fields.text("name", required=True, max_length=TENANT_NAME_MAX_LENGTH, blank=False)
        deployment = fields.slug("deployment", _("deployment name"))
        active = fields.flag("active")
        authorities = _parse_authorities(fields, claims)
        if slug is None or name is None or deployment is None or active is None or authorities is None:
            continue
        if slug in seen:
            fields.problem(_("listed twice"))
            continue
        seen.add(slug)
        entries.append(TenantEntry(slug, name, deployment, active, tuple(authorities)))
    return entries


def _parse_authorities(fields: _Fields, claims: dict[Key, tuple[str, str]]) -> list[AuthorityEntry] | None:
    items = fields.obj.get("authorities", [])
    if not isinstance(items, list):
        fields.problem(_("“authorities” must be a list, not %(type)s") % {"type": _json_type(items)})
        return None
    entries: list[AuthorityEntry] = []
    valid = True
    for position, item in enumerate(items, 1):
        entry = _parse_authority(fields, position, item)
        if entry is None:
            valid = False
            continue
        previous = claims.get(entry.key)
        if previous is None:
            claims[entry.key] = (fields.where, entry.text)
            entries.append(entry)
            continue
        valid = False
        other_where, other_text = previous
        label = entry.text if entry.text == other_text else "%s = %s" % (other_text, entry.text)
        if other_where == fields.where:
            fields.problem(_("lists the authority “%(authority)s” twice") % {"authority": label})
        else:
            fields.problems.append(
                _("The authority “%(authority)s” is claimed twice in the file: by %(first)s and by %(second)s.")
                % {"authority": label, "first": other_where, "second": fields.where}
            )
    return entries if valid else None


def _parse_authority(fields: _Fields, position: int, item: Any) -> AuthorityEntry | None:
    if isinstance(item, str):
        text, active, note = item, True, ""
    elif isinstance(item, dict):
        where = _("%(tenant)s, authority %(position)d") % {"tenant": fields.where, "position": position}
        inner = _Fields(item, where, AUTHORITY_KEYS, fields.problems)
        parsed_text = inner.text("authority", required=True)
        parsed_active = inner.flag("active")
        parsed_note = inner.text("note", max_length=NOTE_MAX_LENGTH)
        if parsed_text is None or parsed_active is None or parsed_note is None:
            return None
        text, active, note = parsed_text, parsed_active, parsed_note
    else:
        fields.problem(
            _('authority %(position)d must be a string or an object like {"authority": "…"}, not %(type)s')
            % {"position": position, "type": _json_type(item)}
        )
        return None
    try:
        spec = parse_authority(text)
    except InvalidHost as exc:
        if "“%s”" % text in exc.message:
            fields.problem(exc.message)
        else:
            fields.problem(_("“%(authority)s”: %(error)s") % {"authority": text, "error": exc.message})
        return None
    return AuthorityEntry(text, spec, active, note)


# --- importing ---------------------------------------------------------------------


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
    using: str | None = None,
) -> ImportResult:
    """Make the database hold what ``data`` (a parsed file) lists; return what changed.

    An upsert keyed on deployment name, tenant slug and (host, port, scheme): an
    authority listed under another tenant than the one holding it moves. Everything
    is checked before anything is written, all in one transaction, and the policy
    version is bumped once. ``prune`` also deletes what the file does not list;
    ``dry_run`` rolls everything back; ``keep_existing`` only creates what is
    missing and leaves every existing record as it is (the demo data). Raises
    :class:`TransferError`, having written nothing.
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
                result = _Import(document, db, prune=prune, keep_existing=keep_existing).run()
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

    def run(self) -> ImportResult:
        # Read the whole current state once; it is small next to any request volume.
        self.deployments = {d.name: d for d in Deployment.objects.using(self.db)}
        self.tenants = {t.slug: t for t in Tenant.objects.using(self.db).select_related("deployment")}
        self.authorities: dict[Key, Authority] = {
            (a.host, a.port, a.scheme): a for a in Authority.objects.using(self.db).select_related("tenant")
        }
        self.validate()
        self.write_deployments()
        self.write_tenants()
        self.write_authorities()
        if self.prune:
            self.prune_tenants()
            self.prune_deployments()
        return self.result

    def note(self, message: str) -> None:
        self.result.changes.append(message)

    def validate(self) -> None:
        problems: list[str] = []
        declared = {entry.name for entry in self.document.deployments}
        listed = {entry.slug for entry in self.document.tenants}
        for tenant in self.document.tenants:
            if tenant.deployment not in declared and tenant.deployment not in self.deployments:
                problems.append(
                    _(
                        "tenant “%(tenant)s”: the deployment “%(deployment)s” is neither listed under "
                        "“deployments” nor in the database."
                    )
                    % {"tenant": tenant.slug, "deployment": tenant.deployment}
                )
            for entry in tenant.authorities:
                current = self.authorities.get(entry.key)
                if current is None or self.keep_existing:
                    continue
                owner = current.tenant.slug
                # A claim may move away from a tenant the file lists (its entry does
                # not claim it any more) or one --prune removes; never silently from
                # a tenant the file does not mention.
                if owner != tenant.slug and owner not in listed and not self.prune:
                    problems.append(
                        _(
                            "tenant “%(tenant)s”: “%(authority)s” already belongs to tenant “%(owner)s”, "
                            "which the file does not list; list “%(owner)s” without it, or use --prune."
                        )
                        % {"tenant": tenant.slug, "authority": entry.text, "owner": owner}
                    )
        if problems:
            raise TransferError(problems)

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
                tenant = Tenant(slug=entry.slug, name=entry.name, deployment=deployment, is_active=entry.active)
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
            doomed = sorted((a for key, a in self.authorities.items() if key not in wanted), key=_authority_order)
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
                continue
            if self.keep_existing:
                tally.unchanged += 1
                continue
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
                tally.unchanged += 1
                continue
            authority.save(using=self.db, update_fields=[name for name, _label in changes] + ["updated_at"])
            tally.updated += 1
            self.note(
                _("update authority %(authority)s: %(changes)s")
                % {"authority": entry.spec, "changes": ", ".join(label for _name, label in changes)}
            )
        if new:
            Authority.objects.using(self.db).bulk_create(new, batch_size=_CHUNK)
            tally.created += len(new)

    def prune_tenants(self) -> None:
        listed = {entry.slug for entry in self.document.tenants}
        doomed = sorted((t for slug, t in self.tenants.items() if slug not in listed), key=lambda t: t.slug)
        for tenant in doomed:
            self.note(_("delete tenant %(slug)s") % {"slug": tenant.slug})
        self._delete(Tenant, [tenant.pk for tenant in doomed])
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


def _authority_order(authority: Authority) -> tuple[str, str, int]:
    return (authority.host, authority.scheme, authority.port or 0)


# --- exporting ---------------------------------------------------------------------


def export_policy(using: str | None = None) -> dict[str, Any]:
    """The whole policy in the import format, in a deterministic order.

    Hosts are written as stored (lower case, punycode). An authority is a plain
    string when active with no note, an object otherwise, so importing the export
    restores every field.
    """
    db = using or router.db_for_read(Authority)
    with transaction.atomic(using=db):
        deployments = list(Deployment.objects.using(db).order_by("name"))
        tenants = list(Tenant.objects.using(db).select_related("deployment").order_by("slug"))
        by_tenant: dict[int, list[Authority]] = {}
        for authority in Authority.objects.using(db).order_by():
            by_tenant.setdefault(authority.tenant_id, []).append(authority)
    return {
        "deployments": [{"name": d.name, "description": d.description} for d in deployments],
        "tenants": [
            {
                "slug": tenant.slug,
                "name": tenant.name,
                "deployment": tenant.deployment.name,
                "active": tenant.is_active,
                "authorities": [
                    _export_authority(authority)
                    for authority in sorted(by_tenant.get(tenant.pk, []), key=_authority_order)
                ],
            }
            for tenant in tenants
        ],
    }


def _export_authority(authority: Authority) -> str | dict[str, Any]:
    text = format_authority(authority.scheme, authority.host, authority.port)
    if authority.is_active and not authority.note:
        return text
    return {"authority": text, "active": authority.is_active, "note": authority.note}


def dump(data: dict[str, Any]) -> str:
    """UTF-8-ready JSON text with an indent of 2 and a final newline."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def count_exported(data: dict[str, Any]) -> tuple[int, int, int]:
    """(deployments, tenants, authorities) in an export."""
    tenants: Iterable[dict[str, Any]] = data["tenants"]
    return (
        len(data["deployments"]),
        len(data["tenants"]),
        sum(len(tenant["authorities"]) for tenant in tenants),
    )
