"""The gate's shortcuts answer exactly what the full decision would, whatever changes.

hostguard remembers allow decisions per (Host, scheme) and snapshot, negotiates a
refusal's language once per (cookie, Accept-Language), and prepares refusal bodies
and headers once: each test serves a request to fill those, changes one thing, and
checks the next answer follows the change.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.test import Client, override_settings

from hostguard.models import Authority, Deployment, get_tenant_model
from hostguard.policy import policy

# hostguard.Tenant, or the site's own model (tests/settings_swapped.py runs these tests with one).
Tenant = get_tenant_model()

pytestmark = pytest.mark.django_db


def make_tenant(slug: str, deployment: str, *authorities: str | dict[str, Any]) -> Tenant:
    dep, _ = Deployment.objects.get_or_create(name=deployment)
    tenant = Tenant.objects.create(name=slug.title(), slug=slug, deployment=dep)
    for spec in authorities:
        fields = {"host": spec} if isinstance(spec, str) else spec
        Authority.objects.create(tenant=tenant, **fields)
    return tenant


def whoami(client: Client, host: str, headers: dict[str, str] | None = None, **extra: Any) -> Any:
    return client.get("/api/whoami", headers={"host": host, **(headers or {})}, **extra)


@pytest.fixture
def acme() -> Tenant:
    return make_tenant("acme", "local", "acme.example", {"host": "secure.acme.example", "scheme": "https"})


def test_a_moved_tenant_is_refused_on_the_next_request(client: Client, acme: Tenant) -> None:
    assert whoami(client, "acme.example").json()["tenant"] == "acme"
    assert whoami(client, "acme.example").status_code == 200
    acme.deployment = Deployment.objects.create(name="remote")
    acme.save()
    response = whoami(client, "acme.example")
    assert response.status_code == 421
    assert response.json()["error"] == "misdirected_request"


def test_a_deleted_authority_is_refused_after_a_refresh_from_elsewhere(client: Client, acme: Tenant) -> None:
    assert whoami(client, "acme.example").status_code == 200
    Authority.objects.filter(host="acme.example").delete()
    policy.refresh()
    assert whoami(client, "acme.example").status_code == 421


def test_a_settings_change_is_honoured_at_once(client: Client, acme: Tenant) -> None:
    assert whoami(client, "acme.example").status_code == 200
    with override_settings(HOSTGUARD_DEPLOYMENT="remote"):
        assert whoami(client, "acme.example").status_code == 421
    assert whoami(client, "acme.example").status_code == 200
    with override_settings(HOSTGUARD_ALWAYS_ALLOW=["acme.example"]):
        assert whoami(client, "acme.example").json()["tenant"] is None


def test_the_scheme_follows_secure_proxy_ssl_header(client: Client, acme: Tenant) -> None:
    forwarded = {"HTTP_X_FORWARDED_PROTO": "https"}
    assert whoami(client, "secure.acme.example", **forwarded).status_code == 421
    with override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https")):
        assert whoami(client, "secure.acme.example", **forwarded).status_code == 200
        assert whoami(client, "secure.acme.example").status_code == 421
    assert whoami(client, "secure.acme.example", **forwarded).status_code == 421
    assert whoami(client, "secure.acme.example", secure=True).status_code == 200


def test_a_remembered_host_still_meets_forwarded_headers_and_absolute_targets(client: Client, acme: Tenant) -> None:
    assert whoami(client, "acme.example").status_code == 200
    with override_settings(USE_X_FORWARDED_HOST=True):
        assert whoami(client, "acme.example", HTTP_X_FORWARDED_HOST="evil.example").status_code == 421
    # An absolute-form target that names another host than Host is malformed.
    assert whoami(client, "acme.example", RAW_URI="http://evil.example/api/whoami").status_code == 400
    assert whoami(client, "acme.example", RAW_URI="http://acme.example/api/whoami").status_code == 200


def test_an_always_allowed_host_is_remembered_without_a_tenant(client: Client, acme: Tenant) -> None:
    from hostguard.middleware import remembered

    with override_settings(HOSTGUARD_ALWAYS_ALLOW=["ops.example"]):
        assert whoami(client, "acme.example").json()["tenant"] == "acme"
        for _ in range(2):  # decided in full, then from memory
            response = whoami(client, "ops.example")
            assert response.status_code == 200
            assert response.json()["tenant"] is None
            assert response.wsgi_request.tenant is None
        assert ("ops.example", "http") in remembered.entries
        assert whoami(client, "acme.example").json()["tenant"] == "acme"
    assert whoami(client, "ops.example").status_code == 421


def test_request_tenant_costs_no_query_on_either_path(
    client: Client, acme: Tenant, django_assert_num_queries: Any, rf: Any
) -> None:
    from hostguard.middleware import HostGuardMiddleware

    seen: list[Any] = []
    gate = HostGuardMiddleware(lambda request: seen.append(request) or "served")
    policy.refresh()
    with django_assert_num_queries(0):
        for _ in range(2):  # the second request takes the remembered path
            assert gate(rf.get("/", HTTP_HOST="acme.example")) == "served"
        for request in seen:
            assert (request.tenant.pk, request.tenant.slug, request.tenant.name) == (acme.pk, "acme", "Acme")
            assert request.tenant == acme
    # Each request has its own instance: a view that changes it changes nobody else's.
    assert seen[0].tenant is not seen[1].tenant


def test_refusals_speak_the_negotiated_language_every_time(client: Client) -> None:
    for language in ("fr", "de", "fr"):
        response = whoami(client, "evil.example", headers={"accept-language": language})
        assert response.status_code == 421
        assert response["Content-Language"] == language
    client.cookies["django_language"] = "nl"
    response = whoami(client, "evil.example", headers={"accept-language": "fr"})
    assert response["Content-Language"] == "nl"
    with override_settings(USE_I18N=False):
        assert whoami(client, "evil.example", headers={"accept-language": "fr"})["Content-Language"] == "en-us"


def test_refusal_headers_are_whole_on_every_response(client: Client) -> None:
    first = whoami(client, "evil.example")
    again = whoami(client, "evil.example")
    head = client.head("/", headers={"host": "evil.example"})
    for response in (first, again):
        assert response["Content-Length"] == str(len(response.content))
        assert response["Cache-Control"] == "no-store"
        assert response["Content-Language"] == "en"
    assert head.status_code == 421
    assert head.content == b""
    assert not head.has_header("Content-Length")
    assert head["Cache-Control"] == "no-store"
    # A middleware above the gate may change one refusal's headers, never the next one's.
    again["Cache-Control"] = "private"
    assert whoami(client, "evil.example")["Cache-Control"] == "no-store"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_worker_decides_its_first_request_in_full(client: Client, acme: Tenant) -> None:
    from hostguard.middleware import remembered

    assert whoami(client, "acme.example").status_code == 200
    assert remembered.entries  # the parent remembers the allow
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        # Nothing remembered: its first request takes the full path, which starts
        # the child's own poller (threads do not survive fork()).
        os._exit(0 if not remembered.entries else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_django_internals_refusals_rely_on_still_work_this_way(caplog: pytest.LogCaptureFixture) -> None:
    # hostguard.responses copies prepared headers into Django's own header dict and
    # marks refusals as logged; if a Django upgrade changes either, this fails first.
    from django.http import HttpResponse
    from django.utils.log import log_response

    from hostguard.responses import header_store, mark_logged

    public = HttpResponse(b"x", content_type="text/plain")
    public["Cache-Control"] = "no-store"
    public["Content-Language"] = "en"
    copied = HttpResponse(b"x", content_type="text/plain")
    store, source = header_store(copied), header_store(public)
    assert store is not None
    assert source is not None
    store.update({key: item for key, item in source.items() if key != "content-type"})
    assert dict(copied.items()) == dict(public.items())
    assert copied.serialize_headers() == public.serialize_headers()

    unmarked, refused = HttpResponse(status=421), HttpResponse(status=421)
    mark_logged(refused)
    with caplog.at_level("WARNING", logger="django.request"):
        log_response("Misdirected", response=unmarked)
        logged = len(caplog.records)
        log_response("Misdirected", response=refused)
    assert logged == 1
    assert len(caplog.records) == 1, "a marked response is not logged again"
