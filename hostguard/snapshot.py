"""The snapshot: an immutable index of every authority and tenant, and its deltas. Pure.

A lookup walks the host's labels — the host itself, then each wildcard above it — so
its cost depends on the number of labels, never on the number of authorities.

A change makes a new snapshot without copying the old one: the new one shares the
old one's *base* indexes and carries a small *overlay* of the patterns and tenants
that changed (copy-on-write). The overlay is merged into a new base now and then
(:meth:`Snapshot.compacted`, in the background), so lookups stay two dictionary
probes at most.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from hostguard.decision import (
    ALLOW,
    INACTIVE,
    MISDIRECTED,
    OTHER_DEPLOYMENT,
    PORT_MISMATCH,
    SCHEME_MISMATCH,
    UNKNOWN_HOST,
    Decision,
)
from hostguard.hosts import format_authority, is_ip
from hostguard.tenant_table import TenantRecord, TenantTable

# An entry is (port or None, scheme or "", authority id, tenant id, active, host pattern).
Entry = tuple[int | None, str, int, int, bool, str]
#: A group as a base index stores it: its entries, or one packed int (see :func:`pack`).
Stored = tuple[Entry, ...] | int
#: An authority as the snapshot reads it: (id, host pattern, port, scheme, active, tenant id).
AuthorityRow = tuple[int, str, int | None, str, bool, int]


# A pattern or tenant the overlay removes: the base may still hold it.
_GONE: Any = ()
_MISSING: Any = object()

#: Most patterns hold one authority. Such a group is stored in a base index as one
#: int instead of a tuple of one 6-tuple — a third of the memory, at a million
#: authorities the difference between fitting in a worker and not:
#: ``authority id << 32 | tenant id`` for a simple one (any port, any scheme,
#: active), and a negative int that also carries port, scheme and the active flag
#: for the others.
_PACKABLE = 1 << 32
_LOW = _PACKABLE - 1
_SCHEMES = ("", "http", "https")


def pack(authority_id: int, tenant_id: int) -> int | None:
    """A simple authority's group as one int, or ``None`` if its ids are too large."""
    if 0 <= authority_id < _PACKABLE and 0 <= tenant_id < _PACKABLE:
        return authority_id << 32 | tenant_id
    return None


def pack_entry(entry: Entry) -> int | None:
    """Any single authority's group as one int, or ``None`` if it cannot be packed."""
    port, scheme, authority_id, tenant_id, active, _pattern = entry
    if port is None and not scheme and active:
        return pack(authority_id, tenant_id)
    ids = pack(authority_id, tenant_id)
    if ids is None or scheme not in _SCHEMES or not (port is None or 0 < port < 1 << 17):
        return None
    return -(((ids << 17 | (port or 0)) << 3 | _SCHEMES.index(scheme) << 1 | bool(active)) + 1)


def unpack(value: int, pattern: str) -> tuple[Entry, ...]:
    """The group a packed int stands for (``pattern`` as stored: ``*.x`` for a wildcard)."""
    if value >= 0:
        return ((None, "", value >> 32, value & _LOW, True, pattern),)
    value = -value - 1
    ids = value >> 20
    port = (value >> 3) & 0x1FFFF
    return ((port or None, _SCHEMES[(value >> 1) & 3], ids >> 32, ids & _LOW, bool(value & 1), pattern),)


def _group_value(entries: tuple[Entry, ...]) -> Stored:
    """How a group is stored in a base index: packed when it can be."""
    if len(entries) == 1:
        packed = pack_entry(entries[0])
        if packed is not None:
            return packed
    return entries


def _specificity(entry: Entry) -> tuple[bool, bool, int]:
    # Most specific first; among equals (which never admit the same request), by id,
    # so that every way of building a group orders it the same.
    return (entry[0] is None, entry[1] == "", entry[2])


def ordered(entries: Iterable[Entry]) -> tuple[Entry, ...]:
    """A group's entries, most specific first: explicit port over any port, then
    explicit scheme over any scheme."""
    return tuple(sorted(entries, key=_specificity))


class Snapshot:
    """An immutable index of all authorities and tenants, at one policy ``version``."""

    __slots__ = (
        "_exact",
        "_exact_overlay",
        "_memo",
        "_tenant_overlay",
        "_tenants",
        "_wild",
        "_wild_overlay",
        "built_at",
        "deployments",
        "size",
        "token",
        "version",
    )

    MEMO_SIZE = 8192

    def __init__(
        self,
        version: int,
        exact: dict[str, Stored],
        wildcards: dict[str, Stored],
        tenants: TenantTable | Mapping[int, TenantRecord],
        deployments: dict[int, str],
        size: int,
        overlays: tuple[dict[str, Any], dict[str, Any], dict[int, Any]] | None = None,
        token: Any = None,
    ) -> None:
        self.version = version
        #: When the database made this version (tells it from a rolled-back one of the same number).
        self.token = token
        self._exact = exact
        self._wild = wildcards
        self._tenants = tenants if isinstance(tenants, TenantTable) else TenantTable.from_records(tenants.items())
        self.deployments = deployments
        self.size = size
        self._exact_overlay, self._wild_overlay, self._tenant_overlay = overlays or ({}, {}, {})
        self.built_at = time.monotonic()
        self._memo: dict[tuple[str, int, str, str | None], Decision] = {}

    # --- building -------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        version: int,
        authorities: Iterable[AuthorityRow],
        tenants: dict[int, TenantRecord],
        deployments: dict[int, str],
    ) -> Snapshot:
        """A snapshot of ``authorities`` (rows in any order) and their tenants."""
        exact: dict[str, tuple[Entry, ...]] = {}
        wildcards: dict[str, tuple[Entry, ...]] = {}
        # Rows bring their own copy of values that repeat (tenant ids, ports, schemes):
        # keep one of each, which saves a tenth of the snapshot's memory.
        shared: dict[Any, Any] = {}
        size = 0
        for pk, host, port, scheme, active, tenant_id in authorities:
            size += 1
            entry: Entry = (
                shared.setdefault(port, port),
                shared.setdefault(scheme, scheme),
                pk,
                shared.setdefault(tenant_id, tenant_id),
                bool(active),
                host,
            )
            if host.startswith("*."):
                index, pattern = wildcards, host[2:]
            else:
                index, pattern = exact, host
            group = index.get(pattern)
            index[pattern] = (entry,) if group is None else ordered((*group, entry))
        packed = [
            {pattern: _group_value(entries) for pattern, entries in index.items()} for index in (exact, wildcards)
        ]
        return cls(version, packed[0], packed[1], tenants, deployments, size)

    @classmethod
    def from_rows(cls, version: int, rows: Any) -> Snapshot:
        """Rows are (id, host, port, scheme, active, tenant id, slug, tenant active, deployment name)."""
        tenants: dict[int, TenantRecord] = {}
        deployment_ids: dict[str, int] = {}
        authorities: list[AuthorityRow] = []
        for pk, host, port, scheme, active, tenant_id, slug, tenant_active, deployment in rows:
            deployment_id = deployment_ids.setdefault(deployment, len(deployment_ids) + 1)
            tenants.setdefault(tenant_id, TenantRecord(slug, slug, deployment_id, tenant_active))
            authorities.append((pk, host, port, scheme, active, tenant_id))
        names = {number: name for name, number in deployment_ids.items()}
        return cls.build(version, authorities, tenants, names)

    # --- reading --------------------------------------------------------------------

    def tenant(self, tenant_id: int) -> TenantRecord | None:
        record = self._tenant_overlay.get(tenant_id, _MISSING)
        if record is _MISSING:
            return self._tenants.get(tenant_id)
        return record or None

    def group(self, pattern: str) -> tuple[Entry, ...]:
        """The entries stored under ``pattern`` (``*.x`` for a wildcard), most specific first."""
        if pattern.startswith("*."):
            overlay, base, key = self._wild_overlay, self._wild, pattern[2:]
        else:
            overlay, base, key = self._exact_overlay, self._exact, pattern
        entries = overlay.get(key, _MISSING)
        if entries is _MISSING:
            entries = base.get(key, ())
            if type(entries) is int:
                return unpack(entries, pattern)
        return entries  # type: ignore[no-any-return]

    def candidates(self, host: str) -> Iterator[tuple[Entry, ...]]:
        """Entry groups whose pattern matches ``host``, most specific pattern first."""
        overlay = self._exact_overlay
        entries = overlay.get(host, _MISSING) if overlay else _MISSING
        if entries is _MISSING:
            entries = self._exact.get(host)
            if type(entries) is int:
                entries = unpack(entries, host)
        if entries:
            yield entries
        base, overlay = self._wild, self._wild_overlay
        if not (base or overlay) or is_ip(host):
            return
        dot = host.find(".")
        while dot >= 0:
            suffix = host[dot + 1 :]
            entries = overlay.get(suffix, _MISSING) if overlay else _MISSING
            if entries is _MISSING:
                entries = base.get(suffix)
                if type(entries) is int:
                    entries = unpack(entries, "*." + suffix)
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
        tenant = self.tenant(tenant_id)
        if tenant is None:  # a row that names a tenant the snapshot lacks: never served
            slug, tenant_deployment, tenant_active = "", "", False
        else:
            slug, tenant_active = tenant.slug, tenant.active
            tenant_deployment = self.deployments.get(tenant.deployment_id, "")
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

    # --- changing -------------------------------------------------------------------

    @property
    def overlay_size(self) -> int:
        """How many patterns and tenants this snapshot holds beside its base."""
        return len(self._exact_overlay) + len(self._wild_overlay) + len(self._tenant_overlay)

    def with_changes(
        self,
        version: int,
        authorities: Mapping[int, AuthorityRow | None],
        old_hosts: Mapping[int, Iterable[str]],
        tenants: Mapping[int, TenantRecord | None],
        deployments: dict[int, str] | None,
        token: Any = None,
    ) -> Snapshot:
        """A new snapshot at ``version``: this one with those rows as they are now.

        ``authorities`` maps each changed authority's id to its row now (``None``:
        deleted); ``old_hosts`` the patterns it was stored under before (from the
        change log), so an entry whose host changed leaves its old group. Tenants
        likewise; ``deployments`` replaces the names when given. Only the touched
        groups are copied.
        """
        exact_overlay, wild_overlay = dict(self._exact_overlay), dict(self._wild_overlay)
        size = self.size
        for authority_id, row in authorities.items():
            patterns = set(old_hosts.get(authority_id, ()))
            if row is not None:
                patterns.add(row[1])
            present = False
            for pattern in patterns:
                if pattern.startswith("*."):
                    overlay, key = wild_overlay, pattern[2:]
                else:
                    overlay, key = exact_overlay, pattern
                group = self.group(pattern) if key not in overlay else overlay[key]
                kept = tuple(entry for entry in group if entry[2] != authority_id)
                present = present or len(kept) != len(group)
                if row is not None and row[1] == pattern:
                    pk, host, port, scheme, active, tenant_id = row
                    kept = ordered((*kept, (port, scheme, pk, tenant_id, bool(active), host)))
                overlay[key] = kept or _GONE
            size += (row is not None) - present
        tenant_overlay = dict(self._tenant_overlay)
        for tenant_id, record in tenants.items():
            tenant_overlay[tenant_id] = record if record is not None else _GONE
        return Snapshot(
            version,
            self._exact,
            self._wild,
            self._tenants,
            self.deployments if deployments is None else deployments,
            size,
            (exact_overlay, wild_overlay, tenant_overlay),
            token,
        )

    def compacted(self) -> Snapshot:
        """The same snapshot with its overlay merged into new base indexes (costs a copy of each)."""
        merged: list[dict[str, Stored]] = []
        for base, overlay in ((self._exact, self._exact_overlay), (self._wild, self._wild_overlay)):
            index = dict(base)
            for key, value in overlay.items():
                if value is _GONE:
                    index.pop(key, None)
                else:
                    index[key] = _group_value(value)
            merged.append(index)
        exact, wildcards = merged
        tenants = self._tenants.updated(
            {tenant_id: None if record is _GONE else record for tenant_id, record in self._tenant_overlay.items()}
        )
        return Snapshot(self.version, exact, wildcards, tenants, self.deployments, self.size, token=self.token)

    def tenant_ids(self) -> set[int]:
        """Every tenant id the snapshot knows (a test and introspection helper; costs a copy)."""
        ids = {tenant_id for tenant_id in self._tenants if tenant_id not in self._tenant_overlay}
        ids.update(tenant_id for tenant_id, record in self._tenant_overlay.items() if record is not _GONE)
        return ids

    def patterns(self) -> Iterator[tuple[str, tuple[Entry, ...]]]:
        """Every (stored host pattern, entries), base and overlay merged (tests, introspection)."""
        for prefix, base, overlay in (("", self._exact, self._exact_overlay), ("*.", self._wild, self._wild_overlay)):
            for key, stored in base.items():
                if key not in overlay and stored:
                    yield prefix + key, unpack(stored, prefix + key) if isinstance(stored, int) else stored
            for key, entries in overlay.items():
                if entries:
                    yield prefix + key, entries
