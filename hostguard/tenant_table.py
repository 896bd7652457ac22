"""The snapshot's tenants, in about a third of the memory of a dict of records. Pure.

At a million authorities a site has some 250,000 tenants, and a dict of
:class:`~hostguard.snapshot.TenantRecord` spends about 280 bytes on each: the dict's
slot, the int key, the record and its two strings. Here a tenant costs about 90:

* ids are dense in practice (an auto-increment primary key), so they index a list
  from the first id (no key objects, 8 bytes a slot); ids far apart, or not ints,
  fall back to a dict;
* a record is one string, ``chr(deployment id << 1 | active) + chr(len(slug)) + slug
  + name``, decoded into a ``TenantRecord`` when read. A record that cannot be put so
  (``HOSTGUARD_TENANT_FIELDS`` values, a deployment id too large) is kept as it is.

A table is never changed once built: :meth:`TenantTable.updated` makes a new one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple


class TenantRecord(NamedTuple):
    """What the snapshot knows of a tenant: enough to decide, and to hand out
    ``request.tenant`` without a query (``extra``: ``HOSTGUARD_TENANT_FIELDS``, in order)."""

    slug: str
    name: str
    deployment_id: int
    active: bool
    extra: tuple[Any, ...] = ()


#: A stored record: the packed string, or the record itself.
Stored = str | TenantRecord
#: The largest code point, so the largest head a packed record can have.
_MAX_HEAD = 0x10FFFF
#: The list of records by id grows to at most this many slots a tenant, plus
#: ``_SPARE``; an id beyond goes to a dict.
_SLOTS_A_TENANT = 8
_SPARE = 1024


def pack(slug: str, name: str, deployment_id: Any, active: Any) -> str | None:
    """A record's fields as one string, or ``None`` when they cannot be one."""
    if (
        type(deployment_id) is int
        and 0 <= deployment_id <= _MAX_HEAD >> 1
        and type(slug) is str
        and type(name) is str
        and len(slug) <= _MAX_HEAD
    ):
        return chr(deployment_id << 1 | (1 if active else 0)) + chr(len(slug)) + slug + name
    return None


def stored(record: TenantRecord) -> Stored:
    """``record`` as a table keeps it: packed, unless it has extra fields or cannot be."""
    return (not record.extra and pack(record.slug, record.name, record.deployment_id, record.active)) or record


def unpack(value: Stored) -> TenantRecord:
    if type(value) is str:
        head = ord(value[0])
        end = ord(value[1]) + 2
        return TenantRecord(value[2:end], value[end:], head >> 1, bool(head & 1))
    return value  # type: ignore[return-value]


class TenantTable:
    """Tenant id → :class:`TenantRecord`, compact (see the module's docstring)."""

    __slots__ = ("_base", "_count", "_dense", "_sparse")

    def __init__(self, dense: list[Stored | None], sparse: dict[Any, Stored], count: int, base: int = 0) -> None:
        #: The list holds ids ``base`` to ``base + len(dense) - 1``.
        self._dense = dense
        self._base = base
        self._sparse = sparse
        self._count = count

    @classmethod
    def from_records(cls, records: Iterable[tuple[Any, TenantRecord]]) -> TenantTable:
        """A table of ``records``: (id, record) pairs, in any order."""
        table = cls([], {}, 0)
        for tenant_id, record in records:
            table._reach(tenant_id)
            table._put(tenant_id, stored(record))
        return table

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[Any, str, str, Any, Any]]) -> TenantTable:
        """A table of rows (id, slug, name, deployment id, active) as a query returns them:
        :meth:`from_records` without making a record of each, for a full read."""
        table = cls([], {}, 0)
        dense, sparse = table._dense, table._sparse
        for tenant_id, slug, name, deployment_id, active in rows:
            value = pack(slug, name, deployment_id, active) or TenantRecord(slug, name, deployment_id, bool(active))
            if type(tenant_id) is int and tenant_id - table._base == len(dense) and dense and not sparse:
                dense.append(value)  # the next id, in a full read in id order
                table._count += 1
            else:
                table._reach(tenant_id)
                table._put(tenant_id, value)
        return table

    def _reach(self, tenant_id: Any) -> None:
        """Extend the list to ``tenant_id`` while it keeps at most about eight slots a
        tenant (a slot costs 8 bytes, a dict entry with its key some 70); a farther id
        goes to the dict. The first id starts the list."""
        if type(tenant_id) is not int:
            return
        dense = self._dense
        if not dense:
            self._base = tenant_id
        length = tenant_id - self._base + 1
        if len(dense) < length <= _SLOTS_A_TENANT * (self._count + 1) + _SPARE:
            dense.extend([None] * (length - len(dense)))

    def _put(self, tenant_id: Any, value: Stored | None) -> None:
        """Store (or, with ``None``, remove) one tenant: in the list if its id falls in it."""
        dense, sparse = self._dense, self._sparse
        if sparse:
            # An id stored before the list reached it.
            self._count -= sparse.pop(tenant_id, None) is not None
        index = tenant_id - self._base if type(tenant_id) is int else -1
        if 0 <= index < len(dense):
            self._count += (value is not None) - (dense[index] is not None)
            dense[index] = value
        elif value is not None:
            self._count += 1
            sparse[tenant_id] = value

    def get(self, tenant_id: Any) -> TenantRecord | None:
        value: Stored | None = None
        if type(tenant_id) is int and 0 <= tenant_id - self._base < len(self._dense):
            value = self._dense[tenant_id - self._base]
        if value is None and self._sparse:
            value = self._sparse.get(tenant_id)
        return None if value is None else unpack(value)

    def __contains__(self, tenant_id: Any) -> bool:
        return self.get(tenant_id) is not None

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Any]:
        """Every tenant id."""
        for index, value in enumerate(self._dense):
            if value is not None:
                yield self._base + index
        yield from self._sparse

    def updated(self, changes: Mapping[Any, TenantRecord | None]) -> TenantTable:
        """A new table: this one with ``changes`` (``None``: the tenant is gone).

        Costs a copy of the table's slots (no record is decoded), then the changes."""
        table = TenantTable(list(self._dense), dict(self._sparse), self._count, self._base)
        for tenant_id, record in changes.items():
            table._put(tenant_id, None if record is None else stored(record))
        return table
