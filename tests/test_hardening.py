"""Failing closed: report mode, trusted proxies, admin paths kept to admin hosts (issue #10).

Each test states what a site would suffer if hostguard failed open there: a poisoned
password-reset link, an SNI check silently off behind a common proxy bind, the
operator's login page on a customer's domain.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.models import User
from django.core import checks, mail
from django.test import Client, override_settings
from django.urls import include, path

from hostguard.conf import conf, parse_trusted_proxies
from tests.factories import make_tenant

pytestmark = pytest.mark.django_db

urlpatterns = [
    path("reset/", auth_views.PasswordResetView.as_view(success_url="/reset/sent/"), name="password_reset"),
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("", include("project.urls")),
]

PROXY = {"HOSTGUARD_SNI_HEADER": "X-Forwarded-SNI", "HOSTGUARD_TRUSTED_PROXIES": ["10.0.0.0/8", "127.0.0.1"]}


@pytest.fixture(autouse=True)
def sites() -> None:
    make_tenant("acme", "local", "acme.example", "*.acme.example")
    make_tenant("umbrella", "local", "umbrella.example")
    make_tenant("globex", "remote", "globex.example")


def get(client: Client, host: str, target: str = "/api/whoami", **extra: Any) -> Any:
    return client.get(target, headers={"host": host}, **extra)


def hostguard_ids() -> list[str]:
    return [message.id or "" for message in checks.run_checks(tags=["hostguard"])]


# --- 1. report mode never serves more than the site served before ---------------------


@override_settings(ROOT_URLCONF=__name__, HOSTGUARD_MODE="report")
def test_report_mode_does_not_let_an_attacker_poison_a_password_reset_link(client: Client) -> None:
    User.objects.create_user("ann", "ann@acme.example", "secret")

    response = client.post("/reset/", {"email": "ann@acme.example"}, headers={"host": "attacker.example"})

    assert response.status_code == 421
    assert mail.outbox == []
    # A host a tenant claims is still served during the rollout, links and all.
    response = client.post("/reset/", {"email": "ann@acme.example"}, headers={"host": "globex.example"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert "http://globex.example/reset/" in mail.outbox[0].body


@override_settings(HOSTGUARD_MODE="report", ALLOWED_HOSTS=["legacy.example", ".old.example", "globex.example"])
def test_report_mode_with_an_allowed_hosts_list_serves_only_what_it_lists(client: Client) -> None:
    # Hosts hostguard would refuse: served only where the site's own list served them.
    for host, status in [
        ("legacy.example", 200),  # no tenant claims it yet: the rollout gap report mode is for
        ("shop.old.example", 200),
        ("globex.example", 200),  # another deployment's tenant, but ALLOWED_HOSTS lists it
        ("evil.example", 421),
        ("umbrella.example:8080", 200),  # served by hostguard; Django's own check then...
    ]:
        response = get(client, host)
        if host.startswith("umbrella"):
            # ...refuses it: ALLOWED_HOSTS does not list it (check W001 warns of this).
            assert response.status_code == 400, host
        else:
            assert response.status_code == status, host
    assert get(client, "shop.old.example").wsgi_request.hostguard.reported is True
    assert get(client, "evil.example").wsgi_request.hostguard.reported is False


def test_a_check_says_what_report_mode_lets_through() -> None:
    with override_settings(HOSTGUARD_MODE="report"):
        message = next(m for m in checks.run_checks(tags=["hostguard"]) if m.id == "hostguard.I001")
        assert message.level == checks.INFO
        assert "no tenant claims" in message.msg
        assert "ALLOWED_HOSTS is ['*']" in message.msg
    with override_settings(HOSTGUARD_MODE="report", ALLOWED_HOSTS=["legacy.example"]):
        message = next(m for m in checks.run_checks(tags=["hostguard"]) if m.id == "hostguard.I001")
        assert "only if its host is in ALLOWED_HOSTS" in message.msg
    assert "hostguard.I001" not in hostguard_ids()


# --- 2. the SNI check behind common proxy binds ---------------------------------------


def sni_get(client: Client, host: str, sni: str, peer: str) -> Any:
    return client.get("/api/whoami", headers={"host": host, "x-forwarded-sni": sni}, REMOTE_ADDR=peer)


@override_settings(**PROXY)
def test_an_ipv4_mapped_peer_matches_an_ipv4_trusted_proxy(client: Client) -> None:
    # What gunicorn bound to a dual-stack address ([::]:8000) reports for 127.0.0.1.
    response = sni_get(client, "acme.example", "umbrella.example", peer="::ffff:127.0.0.1")
    assert response.status_code == 421
    assert response.wsgi_request.hostguard.reason == "sni_mismatch"
    assert sni_get(client, "acme.example", "www.acme.example", peer="::ffff:10.9.8.7").status_code == 200
    assert sni_get(client, "acme.example", "umbrella.example", peer="::ffff:192.0.2.1").status_code == 200


def test_trusted_networks_written_as_mapped_ipv6_match_ipv4_peers() -> None:
    proxies = parse_trusted_proxies(["::ffff:10.0.0.0/104"])
    assert proxies.trusts("10.1.2.3")
    assert proxies.trusts("::ffff:10.1.2.3")
    assert not proxies.trusts("11.1.2.3")


@override_settings(HOSTGUARD_SNI_HEADER="X-Forwarded-SNI", HOSTGUARD_TRUSTED_PROXIES=["10.0.0.0/8"])
def test_a_unix_socket_peer_is_trusted_only_when_said_so(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    # gunicorn leaves REMOTE_ADDR empty for a Unix socket.
    with caplog.at_level(logging.WARNING, logger="hostguard.sni"):
        assert sni_get(client, "acme.example", "umbrella.example", peer="").status_code == 200
        assert sni_get(client, "acme.example", "umbrella.example", peer="").status_code == 200
    warnings = [record for record in caplog.records if record.name == "hostguard.sni"]
    assert len(warnings) == 1, "a proxy misconfiguration is logged once, not per request"
    assert "HOSTGUARD_TRUSTED_PROXIES" in warnings[0].getMessage()
    with override_settings(HOSTGUARD_TRUSTED_PROXIES=["unix"]):
        assert sni_get(client, "acme.example", "umbrella.example", peer="").status_code == 421
        # "unix" trusts no network peer.
        assert sni_get(client, "acme.example", "umbrella.example", peer="10.1.2.3").status_code == 200


def test_a_check_warns_when_the_sni_header_has_no_trusted_proxy() -> None:
    with override_settings(HOSTGUARD_SNI_HEADER="X-Forwarded-SNI", HOSTGUARD_TRUSTED_PROXIES=[]):
        assert "hostguard.W007" in hostguard_ids()
    with override_settings(HOSTGUARD_SNI_HEADER="X-Forwarded-SNI", HOSTGUARD_TRUSTED_PROXIES=["unix"]):
        assert "hostguard.W007" not in hostguard_ids()
    with override_settings(HOSTGUARD_TRUSTED_PROXIES=["10.0.0.0/8", "unix:", "proxy.internal"]):
        errors = [m for m in checks.run_checks(tags=["hostguard"]) if m.id == "hostguard.E013"]
        assert len(errors) == 1
        assert "'proxy.internal'" in errors[0].msg
        assert "unix:" not in errors[0].msg


# --- 9. the admin only on the hosts it is meant for -----------------------------------


DEMO = {"HOSTGUARD_ADMIN_HOSTS": getattr(settings, "DEMO_ADMIN_HOSTS", None)}


@override_settings(**DEMO)
def test_the_demo_keeps_its_admin_to_the_always_allowed_hosts(client: Client) -> None:
    assert conf.path_rules, "the demo site sets HOSTGUARD_ADMIN_HOSTS"
    for target in ("/admin/", "/admin/login/", "/admin", "/admin/hostguard/tenant/"):
        response = get(client, "acme.example", target)
        assert response.status_code == 404, target
        page = response.content.decode()
        assert "admin" not in page.lower(), target
        assert "django" not in page.lower(), target
        assert not response.has_header("Set-Cookie")
        assert response.wsgi_request.hostguard.verdict == "hidden"
    assert get(client, "localhost", "/admin/login/").status_code == 200
    # Everything else is served on the tenant's host as before.
    assert get(client, "acme.example", "/api/whoami").json()["tenant"] == "acme"
    assert get(client, "acme.example", "/administrators").status_code == 404  # Django's own: no such page
    assert get(client, "acme.example", "/administrators").wsgi_request.hostguard.verdict == "allow"


@override_settings(HOSTGUARD_ADMIN_HOSTS={"/admin/": ["admin.acme.example"]})
def test_a_remembered_allow_never_opens_a_kept_path(client: Client) -> None:
    assert get(client, "acme.example", "/api/whoami").status_code == 200  # remembered from here on
    assert get(client, "acme.example", "/admin/login/").status_code == 404
    assert get(client, "admin.acme.example", "/admin/login/").status_code == 200
    with override_settings(HOSTGUARD_MODE="report"):
        assert get(client, "globex.example", "/admin/login/").status_code == 404


def test_a_bad_admin_hosts_setting_is_a_check_error() -> None:
    for value, says in [
        ({"admin/": ["localhost"]}, "'admin/'"),
        (["/admin/"], "dict"),
        ({"/admin/": "localhost"}, "list of host names"),
    ]:
        with override_settings(HOSTGUARD_ADMIN_HOSTS=value):
            found = [m for m in checks.run_checks(tags=["hostguard"]) if m.id in ("hostguard.E014", "hostguard.E005")]
            assert found, value
            assert any(says in m.msg for m in found), [m.msg for m in found]
    with override_settings(HOSTGUARD_ADMIN_HOSTS={"/admin/": ["*.example.com"]}):
        assert "hostguard.E008" in hostguard_ids()


@pytest.mark.parametrize("rule", ["/admin/", "/app/admin/"])
def test_a_kept_path_is_kept_under_a_script_name_written_either_way(rule: str) -> None:
    from django.http import HttpResponse
    from django.test import RequestFactory

    from hostguard.middleware import HostGuardMiddleware

    with override_settings(HOSTGUARD_ADMIN_HOSTS={rule: ["localhost"]}):
        gate = HostGuardMiddleware(lambda request: HttpResponse("the admin's login page"))
        for _ in range(2):  # the second time through the remembered allow
            request = RequestFactory().get("/admin/login/", HTTP_HOST="acme.example", SCRIPT_NAME="/app")
            assert (request.path, request.path_info) == ("/app/admin/login/", "/admin/login/")
            assert gate(request).status_code == 404
        assert gate(RequestFactory().get("/", HTTP_HOST="acme.example", SCRIPT_NAME="/app")).status_code == 200
        # acme.example's allow is remembered now; the kept path still is not its.
        request = RequestFactory().get("/admin/login/", HTTP_HOST="acme.example", SCRIPT_NAME="/app")
        assert gate(request).status_code == 404
        for _ in range(2):  # localhost's allow, decided in full and then remembered
            request = RequestFactory().get("/admin/login/", HTTP_HOST="localhost", SCRIPT_NAME="/app")
            assert gate(request).status_code == 200
            assert request.tenant is None
