"""Which authority wins, and why a host is refused: the snapshot, pure and from the DB.

Also the version stamp that tells other processes the policy moved.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.test import Client, override_settings

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
from hostguard.models import Authority, Deployment, PolicyStamp, get_tenant_model
from hostguard.policy import policy
from hostguard.snapshot import Snapshot

# hostguard.Tenant, or the site's own model (tests/settings_swapped.py runs these tests with one).
Tenant = get_tenant_model()

HERE = "eu-1"


class Row:
    """Builds the rows ``Snapshot.from_rows`` reads, one authority at a time."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def add(
        self,
        host: str,
        port: int | None = None,
        scheme: str = "",
        *,
        tenant: int = 1,
        active: bool = True,
        tenant_active: bool = True,
        deployment: str = HERE,
    ) -> int:
        pk = len(self.rows) + 1
        self.rows.append((pk, host, port, scheme, active, tenant, f"t{tenant}", tenant_active, deployment))
        return pk

    def snapshot(self, version: int = 1) -> Snapshot:
        return Snapshot.from_rows(version, iter(self.rows))


def decide(snapshot: Snapshot, host: str, port: int = 443, scheme: str = "https") -> Decision:
    return snapshot.decide(host, port, scheme, HERE)


# --- specificity, pure --------------------------------------------------------------------


def test_exact_host_beats_wildcard() -> None:
    rows = Row()
    wildcard = rows.add("*.example.com", tenant=1)
    exact = rows.add("shop.example.com", tenant=2)
    snapshot = rows.snapshot()
    assert decide(snapshot, "shop.example.com").authority_id == exact
    assert decide(snapshot, "shop.example.com").tenant_slug == "t2"
    assert decide(snapshot, "blog.example.com").authority_id == wildcard


def test_exact_host_beats_wildcard_in_either_row_order() -> None:
    rows = Row()
    exact = rows.add("shop.example.com", tenant=2)
    rows.add("*.example.com", tenant=1)
    assert decide(rows.snapshot(), "shop.example.com").authority_id == exact


def test_longer_wildcard_beats_shorter() -> None:
    rows = Row()
    short = rows.add("*.example.com", tenant=1)
    long = rows.add("*.eu.example.com", tenant=2)
    snapshot = rows.snapshot()
    assert decide(snapshot, "shop.eu.example.com").authority_id == long
    assert decide(snapshot, "a.b.eu.example.com").authority_id == long
    # eu.example.com itself is one label under *.example.com, not under *.eu.example.com.
    assert decide(snapshot, "eu.example.com").authority_id == short
    assert decide(snapshot, "shop.us.example.com").authority_id == short


def test_wildcard_does_not_match_the_apex() -> None:
    rows = Row()
    rows.add("*.example.com")
    decision = decide(rows.snapshot(), "example.com")
    assert (decision.verdict, decision.reason) == (MISDIRECTED, UNKNOWN_HOST)


def test_wildcard_matches_several_labels() -> None:
    rows = Row()
    wildcard = rows.add("*.example.com")
    snapshot = rows.snapshot()
    for host in ("a.example.com", "a.b.example.com", "x.y.z.example.com"):
        decision = decide(snapshot, host)
        assert decision.verdict == ALLOW
        assert decision.authority_id == wildcard
        assert decision.authority == "*.example.com"


@pytest.mark.parametrize("host", ["badexample.com", "example.com.evil.test", "example.co", "com", "xexample.com"])
def test_wildcard_matches_only_whole_labels(host: str) -> None:
    rows = Row()
    rows.add("*.example.com")
    rows.add("example.com")
    assert decide(rows.snapshot(), host).reason == UNKNOWN_HOST


def test_explicit_port_beats_any_port() -> None:
    rows = Row()
    any_port = rows.add("shop.example", tenant=1)
    on_8443 = rows.add("shop.example", 8443, tenant=2)
    snapshot = rows.snapshot()
    assert decide(snapshot, "shop.example", 8443).authority_id == on_8443
    assert decide(snapshot, "shop.example", 443).authority_id == any_port


def test_explicit_scheme_beats_any_scheme() -> None:
    rows = Row()
    any_scheme = rows.add("shop.example", tenant=1)
    https = rows.add("shop.example", scheme="https", tenant=2)
    snapshot = rows.snapshot()
    assert decide(snapshot, "shop.example", 443, "https").authority_id == https
    assert decide(snapshot, "shop.example", 80, "http").authority_id == any_scheme


def test_explicit_port_ranks_before_explicit_scheme() -> None:
    rows = Row()
    rows.add("shop.example", tenant=1)
    by_scheme = rows.add("shop.example", scheme="https", tenant=2)
    by_port = rows.add("shop.example", 443, tenant=3)
    both = rows.add("shop.example", 443, "https", tenant=4)
    snapshot = rows.snapshot()
    assert decide(snapshot, "shop.example", 443, "https").authority_id == both
    assert decide(snapshot, "shop.example", 443, "http").authority_id == by_port
    assert decide(snapshot, "shop.example", 8443, "https").authority_id == by_scheme


def test_host_specificity_ranks_before_port() -> None:
    rows = Row()
    exact_any_port = rows.add("shop.example.com", tenant=1)
    rows.add("*.example.com", 443, "https", tenant=2)
    assert decide(rows.snapshot(), "shop.example.com", 443, "https").authority_id == exact_any_port


def test_a_less_specific_host_wins_when_the_exact_one_does_not_admit_the_port() -> None:
    rows = Row()
    rows.add("shop.example.com", 8443, tenant=1)
    wildcard = rows.add("*.example.com", tenant=2)
    snapshot = rows.snapshot()
    assert decide(snapshot, "shop.example.com", 443).authority_id == wildcard
    assert decide(snapshot, "shop.example.com", 8443).tenant_slug == "t1"


# --- reasons, pure ------------------------------------------------------------------------


def test_port_mismatch() -> None:
    rows = Row()
    rows.add("shop.example", 8443)
    decision = decide(rows.snapshot(), "shop.example", 443)
    assert (decision.verdict, decision.reason) == (MISDIRECTED, PORT_MISMATCH)
    assert decision.tenant_id is None


def test_scheme_mismatch() -> None:
    rows = Row()
    rows.add("shop.example", scheme="https")
    decision = decide(rows.snapshot(), "shop.example", 80, "http")
    assert (decision.verdict, decision.reason) == (MISDIRECTED, SCHEME_MISMATCH)


def test_port_mismatch_is_reported_before_scheme_mismatch() -> None:
    rows = Row()
    rows.add("shop.example", 8443, "https")
    snapshot = rows.snapshot()
    assert decide(snapshot, "shop.example", 80, "http").reason == PORT_MISMATCH
    assert decide(snapshot, "shop.example", 8443, "http").reason == SCHEME_MISMATCH
    assert decide(snapshot, "shop.example", 8443, "https").verdict == ALLOW


def test_mismatch_through_a_wildcard() -> None:
    rows = Row()
    rows.add("*.example.com", scheme="https")
    assert decide(rows.snapshot(), "a.example.com", 80, "http").reason == SCHEME_MISMATCH


def test_unknown_host() -> None:
    rows = Row()
    rows.add("shop.example")
    decision = decide(rows.snapshot(), "evil.example")
    assert (decision.verdict, decision.reason) == (MISDIRECTED, UNKNOWN_HOST)
    assert decision.authority == ""


@pytest.mark.parametrize(
    ("active", "tenant_active", "deployment", "reason"),
    [
        (False, True, HERE, INACTIVE),
        (True, False, HERE, INACTIVE),
        (False, False, HERE, INACTIVE),
        (True, True, "us-1", OTHER_DEPLOYMENT),
        # A suspended tenant elsewhere is "inactive": step 6 comes before step 7.
        (True, False, "us-1", INACTIVE),
    ],
)
def test_inactive_and_other_deployment(active: bool, tenant_active: bool, deployment: str, reason: str) -> None:
    rows = Row()
    pk = rows.add("shop.example", active=active, tenant_active=tenant_active, deployment=deployment)
    decision = decide(rows.snapshot(), "shop.example")
    assert (decision.verdict, decision.reason) == (MISDIRECTED, reason)
    # The winning authority is still named, for the audit log.
    assert decision.authority_id == pk
    assert decision.deployment == deployment


def test_inactive_exact_host_is_not_skipped_for_an_active_wildcard() -> None:
    # Suspending shop.example.com must refuse it, not hand it to *.example.com's tenant.
    rows = Row()
    rows.add("shop.example.com", tenant=1, active=False)
    rows.add("*.example.com", tenant=2)
    decision = decide(rows.snapshot(), "shop.example.com")
    assert (decision.reason, decision.tenant_slug) == (INACTIVE, "t1")


def test_allow_names_the_tenant_and_authority() -> None:
    rows = Row()
    pk = rows.add("shop.example", 8443, "https", tenant=7)
    decision = decide(rows.snapshot(), "shop.example", 8443, "https")
    assert decision.verdict == ALLOW
    assert decision.allowed
    assert (decision.authority_id, decision.tenant_id, decision.tenant_slug) == (pk, 7, "t7")
    assert decision.authority == "https://shop.example:8443"
    assert (decision.host, decision.port, decision.scheme, decision.deployment) == (
        "shop.example",
        8443,
        "https",
        HERE,
    )


def test_ip_authorities() -> None:
    rows = Row()
    v4 = rows.add("192.0.2.10", tenant=1)
    v6 = rows.add("[2001:db8::1]", 8443, tenant=2)
    snapshot = rows.snapshot()
    assert decide(snapshot, "192.0.2.10").authority_id == v4
    assert decide(snapshot, "[2001:db8::1]", 8443).authority_id == v6
    assert decide(snapshot, "[2001:db8::1]", 443).reason == PORT_MISMATCH
    assert decide(snapshot, "[2001:db8::2]").reason == UNKNOWN_HOST
    assert decide(snapshot, "192.0.2.11").reason == UNKNOWN_HOST


def test_the_same_host_decides_differently_per_deployment() -> None:
    rows = Row()
    rows.add("shop.example", deployment="us-1")
    snapshot = rows.snapshot()
    assert snapshot.decide("shop.example", 443, "https", "us-1").verdict == ALLOW
    assert snapshot.decide("shop.example", 443, "https", HERE).reason == OTHER_DEPLOYMENT


def test_decisions_are_memoised_within_a_bound() -> None:
    rows = Row()
    rows.add("*.example.com")
    snapshot = rows.snapshot()
    first = decide(snapshot, "a.example.com")
    assert decide(snapshot, "a.example.com") is first
    for i in range(Snapshot.MEMO_SIZE + 100):
        assert decide(snapshot, f"h{i}.example.com").verdict == ALLOW
        assert len(snapshot._memo) <= Snapshot.MEMO_SIZE


# --- lookup cost: structural, not timed ---------------------------------------------------


class CountingDict(dict[str, Any]):
    """A dict that counts lookups and refuses to be scanned."""

    lookups = 0

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        CountingDict.lookups += 1
        return super().get(key, default)

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the lookup scanned every authority")

    def keys(self) -> Any:
        raise AssertionError("the lookup scanned every authority")

    def values(self) -> Any:
        raise AssertionError("the lookup scanned every authority")

    def items(self) -> Any:
        raise AssertionError("the lookup scanned every authority")


def big_snapshot(extra: int) -> Snapshot:
    rows = Row()
    # A wildcard at every level of the host under test, plus the exact host...
    for pattern in ("*.com", "*.example.com", "*.b.example.com", "*.c.b.example.com", "d.c.b.example.com"):
        rows.add(pattern)
    # ...and many unrelated authorities, exact and wildcard.
    for i in range(extra):
        rows.add(f"tenant{i}.example.org", tenant=i + 2)
        rows.add(f"*.tenant{i}.example.net", tenant=i + 2)
    snapshot = rows.snapshot()
    snapshot._exact = CountingDict(snapshot._exact)
    snapshot._wild = CountingDict(snapshot._wild)
    return snapshot


@pytest.mark.parametrize("extra", [0, 10, 5000])
def test_candidates_walk_the_labels_not_the_authorities(extra: int) -> None:
    host = "d.c.b.example.com"
    labels = host.count(".") + 1
    snapshot = big_snapshot(extra)
    assert snapshot.size == 5 + 2 * extra
    CountingDict.lookups = 0
    groups = list(snapshot.candidates(host))
    # At most one group per label (the exact host, then one wildcard per parent),
    # and one dict lookup per label: the same for 5 authorities and for 10 005.
    assert len(groups) <= labels
    assert CountingDict.lookups <= labels
    # Most specific pattern first.
    assert [group[0][5] for group in groups] == [
        "d.c.b.example.com",
        "*.c.b.example.com",
        "*.b.example.com",
        "*.example.com",
        "*.com",
    ]


def test_candidates_for_an_ip_literal_skip_wildcards() -> None:
    snapshot = big_snapshot(10)
    CountingDict.lookups = 0
    assert list(snapshot.candidates("[2001:db8::1]")) == []
    assert CountingDict.lookups <= 1


# --- the same rules through real models -----------------------------------------------------


def make_tenant(slug: str, deployment: str = HERE, *, active: bool = True) -> Tenant:
    dep, _ = Deployment.objects.get_or_create(name=deployment)
    return Tenant.objects.create(name=slug.title(), slug=slug, deployment=dep, is_active=active)


def db_decide(host: str, port: int = 443, scheme: str = "https") -> Decision:
    return policy.refresh().decide(host, port, scheme, HERE)


@pytest.mark.django_db
class TestFromModels:
    def test_exact_over_wildcard(self) -> None:
        acme, globex = make_tenant("acme"), make_tenant("globex")
        Authority.objects.create(tenant=acme, host="*.Example.com")
        Authority.objects.create(tenant=globex, host="Shop.Example.com.")
        assert db_decide("shop.example.com").tenant_slug == "globex"
        assert db_decide("a.b.example.com").tenant_slug == "acme"
        assert db_decide("example.com").reason == UNKNOWN_HOST

    def test_longer_wildcard_over_shorter(self) -> None:
        acme, globex = make_tenant("acme"), make_tenant("globex")
        Authority.objects.create(tenant=acme, host="*.example.com")
        Authority.objects.create(tenant=globex, host="*.eu.example.com")
        assert db_decide("x.eu.example.com").tenant_slug == "globex"
        assert db_decide("x.us.example.com").tenant_slug == "acme"

    def test_port_and_scheme(self) -> None:
        acme, globex, initech = make_tenant("acme"), make_tenant("globex"), make_tenant("initech")
        Authority.objects.create(tenant=acme, host="shop.example")
        Authority.objects.create(tenant=globex, host="shop.example", port=8443)
        Authority.objects.create(tenant=initech, host="shop.example", scheme="https")
        assert db_decide("shop.example", 8443, "http").tenant_slug == "globex"
        assert db_decide("shop.example", 443, "https").tenant_slug == "initech"
        assert db_decide("shop.example", 80, "http").tenant_slug == "acme"

    def test_port_and_scheme_mismatch(self) -> None:
        acme = make_tenant("acme")
        Authority.objects.create(tenant=acme, host="api.example", port=8443)
        Authority.objects.create(tenant=acme, host="secure.example", scheme="https")
        assert db_decide("api.example", 443).reason == PORT_MISMATCH
        assert db_decide("secure.example", 80, "http").reason == SCHEME_MISMATCH

    def test_inactive_and_other_deployment(self) -> None:
        Authority.objects.create(tenant=make_tenant("acme", active=False), host="suspended.example")
        Authority.objects.create(tenant=make_tenant("globex"), host="off.example", is_active=False)
        Authority.objects.create(tenant=make_tenant("initech", "us-1"), host="moved.example")
        assert db_decide("suspended.example").reason == INACTIVE
        assert db_decide("off.example").reason == INACTIVE
        moved = db_decide("moved.example")
        assert (moved.reason, moved.deployment) == (OTHER_DEPLOYMENT, "us-1")

    def test_ip_authorities(self) -> None:
        acme = make_tenant("acme")
        Authority.objects.create(tenant=acme, host="192.0.2.10")
        Authority.objects.create(tenant=acme, host="2001:DB8::1", port=8443)
        assert db_decide("192.0.2.10").verdict == ALLOW
        assert db_decide("[2001:db8::1]", 8443).verdict == ALLOW
        assert db_decide("[2001:db8::1]", 443).reason == PORT_MISMATCH


# --- the version stamp ---------------------------------------------------------------------------


def stamp() -> int:
    version: int | None = PolicyStamp.objects.filter(pk=1).values_list("version", flat=True).first()
    return version or 0


def whoami(client: Client, host: str) -> Any:
    return client.get("/api/whoami", headers={"host": host})


@pytest.mark.django_db
class TestStamp:
    def test_a_save_bumps_the_stamp(self) -> None:
        tenant = make_tenant("acme")
        before = stamp()
        authority = Authority.objects.create(tenant=tenant, host="shop.example")
        assert stamp() == before + 1
        authority.is_active = False
        authority.save()
        assert stamp() == before + 2
        authority.delete()
        assert stamp() == before + 3

    def test_tenant_and_deployment_saves_bump_the_stamp(self) -> None:
        tenant = make_tenant("acme")
        before = stamp()
        tenant.deployment = Deployment.objects.create(name="us-1")
        assert stamp() == before + 1
        tenant.save()
        assert stamp() == before + 2

    @override_settings(HOSTGUARD_DEPLOYMENT=HERE)
    def test_queryset_update_is_seen_by_the_next_request(self, client: Client) -> None:
        Authority.objects.create(tenant=make_tenant("acme"), host="shop.example")
        assert whoami(client, "shop.example").json()["tenant"] == "acme"
        before = stamp()
        assert Authority.objects.filter(host="shop.example").update(is_active=False) == 1
        assert stamp() == before + 1
        response = whoami(client, "shop.example")
        assert response.status_code == 421
        assert response.json()["error"] == "misdirected_request"

    @override_settings(HOSTGUARD_DEPLOYMENT=HERE)
    def test_tenant_update_moving_it_away_is_seen_by_the_next_request(self, client: Client) -> None:
        tenant = make_tenant("acme")
        Authority.objects.create(tenant=tenant, host="shop.example")
        assert whoami(client, "shop.example").status_code == 200
        Tenant.objects.filter(pk=tenant.pk).update(deployment=Deployment.objects.create(name="us-1"))
        assert whoami(client, "shop.example").status_code == 421

    def test_an_update_that_matches_nothing_does_not_bump(self) -> None:
        before = stamp()
        assert Authority.objects.filter(host="nothing.example").update(is_active=False) == 0
        assert stamp() == before

    @override_settings(HOSTGUARD_DEPLOYMENT=HERE)
    def test_bulk_create_is_seen_by_the_next_request(self, client: Client) -> None:
        tenant = make_tenant("acme")
        assert whoami(client, "a.example").status_code == 421
        before = stamp()
        Authority.objects.bulk_create([Authority(tenant=tenant, host=f"{x}.example") for x in "abc"])
        assert stamp() == before + 1
        assert whoami(client, "a.example").json()["tenant"] == "acme"
        assert whoami(client, "c.example").json()["tenant"] == "acme"

    @override_settings(HOSTGUARD_DEPLOYMENT=HERE)
    def test_bulk_update_is_seen_by_the_next_request(self, client: Client) -> None:
        tenant = make_tenant("acme")
        authority = Authority.objects.create(tenant=tenant, host="shop.example")
        assert whoami(client, "shop.example").status_code == 200
        authority.is_active = False
        before = stamp()
        Authority.objects.bulk_update([authority], ["is_active"])
        # bulk_update runs update() underneath, so the stamp may move more than once.
        assert stamp() > before
        assert whoami(client, "shop.example").status_code == 421

    @override_settings(HOSTGUARD_DEPLOYMENT=HERE)
    def test_queryset_delete_is_seen_by_the_next_request(self, client: Client) -> None:
        Authority.objects.create(tenant=make_tenant("acme"), host="shop.example")
        assert whoami(client, "shop.example").status_code == 200
        Authority.objects.filter(host="shop.example").delete()
        assert whoami(client, "shop.example").status_code == 421

    def test_batch_bumps_once_for_many_saves(self) -> None:
        tenant = make_tenant("acme")
        before = stamp()
        with policy.batch():
            for i in range(10):
                Authority.objects.create(tenant=tenant, host=f"h{i}.example")
            Authority.objects.filter(host="h0.example").update(is_active=False)
            with policy.batch():  # nested batches still bump once, at the outer end
                Authority.objects.create(tenant=tenant, host="nested.example")
            assert stamp() == before
        assert stamp() == before + 1
        assert db_decide("h9.example").verdict == ALLOW
        assert db_decide("h0.example").reason == INACTIVE

    def test_batch_without_writes_does_not_bump(self) -> None:
        before = stamp()
        with policy.batch():
            pass
        assert stamp() == before

    def test_batch_bumps_even_when_its_body_fails(self, django_capture_on_commit_callbacks: Any) -> None:
        tenant = make_tenant("acme")
        before = stamp()

        def fail_in_batch() -> None:
            with policy.batch():
                Authority.objects.create(tenant=tenant, host="h.example")
                raise RuntimeError

        # Outside the test's transaction, on-commit work runs at once (autocommit).
        with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
            fail_in_batch()
        # The row was written (no transaction around the batch), so the stamp moves.
        assert Authority.objects.filter(host="h.example").exists()
        assert stamp() == before + 1


# serialized_rollback puts back the stamp row the migration created, which the
# flush after a transactional test would otherwise leave missing for later tests.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
class TestStampTransactions:
    def test_a_committed_save_bumps_the_stamp(self) -> None:
        tenant = make_tenant("acme")
        before = stamp()
        with transaction.atomic():
            Authority.objects.create(tenant=tenant, host="shop.example")
        assert stamp() == before + 1

    def test_a_rolled_back_save_leaves_the_stamp(self) -> None:
        tenant = make_tenant("acme")
        before = stamp()

        def roll_back() -> None:
            with transaction.atomic():
                Authority.objects.create(tenant=tenant, host="shop.example")
                Authority.objects.filter(host="shop.example").update(is_active=False)
                raise RuntimeError("roll back")

        with pytest.raises(RuntimeError):
            roll_back()
        assert stamp() == before
        assert not Authority.objects.exists()
        assert db_decide("shop.example").reason == UNKNOWN_HOST

    def test_a_database_error_inside_a_batch_is_not_masked(self) -> None:
        tenant = make_tenant("acme")
        Authority.objects.create(tenant=tenant, host="taken.example")
        before = stamp()

        def clash() -> None:
            with transaction.atomic(), policy.batch():
                Authority.objects.create(tenant=tenant, host="new.example")
                # On PostgreSQL this aborts the transaction: the batch must not then try
                # to write the stamp, which would replace this error with another.
                Authority.objects.create(tenant=tenant, host="taken.example")

        with pytest.raises(IntegrityError):
            clash()
        assert stamp() == before
        assert not Authority.objects.filter(host="new.example").exists()

    def test_a_batch_that_raises_inside_a_committed_transaction_still_publishes(self) -> None:
        tenant = make_tenant("acme")
        before = stamp()

        def fail_in_batch() -> None:
            with policy.batch():
                Authority.objects.create(tenant=tenant, host="shop.example")
                raise RuntimeError("caught by the caller, who commits what was written")

        with transaction.atomic(), pytest.raises(RuntimeError):
            fail_in_batch()
        assert stamp() == before + 1
        assert db_decide("shop.example").verdict == "allow"

    def test_a_rolled_back_batch_leaves_the_stamp(self) -> None:
        tenant = make_tenant("acme")
        before = stamp()

        def roll_back() -> None:
            with transaction.atomic(), policy.batch():
                Authority.objects.create(tenant=tenant, host="shop.example")
                raise RuntimeError("roll back")

        with pytest.raises(RuntimeError):
            roll_back()
        assert stamp() == before
        assert not Authority.objects.exists()

    def test_a_rolled_back_savepoint_keeps_the_outer_bump(self) -> None:
        tenant = make_tenant("acme")
        before = stamp()

        def roll_back_savepoint() -> None:
            with transaction.atomic():
                Authority.objects.create(tenant=tenant, host="dropped.example")
                raise RuntimeError("roll back the savepoint")

        with transaction.atomic():
            Authority.objects.create(tenant=tenant, host="kept.example")
            with pytest.raises(RuntimeError):
                roll_back_savepoint()
        assert list(Authority.objects.values_list("host", flat=True)) == ["kept.example"]
        assert stamp() == before + 1
        assert db_decide("kept.example").verdict == ALLOW
        assert db_decide("dropped.example").reason == UNKNOWN_HOST
