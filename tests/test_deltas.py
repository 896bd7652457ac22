"""Changes as deltas: what a process applies after its version equals a full read (issue #12).

The pure part (a snapshot with changes) is checked against a fresh build; the
database part — every write path recording what it touched, in the writer's
transaction — by applying random sequences of writes through deltas and comparing
every decision on a set of probe hosts with a full read of the database.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard import store
from hostguard.models import Authority, Deployment, PolicyChange, PolicyStamp, get_tenant_model
from hostguard.policy import changed, policy
from hostguard.snapshot import Snapshot, TenantRecord

# hostguard.Tenant, or the site's own model (tests/settings_swapped.py runs these tests with one).
Tenant = get_tenant_model()

HERE = "eu-1"


def decisions(snapshot: Snapshot, hosts: list[str]) -> list[tuple[Any, ...]]:
    out = []
    for host in hosts:
        for port, scheme in ((80, "http"), (443, "https"), (8443, "https")):
            d = snapshot._decide(host, port, scheme, HERE)
            out.append(
                (host, port, scheme, d.verdict, d.reason, d.authority, d.authority_id, d.tenant_id, d.deployment)
            )
    return out


# --- the snapshot alone ----------------------------------------------------------------


def base() -> Snapshot:
    tenants = {1: TenantRecord("acme", "Acme", 1, True), 2: TenantRecord("globex", "Globex", 2, True)}
    rows = [
        (1, "acme.example", None, "", True, 1),
        (2, "*.acme.example", None, "", True, 1),
        (3, "globex.example", None, "", True, 2),
        (4, "shop.acme.example", 8443, "https", True, 1),
    ]
    return Snapshot.build(7, rows, tenants, {1: "eu-1", 2: "us-1"})


PROBES = ["acme.example", "x.acme.example", "shop.acme.example", "globex.example", "new.example", "x.new.example"]


def test_a_snapshot_with_changes_decides_as_a_fresh_build() -> None:
    old = base()
    new = old.with_changes(
        8,
        # a host edit (acme.example → new.example), a removal, an addition, a port change
        {
            1: (1, "new.example", None, "", True, 1),
            3: None,
            5: (5, "*.new.example", None, "", True, 2),
            4: (4, "shop.acme.example", None, "", False, 1),
        },
        {1: {"acme.example"}, 3: {"globex.example"}},
        {2: TenantRecord("globex", "Globex", 1, True)},  # globex moves to eu-1
        None,
    )
    expected = Snapshot.build(
        8,
        [
            (1, "new.example", None, "", True, 1),
            (2, "*.acme.example", None, "", True, 1),
            (4, "shop.acme.example", None, "", False, 1),
            (5, "*.new.example", None, "", True, 2),
        ],
        {1: TenantRecord("acme", "Acme", 1, True), 2: TenantRecord("globex", "Globex", 1, True)},
        {1: "eu-1", 2: "us-1"},
    )
    assert decisions(new, PROBES) == decisions(expected, PROBES)
    assert (new.version, new.size) == (8, 4)
    assert decisions(new.compacted(), PROBES) == decisions(expected, PROBES)
    assert new.compacted().overlay_size == 0
    # The old snapshot is untouched: requests deciding with it meanwhile see the old policy.
    assert decisions(old, PROBES) == decisions(base(), PROBES)


def test_a_change_copies_only_the_groups_it_touches() -> None:
    old = base()
    new = old.with_changes(8, {3: None}, {3: {"globex.example"}}, {}, None)
    assert new._exact is old._exact  # the base index is shared, not copied
    assert new.overlay_size == 1
    assert new.decide("globex.example", 80, "http", "us-1").reason == "unknown_host"
    assert old.decide("globex.example", 80, "http", "us-1").verdict == "allow"


def test_a_deleted_tenant_and_a_renamed_deployment() -> None:
    new = base().with_changes(8, {}, {}, {2: None}, {1: "eu-1", 2: "us-2"})
    assert new.decide("acme.example", 80, "http", HERE).verdict == "allow"
    # An authority whose tenant is gone is never served.
    assert new.decide("globex.example", 80, "http", "us-2").reason == "inactive"
    assert (
        base().with_changes(8, {}, {}, {}, {1: "eu-1", 2: "us-2"}).decide("globex.example", 80, "http", "us-2").verdict
        == "allow"
    )


@pytest.mark.parametrize(
    "entry",
    [
        (None, "", 1, 2, True, "a.example"),
        (None, "", 2**32 - 1, 2**32 - 1, True, "*.a.example"),
        (8443, "https", 7, 9, True, "a.example"),
        (65535, "http", 7, 9, False, "a.example"),
        (None, "", 7, 9, False, "a.example"),
        (1, "", 2**31, 1, True, "[::1]"),
    ],
)
def test_a_group_of_one_is_packed_into_an_int_and_back(entry: Any) -> None:
    from hostguard.snapshot import pack_entry, unpack

    packed = pack_entry(entry)
    assert isinstance(packed, int)
    assert unpack(packed, entry[5]) == (entry,)


def test_ids_too_large_to_pack_stay_entries() -> None:
    from hostguard.snapshot import pack_entry

    assert pack_entry((None, "", 2**32, 1, True, "a.example")) is None
    snapshot = Snapshot.build(
        1, [(2**40, "big.example", None, "", True, 1)], {1: TenantRecord("t", "T", 1, True)}, {1: HERE}
    )
    assert snapshot.decide("big.example", 80, "http", HERE).authority_id == 2**40


# --- through the database ----------------------------------------------------------------


@pytest.fixture
def world(db: None) -> dict[str, Any]:
    eu, us = Deployment.objects.create(name="eu-1"), Deployment.objects.create(name="us-1")
    tenants = [Tenant.objects.create(slug=f"t{i}", name=f"T{i}", deployment=eu if i % 2 else us) for i in range(4)]
    return {"deployments": [eu, us], "tenants": tenants}


HOSTS = ["a.example", "b.example", "*.a.example", "x.a.example", "*.example", "c.b.example"]
PROBE_HOSTS = [
    "a.example",
    "b.example",
    "x.a.example",
    "y.x.a.example",
    "c.b.example",
    "z.example",
    "none.test",
    "moved-a.example",
    "moved-b.example",
    "moved-x.a.example",
    "moved-example",
    "moved-c.b.example",
]

operation = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(HOSTS), st.sampled_from([None, 8443]), st.integers(0, 3)),
    st.tuples(st.just("remove"), st.integers(0, 10)),
    st.tuples(st.just("rehost"), st.integers(0, 10), st.sampled_from(HOSTS)),
    st.tuples(st.just("toggle"), st.integers(0, 10)),
    st.tuples(st.just("move"), st.integers(0, 3), st.integers(0, 1)),
    st.tuples(st.just("suspend"), st.integers(0, 3)),
    st.tuples(st.just("update_hosts"), st.sampled_from(HOSTS), st.sampled_from(HOSTS)),
    st.tuples(st.just("bulk_toggle"), st.integers(0, 3)),
    st.tuples(st.just("bulk_create"), st.sampled_from(HOSTS), st.integers(0, 3)),
    st.tuples(st.just("delete_tenant_hosts"), st.integers(0, 3)),
    st.tuples(st.just("rename_deployment"), st.integers(0, 1)),
    st.tuples(st.just("unread_delete"), st.integers(0, 10)),
    st.tuples(st.just("unread_rehost"), st.integers(0, 10), st.sampled_from(HOSTS)),
    st.tuples(st.just("stale_rehost"), st.integers(0, 10), st.sampled_from(HOSTS)),
    st.tuples(st.just("update_or_create"), st.sampled_from(HOSTS), st.integers(0, 3)),
    st.tuples(st.just("upsert"), st.integers(0, 10), st.sampled_from(HOSTS)),
)


def apply(op: tuple[Any, ...], world: dict[str, Any]) -> None:
    tenants, deployments = world["tenants"], world["deployments"]
    authorities = list(Authority.objects.order_by("pk"))
    kind = op[0]
    with transaction.atomic():
        try:
            if kind == "add":
                Authority.objects.create(host=op[1], port=op[2], tenant=tenants[op[3]])
            elif kind == "remove" and authorities:
                authorities[op[1] % len(authorities)].delete()
            elif kind == "rehost" and authorities:
                authority = authorities[op[1] % len(authorities)]
                authority.host = op[2]
                authority.save()
            elif kind == "toggle" and authorities:
                authority = authorities[op[1] % len(authorities)]
                authority.is_active = not authority.is_active
                authority.save()
            elif kind == "move":
                tenant = Tenant.objects.get(pk=tenants[op[1]].pk)
                tenant.deployment = deployments[op[2]]
                tenant.save()
            elif kind == "suspend":
                Tenant.objects.filter(pk=tenants[op[1]].pk).update(is_active=~_active())
            elif kind == "update_hosts":
                Authority.objects.filter(host=op[1]).update(host=op[2])
            elif kind == "bulk_toggle" and authorities:
                chosen = authorities[op[1] % len(authorities) :: 2]
                for authority in chosen:
                    authority.is_active = not authority.is_active
                Authority.objects.bulk_update(chosen, ["is_active"])
            elif kind == "bulk_create":
                Authority.objects.bulk_create([Authority(host=op[1], tenant=tenants[op[2]], port=9000)])
            elif kind == "delete_tenant_hosts":
                Authority.objects.filter(tenant=tenants[op[1]]).delete()
            elif kind == "unread_delete" and authorities:
                Authority(pk=authorities[op[1] % len(authorities)].pk).delete()
            elif kind == "unread_rehost" and authorities:
                old = authorities[op[1] % len(authorities)]
                Authority(pk=old.pk, host=op[2], tenant_id=old.tenant_id, created_at=old.created_at).save()
            elif kind == "stale_rehost" and authorities:
                # An instance read before someone else moved the row (two editors).
                stale = authorities[op[1] % len(authorities)]
                Authority.objects.filter(pk=stale.pk).update(host="moved-" + stale.host.lstrip("*."))
                stale.host = op[2]
                stale.save()
            elif kind == "update_or_create":
                Authority.objects.update_or_create(host=op[1], defaults={"tenant": tenants[op[2]]})
            elif kind == "upsert" and authorities:
                old = authorities[op[1] % len(authorities)]
                Authority.objects.bulk_create(
                    [Authority(pk=old.pk, host=op[2], tenant_id=old.tenant_id)],
                    update_conflicts=True,
                    unique_fields=["id"],
                    update_fields=["host"],
                )
            elif kind == "rename_deployment":
                deployment = Deployment.objects.get(pk=deployments[op[1]].pk)
                deployment.name = "eu-1" if deployment.name != "eu-1" else "eu-9"
                deployment.save()
        except Exception:
            # A write the database refuses (a duplicate claim) leaves everything as it was.
            transaction.set_rollback(True)


def _active() -> Any:
    from django.db.models import F

    return F("is_active")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(operation, min_size=1, max_size=12))
def test_random_writes_applied_as_deltas_decide_as_a_full_read(world: dict[str, Any], operations: list[Any]) -> None:
    sid = transaction.savepoint()
    try:
        policy.reset()
        start = policy.refresh()
        for op in operations:
            apply(op, world)
            current = policy.advance()
            assert current is not None
        fresh = store.full()
        rows = Authority.objects.values_list("pk", "host", "port", "scheme", "is_active", "tenant_id")
        built = Snapshot.build(fresh.version, rows, {}, {})
        assert sorted(fresh.patterns()) == sorted(built.patterns()), "the packed read and a plain build agree"
        assert current.version == fresh.version
        assert current.size == fresh.size
        assert decisions(current, PROBE_HOSTS) == decisions(fresh, PROBE_HOSTS)
        if all(op[0] != "upsert" for op in operations):  # an upsert is read in full, by design
            # Applied as deltas on the snapshot read at the start: its base index is shared.
            assert current._exact is start._exact, "the changes were read in full, not applied as deltas"
    finally:
        transaction.savepoint_rollback(sid)


def test_every_write_path_names_what_it_touched(world: dict[str, Any]) -> None:
    tenant = world["tenants"][0]
    before = PolicyStamp.objects.get(pk=1).version
    authority = Authority.objects.create(host="a.example", tenant=tenant)
    authority.host = "b.example"
    authority.save()
    Authority.objects.filter(pk=authority.pk).update(host="c.example")
    Authority.objects.bulk_create([Authority(host="d.example", tenant=tenant)])
    Tenant.objects.filter(pk=tenant.pk).update(name="Renamed")
    changes = list(
        PolicyChange.objects.filter(version__gt=before)
        .order_by("version", "pk")
        .values_list("kind", "object_id", "old_host")
    )
    d = Authority.objects.get(host="d.example")
    assert changes == [
        ("authority", authority.pk, ""),
        ("authority", authority.pk, "a.example"),
        ("authority", authority.pk, "b.example"),
        ("authority", d.pk, ""),
        ("tenant", tenant.pk, ""),
    ]
    # A raw-SQL writer that says so gets a change every process reads in full.
    changed()
    assert PolicyChange.objects.order_by("-version").values_list("kind", flat=True).first() == "all"


def test_a_tenant_deleted_with_its_hosts_is_one_change(world: dict[str, Any]) -> None:
    tenant = world["tenants"][1]
    for name in ("a", "b", "c"):
        Authority.objects.create(host=f"{name}.example", tenant=tenant)
    before = PolicyStamp.objects.get(pk=1).version
    tenant.delete()
    assert PolicyStamp.objects.get(pk=1).version == before + 1
    kinds = sorted(PolicyChange.objects.filter(version=before + 1).values_list("kind", flat=True))
    assert kinds == ["authority", "authority", "authority", "tenant"]


def test_a_process_behind_a_pruned_log_reads_everything_and_says_so(
    world: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    tenant = world["tenants"][1]
    Authority.objects.create(host="a.example", tenant=tenant)
    asleep = policy.refresh()
    Authority.objects.create(host="b.example", tenant=tenant)
    PolicyChange.objects.update(created_at=PolicyChange.objects.first().created_at - timedelta(days=2))  # type: ignore[union-attr]
    out = StringIO()
    call_command("hostguard_prune", "--changes-older-than", "24", stdout=out)
    assert "policy change-log rows older than 24 hours" in out.getvalue()
    assert not PolicyChange.objects.exists()
    assert PolicyStamp.objects.get(pk=1).pruned_through == PolicyStamp.objects.get(pk=1).version
    with caplog.at_level(logging.INFO, logger="hostguard.policy"):
        caught_up = policy.advance()
    assert caught_up is not None
    assert caught_up is not asleep
    assert caught_up.version > asleep.version
    assert caught_up.decide("b.example", 80, "http", "eu-1").verdict == "allow"
    assert any("no longer reaches back" in record.getMessage() for record in caplog.records)


def test_an_update_names_exactly_the_rows_it_changed(world: dict[str, Any]) -> None:
    tenant = world["tenants"][1]
    Authority.objects.bulk_create([Authority(host=f"h{i}.example", tenant=tenant) for i in range(1200)])
    before = PolicyStamp.objects.get(pk=1).version
    # h1, h10–h19, h100–h199, h1000–h1199: more than one IN (…) chunk, one change.
    assert Authority.objects.filter(host__startswith="h1").update(is_active=False) == 311
    assert PolicyStamp.objects.get(pk=1).version == before + 1
    assert PolicyChange.objects.filter(version=before + 1).count() == 311
    assert Authority.objects.filter(is_active=False).count() == 311


def test_a_read_leaves_the_connections_own_timeouts_as_it_found_them(world: dict[str, Any]) -> None:
    from django.db import connection

    query = {"sqlite": "PRAGMA busy_timeout", "postgresql": "SHOW statement_timeout"}[connection.vendor]

    def current() -> Any:
        with connection.cursor() as cursor:
            cursor.execute(query)
            return cursor.fetchone()[0]

    before = current()
    policy.refresh()
    Authority.objects.create(host="a.example", tenant=world["tenants"][1])
    policy.advance()
    assert current() == before
