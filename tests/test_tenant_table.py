"""The snapshot's compact tenant table answers exactly what a dict of records would."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.tenant_table import TenantRecord, TenantTable

ids = st.one_of(
    st.integers(min_value=0, max_value=3000),  # dense, mostly
    st.integers(min_value=-5, max_value=10**12),  # gaps, huge and negative ids
    st.text(min_size=1, max_size=4),  # a primary key that is not an int
)
records = st.builds(
    TenantRecord,
    slug=st.text(max_size=70),
    name=st.one_of(st.text(max_size=300), st.none()),  # any text: astral characters, NUL; a nullable column
    deployment_id=st.one_of(st.integers(min_value=0, max_value=10), st.integers(min_value=-3, max_value=2**40)),
    active=st.booleans(),
    extra=st.one_of(st.just(()), st.tuples(st.integers(), st.none())),
)


def same(table: TenantTable, expected: dict[Any, TenantRecord], probes: list[Any]) -> None:
    assert len(table) == len(expected)
    assert sorted(map(repr, table)) == sorted(map(repr, expected))
    for tenant_id in [*expected, *probes]:
        assert table.get(tenant_id) == expected.get(tenant_id), tenant_id
        assert (tenant_id in table) == (tenant_id in expected)


@settings(max_examples=300, deadline=None)
@given(
    first=st.lists(st.tuples(ids, records), max_size=60),
    changes=st.lists(st.dictionaries(ids, st.one_of(st.none(), records), max_size=20), max_size=4),
    probes=st.lists(ids, max_size=10),
)
def test_the_table_is_a_dict_of_records(
    first: list[tuple[Any, TenantRecord]], changes: list[dict[Any, TenantRecord | None]], probes: list[Any]
) -> None:
    expected = dict(first)
    table = TenantTable.from_records(first)
    same(table, expected, probes)
    # A full read's rows, made into records only when read.
    plain = [(tenant_id, record) for tenant_id, record in first if not record.extra]
    rows = [(tenant_id, *record[:4]) for tenant_id, record in plain]
    same(TenantTable.from_rows(rows), dict(plain), probes)
    for change in changes:
        before = dict(expected)
        changed = table.updated(change)
        for tenant_id, record in change.items():
            if record is None:
                expected.pop(tenant_id, None)
            else:
                expected[tenant_id] = record
        same(changed, expected, probes)
        same(table, before, probes)  # a table never changes once built
        table = changed


@pytest.mark.parametrize(
    "ids",
    [range(1, 20_001), range(200_000, 220_000), range(1, 60_000, 3)],
    ids=["from 1", "from 200,000", "every third id"],
)
def test_ids_in_a_sequence_cost_a_third_of_a_dict_of_records(ids: range) -> None:
    rows = [(pk, TenantRecord(f"tenant-{pk}", f"Tenant {pk}", 1 + pk % 3, pk % 7 != 0)) for pk in ids]
    table = TenantTable.from_rows([(pk, *record[:4]) for pk, record in rows])
    pk = ids[len(ids) // 2]
    assert table.get(pk) == TenantRecord(f"tenant-{pk}", f"Tenant {pk}", 1 + pk % 3, pk % 7 != 0)
    assert table._sparse == {}

    def size(value: Any) -> int:
        return sys.getsizeof(value)

    compact = size(table._dense) + sum(size(stored) for stored in table._dense if stored is not None)
    as_dict = dict(rows)
    plain = size(as_dict) + sum(size(k) + size(r) + size(r.slug) + size(r.name) for k, r in as_dict.items())
    assert compact * 2.5 < plain, (compact, plain)
