"""The policy in the database: the version stamp, the change log, and the rows a snapshot reads.

Writes (:func:`record`) run in the writer's transaction: the stamp moves by one and
the change log gains a row per touched object at the new version, so both are
published on commit and never for a rolled-back change. On PostgreSQL the same
transaction sends ``NOTIFY`` (delivered at commit), which other processes listen
for (:mod:`hostguard.push`).

Reads (:func:`full`, :func:`delta`) are for the process's own refresh: a full read
with plain cursors (no model instances), or the changes after a version and the
current state of just the rows they name. Rows are read after the stamp, so a
snapshot may already hold a row newer than its version; applying that row's change
again later is harmless — a delta always re-reads the current state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, NamedTuple

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import connections, transaction
from django.db.models import F
from django.dispatch import receiver
from django.utils import timezone

from hostguard.changes import AUTHORITY, DEPLOYMENT, EVERYTHING, LARGE_CHANGE, TENANT, Change
from hostguard.conf import InvalidSetting, conf
from hostguard.db import bounded
from hostguard.snapshot import AuthorityRow, Snapshot, ordered, pack_entry, unpack
from hostguard.tenant_table import TenantRecord, TenantTable

#: The PostgreSQL channel writers notify and processes listen on.
CHANNEL = "hostguard_policy"
#: Ids per ``IN (…)`` query when a delta re-reads rows.
_CHUNK = 500


class Delta(NamedTuple):
    """What changed between two versions, with the changed rows as they are now."""

    version: int
    authorities: dict[int, AuthorityRow | None]
    old_hosts: dict[int, set[str]]
    tenants: dict[int, TenantRecord | None]
    deployments: dict[int, str] | None
    token: Any = None


class Unreachable(Exception):
    """The change log no longer reaches back to the version asked for (pruned, or a full change)."""


# --- writing ----------------------------------------------------------------------------


def record(using: str, changes: Iterable[Change]) -> int:
    """Bump the stamp and log ``changes`` in ``using``'s current transaction; return the version."""
    from hostguard.models import PolicyChange, PolicyStamp

    changes = list(changes)
    if len(changes) > LARGE_CHANGE:
        changes = [Change(EVERYTHING)]
    # The same instant in the stamp and in its change rows: a version's token (see delta()).
    now = timezone.now()
    # One transaction even in autocommit: a version is never visible without its changes.
    with transaction.atomic(using=using, savepoint=False):
        stamps = PolicyStamp.objects.using(using).filter(pk=1)
        if not stamps.update(version=F("version") + 1, changed_at=now):
            PolicyStamp.objects.using(using).get_or_create(pk=1, defaults={"version": 1, "changed_at": now})
        version = stamps.values_list("version", flat=True).get()
        PolicyChange.objects.using(using).bulk_create(
            [
                PolicyChange(
                    version=version,
                    kind=change.kind,
                    object_id=change.object_id,
                    old_host=change.old_host,
                    created_at=now,
                )
                for change in changes
            ]
        )
        connection = connections[using]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                # Delivered at commit, and only then; listeners re-read the log themselves.
                cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, str(version)])
    return int(version)


# --- reading ----------------------------------------------------------------------------


@contextmanager
def reading(using: str, seconds: float) -> Iterator[Any]:
    """A cursor in a transaction on ``using`` whose statements give up after ``seconds``
    (:func:`hostguard.db.bounded`): the policy's reads never hang silently."""
    connection = connections[using]
    with bounded(connection, using, seconds), connection.cursor() as cursor:
        yield cursor


def read_stamp(cursor: Any) -> tuple[int, int, Any]:
    """(version, pruned_through, token): the policy's version, the newest change the log
    has lost, and the instant the version was made (which tells two versions of the same
    number apart: one rolled back, one committed later)."""
    from hostguard.models import PolicyStamp

    table = _table(cursor, PolicyStamp)
    cursor.execute("SELECT version, pruned_through, changed_at FROM %s WHERE id = 1" % table)
    row = cursor.fetchone()
    return (int(row[0]), int(row[1] or 0), row[2]) if row else (0, 0, None)


def full(using: str | None = None, seconds: float = 60.0) -> Snapshot:
    """Read the whole policy: the stamp first, then every deployment, tenant and authority."""

    using = using or conf.DATABASE
    with reading(using, seconds) as cursor:
        version, _pruned, token = read_stamp(cursor)
        deployments = read_deployments(cursor)
        tenants = read_tenant_table(cursor)
        exact, wildcards, size = _read_index(cursor)
        return Snapshot(version, exact, wildcards, tenants, deployments, size, token=token)


def _read_index(cursor: Any) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The base indexes, read in three queries so that no row becomes more than a
    pattern and one or two ints (a million authorities is a million rows).

    Simple authorities (any port, any scheme, active) are most of them, and alone under
    their pattern (the unique constraint on host and scheme for an any-port claim):
    they arrive as (pattern, packed int), for the exact and the wildcard index in turn.
    The rest — ports, schemes, inactive claims — arrive as (host, ids, flags) and are
    packed as :func:`hostguard.snapshot.pack_entry` would (:func:`_read_the_rest`).
    """
    from hostguard.models import Authority

    quote = cursor.db.ops.quote_name
    pk, host, port, scheme, active, tenant = (
        quote(_column(Authority, name)) for name in ("pk", "host", "port", "scheme", "is_active", "tenant")
    )
    table = _table(cursor, Authority)
    # SQL fragments (_read_the_rest's too). The ids as hostguard.snapshot.pack puts
    # them, within a signed 64-bit integer.
    ids = "%s * 4294967296 + %s" % (pk, tenant)
    fits = "%s >= 0 AND %s < 2147483648 AND %s >= 0 AND %s < 4294967296" % (pk, pk, tenant, tenant)
    simple = "%s IS NULL AND %s = '' AND %s AND %s" % (port, scheme, active, fits)
    wildcard = "substr(%s, 1, 2) = '*.'" % host
    indexes: list[dict[str, Any]] = []
    size = 0
    for key, kind in ((host, "NOT " + wildcard), ("substr(%s, 3)" % host, wildcard)):
        cursor.execute("SELECT %s, %s FROM %s WHERE %s AND %s" % (key, ids, table, simple, kind))
        index: dict[str, Any] = {}
        while rows := cursor.fetchmany(20_000):
            index.update(rows)
        size += len(index)
        indexes.append(index)
    exact, wildcards = indexes
    size += _read_the_rest(cursor, exact, wildcards, ids, fits, simple)
    return exact, wildcards, size


def _read_the_rest(
    cursor: Any, exact: dict[str, Any], wildcards: dict[str, Any], ids: str, fits: str, simple: str
) -> int:
    """Add the authorities that are not simple to the indexes; return how many there were.

    hostguard.snapshot.pack_entry's port, scheme and active bits come from SQL; a row
    that cannot be packed comes as NULL and its id, and is read in full."""
    from hostguard.models import Authority

    quote = cursor.db.ops.quote_name
    pk, host, port, scheme, active = (
        quote(_column(Authority, name)) for name in ("pk", "host", "port", "scheme", "is_active")
    )
    packable = "%s AND (%s IS NULL OR (%s > 0 AND %s < 131072)) AND %s IN ('', 'http', 'https')" % (
        fits,
        port,
        port,
        port,
        scheme,
    )
    flags = "COALESCE(%s, 0) * 8 + (CASE %s WHEN 'http' THEN 2 WHEN 'https' THEN 4 ELSE 0 END) + %s" % (
        port,
        scheme,
        "(CASE WHEN %s THEN 1 ELSE 0 END)" % active,
    )
    cursor.execute(
        "SELECT %s, CASE WHEN %s THEN %s END, CASE WHEN %s THEN %s ELSE %s END FROM %s WHERE NOT (%s)"
        % (host, packable, ids, packable, flags, pk, _table(cursor, Authority), simple)
    )
    size = 0
    unpackable = []
    while rows := cursor.fetchmany(10_000):
        size += len(rows)
        for pattern, packed_ids, bits in rows:
            if packed_ids is None:
                unpackable.append(bits)
                continue
            value = -((packed_ids << 20 | bits) + 1)
            index, key = (wildcards, pattern[2:]) if pattern.startswith("*.") else (exact, pattern)
            group = index.get(key)
            if group is None:
                index[key] = value
            else:
                if type(group) is int:
                    group = unpack(group, pattern)
                index[key] = ordered((*group, *unpack(value, pattern)))
    for _pk, row in read_authorities(cursor, unpackable):
        _merge(exact, wildcards, row)
    return size


def _merge(exact: dict[str, Any], wildcards: dict[str, Any], row: AuthorityRow) -> None:
    authority_id, host, port, scheme, active, tenant_id = row
    entry = (port, scheme, authority_id, tenant_id, active, host)
    index, key = (wildcards, host[2:]) if host.startswith("*.") else (exact, host)
    group = index.get(key)
    if group is None:
        packed = pack_entry(entry)
        index[key] = (entry,) if packed is None else packed
    else:
        if type(group) is int:
            group = unpack(group, host)
        index[key] = ordered((*group, entry))


def delta(
    using: str, since: int, token: Any = None, seconds: float = 10.0, *, committed_only: bool = True
) -> Delta | None:
    """What changed after version ``since`` (made at ``token``), or ``None`` if nothing did.

    Raises :class:`Unreachable` when only a full read can tell: the log was pruned
    past ``since``, a change names everything, or ``since`` is not the version this
    database has under that number (the process saw a write that was rolled back).
    ``committed_only``: ``since`` was read from committed data only (the background),
    so a database behind it is a replica catching up, not a rollback.
    """
    from hostguard.models import PolicyChange

    with reading(using, seconds) as cursor:
        table = _table(cursor, PolicyChange)
        version, pruned_through, current_token = read_stamp(cursor)
        if version == since:
            if token is not None and current_token is not None and current_token != token:
                raise Unreachable(since)
            return None
        if version < since:
            if not committed_only:
                raise Unreachable(since)  # read inside a transaction that was rolled back
            # Older: a replica that has not caught up with a write this process already
            # applied (or a database restored under it, which needs a restart).
            return None
        if pruned_through > since:
            raise Unreachable(since)
        if token is not None and since > 0:
            cursor.execute("SELECT created_at FROM %s WHERE version = %%s" % table, [since])
            row = cursor.fetchone()
            if row is not None and row[0] != token:
                raise Unreachable(since)
        authority_ids, old_hosts, tenant_ids, deployments_changed = _changed(cursor, table, since, version)
        authorities: dict[int, AuthorityRow | None] = dict.fromkeys(authority_ids)
        authorities.update(read_authorities(cursor, authority_ids))
        tenants: dict[int, TenantRecord | None] = dict.fromkeys(tenant_ids)
        tenants.update(read_tenants(cursor, tenant_ids))
        deployments = read_deployments(cursor) if deployments_changed else None
        # A prune that committed while this read (READ COMMITTED) may have taken rows it needed.
        if read_stamp(cursor)[1] > since:
            raise Unreachable(since)
        return Delta(version, authorities, old_hosts, tenants, deployments, current_token)


def _changed(cursor: Any, table: str, since: int, version: int) -> tuple[set[int], dict[int, set[str]], set[int], bool]:
    """What the change log names after ``since``: authority ids (with the hosts they left),
    tenant ids, and whether a deployment changed; raises :class:`Unreachable` for a
    change that names everything."""
    cursor.execute(
        "SELECT kind, object_id, old_host FROM %s WHERE version > %%s AND version <= %%s" % table,
        [since, version],
    )
    authority_ids: set[int] = set()
    old_hosts: dict[int, set[str]] = defaultdict(set)
    tenant_ids: set[int] = set()
    deployments_changed = False
    for kind, object_id, old_host in cursor.fetchall():
        if kind == AUTHORITY:
            authority_ids.add(object_id)
            if old_host:
                old_hosts[object_id].add(old_host)
        elif kind == TENANT:
            tenant_ids.add(object_id)
        elif kind == DEPLOYMENT:
            deployments_changed = True
        else:
            raise Unreachable(since)
    return authority_ids, dict(old_hosts), tenant_ids, deployments_changed


def read_deployments(cursor: Any) -> dict[int, str]:
    from hostguard.models import Deployment

    cursor.execute("SELECT id, name FROM %s" % _table(cursor, Deployment))
    return {int(pk): name for pk, name in cursor.fetchall()}


def read_tenant_table(cursor: Any) -> TenantTable:
    """Every tenant, as a snapshot keeps them."""
    if tenant_fields():
        return TenantTable.from_records(read_tenants(cursor, None))
    query, key = _tenant_query(cursor, ())
    return TenantTable.from_rows(_rows_for(cursor, query, key, None))


def _tenant_query(cursor: Any, extra: tuple[str, ...]) -> tuple[str, str]:
    """The query for tenant rows (id, slug, name, deployment id, active, *extra) and its key column."""
    from hostguard.models import get_tenant_model

    model = get_tenant_model()
    quote = cursor.db.ops.quote_name
    names = ("pk", "slug", "name", "deployment", "is_active", *extra)
    columns = [quote(_column(model, name)) for name in names]
    return "SELECT %s FROM %s" % (", ".join(columns), _table(cursor, model)), columns[0]


def read_tenants(cursor: Any, ids: Iterable[int] | None) -> Iterator[tuple[int, TenantRecord]]:
    """(id, record) of the tenants ``ids`` names (``None``: every tenant)."""
    from hostguard.models import get_tenant_model

    extra = tenant_fields()
    query, key = _tenant_query(cursor, extra)
    rows = _rows_for(cursor, query, key, ids)
    if not extra:
        for pk, slug, name, deployment_id, active in rows:
            yield pk, TenantRecord(slug, name, deployment_id, bool(active))
        return
    convert = _converters(cursor.db, get_tenant_model(), extra)
    for pk, slug, name, deployment_id, active, *values in rows:
        yield pk, TenantRecord(slug, name, deployment_id, bool(active), convert(values))


def _converters(connection: Any, model: Any, names: tuple[str, ...]) -> Callable[[list[Any]], tuple[Any, ...]]:
    """What a queryset would do to each raw value of ``names``: the backend's conversions
    (SQLite's dates, decimals, booleans…), then the field's own ``from_db_value``."""
    steps = []
    for name in names:
        column = model._meta.get_field(name).get_col(model._meta.db_table)
        steps.append((column, connection.ops.get_db_converters(column) + column.get_db_converters(connection)))

    def convert(values: list[Any]) -> tuple[Any, ...]:
        converted = []
        for value, (column, converters) in zip(values, steps, strict=True):
            for converter in converters:
                value = converter(value, column, connection)
            converted.append(value)
        return tuple(converted)

    return convert


def read_authorities(cursor: Any, ids: Iterable[int]) -> Iterator[tuple[int, AuthorityRow]]:
    from hostguard.models import Authority

    columns = _authority_columns(cursor)
    query = "SELECT %s FROM %s" % (", ".join(columns), _table(cursor, Authority))
    for row in _rows_for(cursor, query, columns[0], ids):
        yield int(row[0]), _authority_row(row)


def tenant_fields() -> tuple[str, ...]:
    """The tenant model's own fields the snapshot carries beyond slug, name, deployment, active
    (``HOSTGUARD_TENANT_FIELDS``, checked: small, concrete, not relations; cached until a
    setting changes). Raises ImproperlyConfigured (check E018 says why)."""
    global _tenant_fields
    if _tenant_fields is None:
        from hostguard.models import get_tenant_model
        from hostguard.tenant_fields import parse_tenant_fields

        try:
            _tenant_fields = parse_tenant_fields(get_tenant_model(), conf.TENANT_FIELDS)
        except InvalidSetting as exc:
            raise ImproperlyConfigured("HOSTGUARD_TENANT_FIELDS: %s" % exc.message) from None
    return _tenant_fields


_tenant_fields: tuple[str, ...] | None = None


@receiver(setting_changed)
def _forget_tenant_fields(*, setting: str, **kwargs: Any) -> None:
    global _tenant_fields
    if setting.startswith("HOSTGUARD_TENANT_"):
        _tenant_fields = None


def _rows_for(cursor: Any, query: str, key: str, ids: Iterable[int] | None) -> Iterator[tuple[Any, ...]]:
    if ids is None:
        # In key order (a snapshot's tenant table packs ids best so), a batch at a time.
        cursor.execute("%s ORDER BY %s" % (query, key))
        while rows := cursor.fetchmany(10_000):
            yield from rows
        return
    ids = sorted(ids)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        cursor.execute("%s WHERE %s IN (%s)" % (query, key, ", ".join(["%s"] * len(chunk))), chunk)
        yield from cursor.fetchall()


def _authority_row(row: tuple[Any, ...]) -> AuthorityRow:
    pk, host, port, scheme, active, tenant_id = row
    return (int(pk), host, port, scheme or "", bool(active), int(tenant_id))


def _authority_columns(cursor: Any) -> list[str]:
    from hostguard.models import Authority

    quote = cursor.db.ops.quote_name
    return [quote(_column(Authority, name)) for name in ("pk", "host", "port", "scheme", "is_active", "tenant")]


def _column(model: Any, name: str) -> str:
    field = model._meta.pk if name == "pk" else model._meta.get_field(name)
    return str(field.column)


def _table(cursor: Any, model: Any) -> str:
    return str(cursor.db.ops.quote_name(model._meta.db_table))


# --- retention --------------------------------------------------------------------------


def prune_changes(older_than: timedelta, using: str | None = None) -> int:
    """Delete change-log rows older than ``older_than``; return how many.

    Whole versions go at once, and the stamp remembers the newest one gone
    (``pruned_through``): a process at an older version then reads the whole policy
    instead of applying a log with a hole in it.
    """
    from hostguard.models import PolicyChange, PolicyStamp

    using = using or conf.DATABASE
    cutoff = timezone.now() - older_than
    with transaction.atomic(using=using):
        # The stamp's row lock keeps writers out while the watermark moves.
        stamp = PolicyStamp.objects.using(using).select_for_update().filter(pk=1).first()
        if stamp is None:
            return 0
        newest = (
            PolicyChange.objects.using(using)
            .filter(created_at__lt=cutoff)
            .order_by("-version")
            .values_list("version", flat=True)
            .first()
        )
        if newest is None:
            return 0
        deleted, _detail = PolicyChange.objects.using(using).filter(version__lte=newest).delete()
        if newest > stamp.pruned_through:
            PolicyStamp.objects.using(using).filter(pk=1).update(pruned_through=newest)
        return int(deleted)
