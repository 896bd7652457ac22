"""The import document: its entries, and the checks of its structure and every value."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.utils.translation import gettext as _

from hostguard.hosts import AuthoritySpec, InvalidHost, parse_authority
from hostguard.transfer.reading import TransferError

TOP_KEYS = ("deployments", "tenants")
DEPLOYMENT_KEYS = ("name", "description")
TENANT_KEYS = ("slug", "name", "deployment", "active", "authorities")
AUTHORITY_KEYS = ("authority", "active", "note")

SLUG_MAX_LENGTH = 64
TENANT_NAME_MAX_LENGTH = 200
NOTE_MAX_LENGTH = 255

# (host, port, scheme): what no two authorities may share.
Key = tuple[str, int | None, str]


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
    #: 1-based, in its tenant's "authorities" list.
    position: int

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
    return AuthorityEntry(text, spec, active, note, position)
