"""``request.tenant``: an instance of the tenant model made from the snapshot, with no query.

Runs with hostguard's Tenant and (``make test``) again with the site's own model of
tests/orgs, whose fields ``plan``, ``seats`` and ``founded`` the snapshot also carries.
"""

from __future__ import annotations

import copy
import pickle
from datetime import date
from typing import Any

import pytest
from django.db.models import DEFERRED
from django.db.models.signals import post_init, pre_init
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings

from hostguard import tenants
from hostguard.middleware import HostGuardMiddleware
from hostguard.models import Deployment, get_tenant_model
from hostguard.policy import policy
from hostguard.test import TenantClient, serve_tenant

pytestmark = pytest.mark.django_db

Tenant = get_tenant_model()
SWAPPED = Tenant._meta.label != "hostguard.Tenant"


def gate(seen: list[HttpRequest]) -> HostGuardMiddleware:
    """The middleware in front of a view that keeps its request."""

    def view(request: HttpRequest) -> HttpResponse:
        seen.append(request)
        return HttpResponse("ok")

    return HostGuardMiddleware(view)


def test_the_fields_the_snapshot_carries_cost_no_query(rf: Any, django_assert_num_queries: Any) -> None:
    acme = serve_tenant("acme", name="Acme Corp", host="acme.example")
    seen: list[HttpRequest] = []
    middleware = gate(seen)
    policy.refresh()
    with django_assert_num_queries(0):
        for _ in range(2):  # in full, then from the remembered allow
            assert middleware(rf.get("/", HTTP_HOST="acme.example")).status_code == 200
        for request in seen:
            tenant = request.tenant  # type: ignore[attr-defined]
            assert isinstance(tenant, Tenant)
            assert (tenant.pk, tenant.slug, tenant.name, tenant.is_active) == (acme.pk, "acme", "Acme Corp", True)
            assert (tenant.deployment_id, tenant.deployment.name) == (acme.deployment_id, "local")
            assert tenant == acme
            assert str(tenant) == "Acme Corp"


def test_other_fields_load_on_first_access_like_deferred_fields(rf: Any, django_assert_num_queries: Any) -> None:
    acme = serve_tenant("acme", host="acme.example")
    Deployment.objects.filter(pk=acme.deployment_id).update(description="Frankfurt")
    seen: list[HttpRequest] = []
    gate(seen)(rf.get("/", HTTP_HOST="acme.example"))
    tenant = seen[0].tenant  # type: ignore[attr-defined]
    carried = {"id", "slug", "name", "deployment_id", "is_active", *(["plan", "seats", "founded"] if SWAPPED else [])}
    assert tenant.get_deferred_fields() == {field.attname for field in Tenant._meta.concrete_fields} - carried
    assert tenant.deployment.get_deferred_fields() == {"description"}
    with django_assert_num_queries(1):
        assert tenant.deployment.description == "Frankfurt"


@pytest.mark.swapped
def test_a_site_model_s_listed_fields_are_carried_and_the_rest_load_when_read(
    rf: Any, django_assert_num_queries: Any
) -> None:
    serve_tenant("acme", host="acme.example", plan="gold", seats=12, founded=date(2020, 2, 29), notes="VIP")
    seen: list[HttpRequest] = []
    gate(seen)(rf.get("/", HTTP_HOST="acme.example"))
    tenant = seen[0].tenant  # type: ignore[attr-defined]
    with django_assert_num_queries(0):
        # As a queryset would give them: the backend's conversions apply (SQLite keeps dates as text).
        assert (tenant.plan, tenant.seats, tenant.founded) == ("gold", 12, date(2020, 2, 29))
    with django_assert_num_queries(1):
        assert tenant.notes == "VIP"
    with django_assert_num_queries(1):
        assert tenant.parent is None


@pytest.mark.swapped
def test_a_change_to_a_listed_field_reaches_the_next_request(client: Client) -> None:
    acme = serve_tenant("acme", plan="free")
    tenant_client = TenantClient(acme)
    assert tenant_client.get("/api/tenant").wsgi_request.tenant.plan == "free"
    acme.plan = "gold"
    acme.save()
    assert tenant_client.get("/api/tenant").wsgi_request.tenant.plan == "gold"
    Tenant.objects.filter(pk=acme.pk).update(seats=40)  # a bulk write, re-read as a delta
    assert tenant_client.get("/api/tenant").wsgi_request.tenant.seats == 40


def test_a_view_that_changes_its_tenant_changes_nobody_else_s(rf: Any) -> None:
    serve_tenant("acme", name="Acme", host="acme.example")

    def meddling(request: HttpRequest) -> HttpResponse:
        before = request.tenant.name  # type: ignore[attr-defined]
        request.tenant.name = "Changed"  # type: ignore[attr-defined]
        request.tenant.deployment.name = "elsewhere"  # type: ignore[attr-defined]
        return HttpResponse(before)

    middleware = HostGuardMiddleware(meddling)
    answers = [middleware(rf.get("/", HTTP_HOST="acme.example")).content for _ in range(3)]
    assert answers == [b"Acme", b"Acme", b"Acme"]
    # Nor the policy's: the next request is still served by this deployment.
    assert middleware(rf.get("/", HTTP_HOST="acme.example")).status_code == 200


def test_a_saved_change_is_in_the_next_request_s_tenant() -> None:
    acme = serve_tenant("acme", name="Acme")
    client = TenantClient(acme)
    assert client.get("/api/tenant").json()["tenant"]["name"] == "Acme"
    acme.name = "Acme Renamed"
    acme.save()
    assert client.get("/api/tenant").json()["tenant"] == {
        "id": acme.pk,
        "slug": "acme",
        "name": "Acme Renamed",
        "active": True,
        "deployment": "local",
    }


def test_the_demo_view_costs_no_query(django_assert_num_queries: Any) -> None:
    client = TenantClient(serve_tenant("acme"))
    client.get("/api/tenant")  # the first request reads the snapshot
    with django_assert_num_queries(0):
        for _ in range(3):
            assert client.get("/api/tenant").json()["tenant"]["slug"] == "acme"


@override_settings(HOSTGUARD_MODE="report", ALLOWED_HOSTS=["*"])
def test_report_mode_hands_out_the_tenant_of_a_would_be_refusal(rf: Any, django_assert_num_queries: Any) -> None:
    serve_tenant("acme", host="acme.example")
    globex = serve_tenant("globex", host="globex.example")
    globex.deployment = Deployment.objects.create(name="remote")
    globex.save()
    seen: list[HttpRequest] = []
    middleware = gate(seen)
    policy.refresh()
    with django_assert_num_queries(0):
        assert middleware(rf.get("/", HTTP_HOST="globex.example")).status_code == 200
        assert seen[0].hostguard.reported  # type: ignore[attr-defined]
        assert seen[0].tenant.slug == "globex"  # type: ignore[attr-defined]
        assert seen[0].tenant.deployment.name == "remote"  # type: ignore[attr-defined]


# --- the one helper that makes instances, pinned against Django's from_db() ------------


def _from_db(values: dict[str, Any]) -> Any:
    fields = [field.attname for field in Tenant._meta.concrete_fields if field.attname in values]
    return Tenant.from_db("default", fields, [values[name] for name in fields])


def test_an_instance_is_what_from_db_makes() -> None:
    values = {"id": 7, "slug": "acme", "name": "Acme", "deployment_id": 3, "is_active": False}
    made = tenants.fill(Tenant.__new__(Tenant), Tenant, "default", dict(values))
    expected = _from_db(values)
    assert type(made) is Tenant
    assert {k: v for k, v in made.__dict__.items() if k != "_state"} == {
        k: v for k, v in expected.__dict__.items() if k != "_state"
    }
    assert made.get_deferred_fields() == expected.get_deferred_fields()
    assert (made._state.adding, made._state.db) == (False, "default") == (expected._state.adding, expected._state.db)
    assert made == expected
    assert hash(made) == hash(expected)


def test_init_signal_receivers_see_every_instance(rf: Any) -> None:
    seen: list[Any] = []

    def receiver(sender: Any, instance: Any = None, args: Any = None, **kwargs: Any) -> None:
        seen.append(instance if instance is not None else tuple(args))

    post_init.connect(receiver, sender=Tenant)
    pre_init.connect(receiver, sender=Tenant)
    try:
        values = {"id": 7, "slug": "acme", "name": "Acme", "deployment_id": 3}
        made = tenants.fill(Tenant.__new__(Tenant), Tenant, "default", dict(values))
        expected = _from_db(values)
        serve_tenant("acme", host="acme.example")
        tenant = _pending(rf)
        assert tenant.slug == "acme"
    finally:
        post_init.disconnect(receiver, sender=Tenant)
        pre_init.disconnect(receiver, sender=Tenant)
    # pre_init gets the arguments from_db() gives Model.__init__ (its order, deferred ones marked).
    assert seen[0] == seen[2]
    assert seen[0][:4] == (7, "Acme", "acme", 3)
    assert DEFERRED in seen[0]  # is_active (and a site's own fields) were not given
    assert seen[1] is made
    assert seen[3] is expected
    assert seen[-1] is tenant  # the request's own object, become an instance
    assert not made._state.adding


def _pending(rf: Any, host: str = "acme.example") -> Any:
    seen: list[HttpRequest] = []
    gate(seen)(rf.get("/", HTTP_HOST=host))
    return seen[0].tenant  # type: ignore[attr-defined]


def test_request_tenant_becomes_the_instance_when_first_used(rf: Any) -> None:
    acme = serve_tenant("acme", host="acme.example")
    tenant = _pending(rf)
    assert type(tenant) is tenants.LazyTenant  # nothing made yet
    assert isinstance(tenant, Tenant)
    assert type(tenant) is tenants.LazyTenant  # isinstance() alone makes nothing
    assert tenant.slug == "acme"
    assert type(tenant) is Tenant  # the very object is the instance now
    assert tenant == acme
    assert tenant.get_deferred_fields() == _pending(rf).get_deferred_fields()


@pytest.mark.parametrize(
    "use",
    [
        lambda tenant, acme: tenant == acme,
        lambda tenant, acme: hash(tenant) == hash(acme),
        lambda tenant, acme: str(tenant) == str(acme),
        lambda tenant, acme: repr(tenant) == repr(acme),
        lambda tenant, acme: "slug" in dir(tenant),
        lambda tenant, acme: pickle.loads(pickle.dumps(tenant)) == acme,
        lambda tenant, acme: copy.copy(tenant) == acme,
        lambda tenant, acme: f"{tenant}" == acme.name,
    ],
)
def test_every_use_of_request_tenant_sees_the_instance(rf: Any, use: Any) -> None:
    acme = serve_tenant("acme", host="acme.example")
    assert use(_pending(rf), acme)


def test_setting_an_attribute_first_sets_it_on_the_instance(rf: Any) -> None:
    serve_tenant("acme", name="Acme", host="acme.example")
    tenant = _pending(rf)
    tenant.name = "Changed"
    del tenant.slug  # as on any instance: the field is deferred again
    assert type(tenant) is Tenant
    assert tenant.name == "Changed"
    assert "slug" in tenant.get_deferred_fields()


def test_the_deployment_comes_from_the_snapshot_only_for_request_tenant(
    rf: Any, django_assert_num_queries: Any
) -> None:
    acme = serve_tenant("acme", host="acme.example")
    remote = Deployment.objects.create(name="remote")
    policy.refresh()  # the snapshot that knows "remote" too
    tenant = _pending(rf)
    with django_assert_num_queries(0):
        assert tenant.deployment.name == "local"
        tenant.deployment_id = remote.pk  # as a view may, before saving
        assert tenant.deployment.name == "remote"
    # An instance from the ORM reads its deployment from the database, as always.
    with django_assert_num_queries(2):
        assert Tenant.objects.get(pk=acme.pk).deployment.name == "local"
