"""Write paths that must name what they touch: each one, applied as a delta, decides as a
full read does (found by review; each failed before the fix it proves).

Old hosts come from the database, read and locked in the writer's transaction — never
from an instance that may have been read long ago, or never.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import Client, override_settings

from hostguard import store
from hostguard.models import Authority, Deployment, Tenant
from hostguard.policy import policy

HERE = "eu-1"


@pytest.fixture
def world(db: None) -> dict[str, Any]:
    eu = Deployment.objects.create(name=HERE)
    t = Tenant.objects.create(slug="t", name="T", deployment=eu)
    return {"eu": eu, "t": t}


def verdicts(snapshot: Any, host: str) -> str:
    return snapshot._decide(host, 443, "https", HERE).verdict


def compare(host: str) -> tuple[str, str]:
    current = policy.advance()
    fresh = store.full()
    return verdicts(current, host), verdicts(fresh, host)


def test_delete_of_unread_instance(world: dict[str, Any]) -> None:
    a = Authority.objects.create(host="gone.example", tenant=world["t"])
    policy.refresh()
    Authority(pk=a.pk).delete()
    assert not Authority.objects.filter(pk=a.pk).exists()
    assert compare("gone.example") == ("misdirected", "misdirected")


def test_rehost_of_unread_instance(world: dict[str, Any]) -> None:
    a = Authority.objects.create(host="old.example", tenant=world["t"])
    policy.refresh()
    Authority(pk=a.pk, host="new.example", tenant=world["t"], created_at=a.created_at).save()
    assert compare("old.example") == ("misdirected", "misdirected")


def test_rehost_with_deferred_host(world: dict[str, Any]) -> None:
    Authority.objects.create(host="old.example", tenant=world["t"])
    policy.refresh()
    a = Authority.objects.only("id", "tenant").get()
    a.host = "new.example"
    a.save()
    assert compare("old.example") == ("misdirected", "misdirected")


def test_rehost_after_refresh_from_db(world: dict[str, Any]) -> None:
    a = Authority.objects.create(host="h1.example", tenant=world["t"])
    stale = Authority.objects.get(pk=a.pk)  # stored_host h1
    Authority.objects.filter(pk=a.pk).update(host="h2.example")
    policy.refresh()  # snapshot: a at h2
    stale.refresh_from_db()
    stale.host = "h3.example"
    stale.save()
    assert compare("h2.example") == ("misdirected", "misdirected")


def test_concurrent_editors_stale_instance(world: dict[str, Any]) -> None:
    a = Authority.objects.create(host="h1.example", tenant=world["t"])
    editor1 = Authority.objects.get(pk=a.pk)
    editor2 = Authority.objects.get(pk=a.pk)
    editor1.host = "h2.example"
    editor1.save()
    policy.refresh()  # snapshot: a at h2
    editor2.host = "h3.example"  # last writer wins in the DB
    editor2.save()
    assert compare("h2.example") == ("misdirected", "misdirected")


def test_update_fields_without_host_then_rehost(world: dict[str, Any]) -> None:
    a = Authority.objects.create(host="h1.example", tenant=world["t"])
    a.host = "typo.example"
    a.save(update_fields=["note"])  # host not written
    policy.refresh()
    a.host = "h3.example"
    a.save()
    assert compare("h1.example") == ("misdirected", "misdirected")


def test_bulk_create_update_conflicts_on_id(world: dict[str, Any]) -> None:
    a = Authority.objects.create(host="old.example", tenant=world["t"])
    policy.refresh()
    Authority.objects.bulk_create(
        [Authority(pk=a.pk, host="new.example", tenant=world["t"])],
        update_conflicts=True,
        unique_fields=["id"],
        update_fields=["host"],
    )
    assert Authority.objects.get().host == "new.example"
    assert compare("old.example") == ("misdirected", "misdirected")


def test_loaddata_overwrites_host(world: dict[str, Any]) -> None:
    a = Authority.objects.create(host="old.example", tenant=world["t"])
    policy.refresh()
    data = [
        {
            "model": "hostguard.authority",
            "pk": a.pk,
            "fields": {
                "host": "new.example",
                "port": None,
                "scheme": "",
                "tenant": world["t"].pk,
                "is_active": True,
                "note": "",
                "created_at": "2024-01-01T00:00:00Z",
                "updated_at": "2024-01-01T00:00:00Z",
            },
        }
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(data, f)
    try:
        call_command("loaddata", f.name, stdout=io.StringIO())
    finally:
        os.unlink(f.name)
    assert Authority.objects.get().host == "new.example"
    assert compare("old.example") == ("misdirected", "misdirected")


def test_delete_with_deferred_host(world: dict[str, Any]) -> None:
    Authority.objects.create(host="x.example", tenant=world["t"])
    Authority.objects.only("id").delete()
    assert not Authority.objects.exists()


def test_negative_id_full_read(world: dict[str, Any]) -> None:
    Authority.objects.create(pk=-5, host="neg.example", tenant=world["t"])
    fresh = store.full()
    assert verdicts(fresh, "neg.example") == "allow", fresh._decide("neg.example", 443, "https", HERE)


def test_very_negative_id_full_read(world: dict[str, Any]) -> None:
    Authority.objects.create(pk=-(2**40), host="neg.example", tenant=world["t"])
    Authority.objects.create(host="ok.example", tenant=world["t"])
    fresh = store.full()
    assert verdicts(fresh, "ok.example") == "allow"


@pytest.mark.parametrize("pk", [2**31 - 1, 2**31, 3_000_000_000, 2**32, 2**40, 2**62])
def test_big_ids(world: dict[str, Any], pk: int) -> None:
    policy.refresh()
    Authority.objects.create(pk=pk, host="big.example", tenant=world["t"])
    Authority.objects.create(pk=pk + 1, host="big.example", port=8443, tenant=world["t"])
    cur = policy.advance().compacted()
    fresh = store.full()
    for p in (443, 8443):
        a, b = cur._decide("big.example", p, "https", HERE), fresh._decide("big.example", p, "https", HERE)
        assert a == b
        assert a.verdict == "allow"


def _same(hosts: list[str]) -> None:
    current = policy.advance()
    fresh = store.full()
    for h in hosts:
        for port in (443, 8443):
            assert current._decide(h, port, "https", HERE) == fresh._decide(h, port, "https", HERE), h


def test_the_common_write_paths_agree_with_a_full_read(world: dict[str, Any]) -> None:
    t = world["t"]
    us = Deployment.objects.create(name="us-1")
    t2 = Tenant.objects.create(slug="t2", name="T2", deployment=world["eu"])
    policy.refresh()
    Authority.objects.update_or_create(host="u.example", defaults={"tenant": t})
    Authority.objects.update_or_create(host="u.example", defaults={"host": "u2.example", "tenant": t})
    Authority.objects.get_or_create(host="g.example", defaults={"tenant": t})
    _same(["u.example", "u2.example", "g.example"])
    a = Authority.objects.get(host="g.example")
    a.refresh_from_db()
    a.host = "g2.example"
    a.save(update_fields=["host"])
    _same(["g.example", "g2.example"])
    Authority.objects.filter(host="g2.example").update(tenant=t2)
    Tenant.objects.filter(pk=t2.pk).update(deployment=us)
    _same(["g2.example"])
    Authority.objects.bulk_update([Authority(pk=a.pk, host="g3.example", tenant=t2)], ["host"])
    _same(["g2.example", "g3.example"])
    t2.delete()
    _same(["g2.example", "g3.example", "u2.example"])
    Tenant.objects.bulk_create(
        [Tenant(slug="t", name="X", deployment=us)],
        update_conflicts=True,
        unique_fields=["slug"],
        update_fields=["deployment"],
    )
    _same(["u2.example"])
    assert store.full()._decide("u2.example", 443, "https", HERE).reason == "other_deployment"


@override_settings(HOSTGUARD_DEPLOYMENT="local")
def test_a_rolled_back_write_leaves_the_snapshot_and_the_next_change_arrives(db: None, client: Client) -> None:
    dep = Deployment.objects.create(name="local")
    t = Tenant.objects.create(slug="acme", name="Acme", deployment=dep)
    Authority.objects.create(host="acme.example", tenant=t)
    assert client.get("/api/whoami", headers={"host": "acme.example"}).status_code == 200
    seen_inside: list[int] = []

    def roll_back() -> None:
        with transaction.atomic():
            Authority.objects.create(host="rolled.example", tenant=t)
            seen_inside.append(client.get("/api/whoami", headers={"host": "rolled.example"}).status_code)
            raise RuntimeError("form invalid, roll back")

    with pytest.raises(RuntimeError):
        roll_back()
    assert seen_inside == [200]  # the thread that wrote saw its own write
    # The next committed change reuses the rolled-back version's number: told apart by its token.
    Authority.objects.create(host="real.example", tenant=t)
    rolled = client.get("/api/whoami", headers={"host": "rolled.example"}).status_code
    real = client.get("/api/whoami", headers={"host": "real.example"}).status_code
    assert (rolled, real) == (421, 200)
