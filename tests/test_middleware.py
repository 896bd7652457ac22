"""The gate through Django's test clients, sync and async: what a client sees."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client, override_settings

from hostguard.models import Authority, Deployment, get_tenant_model
from hostguard.policy import changed
from tests.asgi import asgi_get

# hostguard.Tenant, or the site's own model (tests/settings_swapped.py runs these tests with one).
Tenant = get_tenant_model()

pytestmark = pytest.mark.django_db


def make_tenant(slug: str, deployment: str, *authorities: str | dict[str, Any], active: bool = True) -> Tenant:
    dep, _ = Deployment.objects.get_or_create(name=deployment)
    tenant = Tenant.objects.create(name=slug.title(), slug=slug, deployment=dep, is_active=active)
    for spec in authorities:
        fields = {"host": spec} if isinstance(spec, str) else spec
        Authority.objects.create(tenant=tenant, **fields)
    return tenant


@pytest.fixture
def sites() -> None:
    make_tenant("acme", "local", "acme.example", "*.acme.example", {"host": "api.acme.test", "port": 8443})
    make_tenant("secure", "local", {"host": "secure.example", "scheme": "https"})
    make_tenant("globex", "remote", "globex.example")
    make_tenant("initech", "local", "initech.example", active=False)
    make_tenant("hooli", "local", {"host": "hooli.example", "is_active": False})


def get(client: Client, host: str | None, path: str = "/api/whoami", **headers: str) -> Any:
    if host is not None:
        headers["host"] = host
    return client.get(path, headers=headers)


def problem(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = json.loads(response.content)
    return body


@pytest.mark.usefixtures("sites")
class TestVerdicts:
    @pytest.mark.parametrize(
        ("host", "tenant"),
        [
            ("acme.example", "acme"),
            ("ACME.Example.", "acme"),
            ("acme.example:80", "acme"),
            ("shop.acme.example", "acme"),
            ("a.b.acme.example", "acme"),
            ("api.acme.example:9999", "acme"),
            ("api.acme.test:8443", "acme"),
            ("localhost", None),
            ("127.0.0.1:8000", None),
            ("[::1]", None),
        ],
    )
    def test_served_hosts_pass(self, client: Client, host: str, tenant: str | None) -> None:
        response = get(client, host)
        assert response.status_code == 200
        assert response.json() == {"tenant": tenant, "deployment": "local"}

    @pytest.mark.parametrize(
        ("host", "reason"),
        [
            ("evil.example", "unknown_host"),
            ("acme.example.evil.example", "unknown_host"),
            ("globex.example", "other_deployment"),
            ("initech.example", "inactive"),
            ("hooli.example", "inactive"),
            ("api.acme.test:9999", "port_mismatch"),
            ("secure.example", "scheme_mismatch"),
            ("8.8.8.8", "unknown_host"),
        ],
    )
    def test_foreign_hosts_get_421(self, client: Client, host: str, reason: str) -> None:
        response = get(client, host)
        assert response.status_code == 421
        assert response.wsgi_request.hostguard.reason == reason
        assert response["Cache-Control"] == "no-store"

    @pytest.mark.parametrize(
        "host",
        ["a..b", "", "user@acme.example", "acme.example:", "acme.example:abc", "acme.example:0", "a.com,b.com"],
    )
    def test_malformed_hosts_get_400(self, client: Client, host: str) -> None:
        response = get(client, host, accept="application/json")
        assert response.status_code == 400
        assert problem(response)["error"] == "malformed_host"

    def test_missing_host_on_http11_is_400(self, client: Client) -> None:
        assert get(client, None).status_code == 400

    def test_https_scheme_is_admitted_when_secure(self, client: Client) -> None:
        response = client.get("/api/whoami", headers={"host": "secure.example"}, secure=True)
        assert response.status_code == 200
        assert response.json()["tenant"] == "secure"

    @override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
    def test_scheme_follows_secure_proxy_ssl_header(self, client: Client) -> None:
        assert get(client, "secure.example", x_forwarded_proto="https").status_code == 200
        assert get(client, "secure.example", x_forwarded_proto="http").status_code == 421

    def test_exempt_paths_pass_whatever_the_host(self, client: Client) -> None:
        response = get(client, "evil.example", path="/healthz")
        assert response.status_code == 200
        assert response.wsgi_request.tenant is None
        assert get(client, None, path="/healthz").status_code == 200

    def test_decision_is_recorded_on_the_request(self, client: Client) -> None:
        response = get(client, "shop.acme.example")
        decision = response.wsgi_request.hostguard
        assert (decision.verdict, decision.authority, decision.tenant_slug) == ("allow", "*.acme.example", "acme")
        with pytest.raises(AttributeError):
            decision.verdict = "misdirected"


@pytest.mark.usefixtures("sites")
class TestForwardedHeaders:
    def test_x_forwarded_host_is_ignored_by_default(self, client: Client) -> None:
        assert get(client, "acme.example", x_forwarded_host="evil.example").status_code == 200

    @override_settings(USE_X_FORWARDED_HOST=True)
    def test_x_forwarded_host_is_used_when_trusted(self, client: Client) -> None:
        assert get(client, "proxy.internal", x_forwarded_host="acme.example").status_code == 200
        assert get(client, "acme.example", x_forwarded_host="evil.example").status_code == 421
        assert get(client, "acme.example", x_forwarded_host="a,b").status_code == 400

    @override_settings(USE_X_FORWARDED_HOST=True)
    def test_x_forwarded_host_never_replaces_a_missing_host(self, client: Client) -> None:
        assert get(client, None, x_forwarded_host="acme.example").status_code == 400

    @override_settings(USE_X_FORWARDED_PORT=True)
    def test_x_forwarded_port_is_used_when_trusted(self, client: Client) -> None:
        assert get(client, "api.acme.test", x_forwarded_port="8443").status_code == 200
        assert get(client, "api.acme.test", x_forwarded_port="0").status_code == 400

    @override_settings(USE_X_FORWARDED_PORT=True)
    def test_a_huge_x_forwarded_port_is_400_not_500(self, client: Client) -> None:
        assert get(client, "api.acme.test", x_forwarded_port="9" * 5000).status_code == 400
        assert get(client, "api.acme.test", x_forwarded_port="٣").status_code == 400
        assert get(client, "api.acme.test", x_forwarded_port="08443").status_code == 200

    def test_absolute_form_port_defaults_follow_the_targets_scheme(self, client: Client) -> None:
        # Over TLS, "Host: acme.example" names the same authority as the target
        # http://acme.example/ (port 80 for both), so they agree.
        agree = client.get(
            "/api/whoami", headers={"host": "acme.example"}, RAW_URI="http://acme.example/api/whoami", secure=True
        )
        assert agree.status_code == 200
        disagree = client.get(
            "/api/whoami", headers={"host": "acme.example:443"}, RAW_URI="http://acme.example/api/whoami"
        )
        assert disagree.status_code == 400

    def test_absolute_form_target_must_agree_with_host(self, client: Client) -> None:
        agree = client.get("/api/whoami", headers={"host": "acme.example"}, RAW_URI="http://acme.example/api/whoami")
        assert agree.status_code == 200
        disagree = client.get("/api/whoami", headers={"host": "evil.example"}, RAW_URI="http://acme.example/api/whoami")
        assert disagree.status_code == 400


@pytest.mark.usefixtures("sites")
class TestResponses:
    def test_421_is_an_html_page_by_default(self, client: Client) -> None:
        response = get(client, "evil.example", path="/")
        assert response.status_code == 421
        assert response["Content-Type"] == "text/html; charset=utf-8"
        assert b"Misdirected Request" in response.content
        assert int(response["Content-Length"]) == len(response.content)

    @pytest.mark.parametrize(
        "accept", ["application/json", "application/problem+json", "text/html;q=0.5, application/json"]
    )
    def test_421_is_problem_json_when_preferred(self, client: Client, accept: str) -> None:
        body = problem(get(client, "evil.example", path="/", accept=accept))
        assert body == {
            "type": "about:blank",
            "title": "Misdirected Request",
            "status": 421,
            "detail": body["detail"],
            "error": "misdirected_request",
        }
        assert body["detail"]

    def test_421_is_html_when_html_is_preferred(self, client: Client) -> None:
        response = get(client, "evil.example", path="/", accept="text/html, application/json;q=0.5")
        assert response["Content-Type"].startswith("text/html")

    def test_json_paths_always_get_problem_json(self, client: Client) -> None:
        assert problem(get(client, "evil.example", path="/api/anything", accept="text/html"))["status"] == 421

    def test_hostile_accept_header_still_gets_a_421(self, client: Client) -> None:
        response = get(client, "evil.example", path="/", accept="application/json;q=abc, ;;;, */*;q=")
        assert response.status_code == 421

    @pytest.mark.parametrize("host", ["globex.example", "initech.example", "secret-tenant.evil.example"])
    def test_421_never_echoes_host_or_names_tenant_or_deployment(self, client: Client, host: str) -> None:
        for accept in ("text/html", "application/json"):
            content = get(client, host, path="/", accept=accept).content.decode()
            for secret in (host, "globex", "initech", "remote", "local", "acme"):
                assert secret not in content.lower()

    def test_421_sets_no_cookie_redirect_hsts_or_vary(self, client: Client) -> None:
        response = get(client, "evil.example", path="/admin/")
        assert response.status_code == 421
        for header in ("Set-Cookie", "Location", "Strict-Transport-Security", "Vary"):
            assert header not in response
        assert not response.cookies

    def test_head_gets_headers_without_body(self, client: Client) -> None:
        response = client.head("/", headers={"host": "evil.example"})
        assert response.status_code == 421
        assert response.content == b""
        assert response["Cache-Control"] == "no-store"

    def test_post_without_csrf_token_is_421_not_403(self) -> None:
        client = Client(enforce_csrf_checks=True)
        response = client.post("/admin/login/", {"username": "x"}, headers={"host": "evil.example"})
        assert response.status_code == 421

    def test_refusals_are_not_logged_again_by_django(self, client: Client, caplog: Any) -> None:
        with caplog.at_level("INFO", logger="django.request"):
            for host in ("evil.example", "a..b", "evil.example"):
                get(client, host, path="/")
        assert [r for r in caplog.records if r.name == "django.request"] == []

    def test_template_is_overridable(self, client: Client, tmp_path: Any, settings: Any) -> None:
        (tmp_path / "hostguard").mkdir()
        (tmp_path / "hostguard" / "421.html").write_text("<p>Our own 421 page</p>")
        settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
        assert get(client, "evil.example", path="/").content == b"<p>Our own 421 page</p>"

    @override_settings(LANGUAGE_CODE="de", LANGUAGES=[("de", "German"), ("en", "English")])
    def test_response_language_follows_accept_language(self, client: Client) -> None:
        response = get(client, "evil.example", path="/", accept_language="en")
        assert response["Content-Language"] == "en"
        assert b'lang="en"' in response.content


@pytest.mark.usefixtures("sites")
class TestNoDatabaseOnRequests:
    def test_steady_state_requests_do_not_query(self, client: Client, django_assert_num_queries: Any) -> None:
        get(client, "acme.example")  # the first request loads the snapshot
        with django_assert_num_queries(0):
            for host in ("acme.example", "shop.acme.example", "evil.example", "globex.example", "a..b", "localhost"):
                get(client, host, path="/no-such-page/")
                get(client, host, path="/healthz")

    def test_the_tenant_comes_from_the_snapshot(self, client: Client, django_assert_num_queries: Any) -> None:
        get(client, "acme.example")
        with django_assert_num_queries(0):
            response = get(client, "acme.example", path="/no-such-page/")
            assert response.status_code == 404
            assert response.wsgi_request.tenant.slug == "acme"
            assert response.wsgi_request.tenant.deployment.name == "local"

    def test_a_write_reaches_the_next_request(self, client: Client) -> None:
        assert get(client, "new.example").status_code == 421
        make_tenant("newco", "local", "new.example")
        assert get(client, "new.example").status_code == 200
        Tenant.objects.filter(slug="newco").update(is_active=False)
        assert get(client, "new.example").status_code == 421

    def test_moving_a_tenant_to_another_deployment(self, client: Client) -> None:
        assert get(client, "acme.example").status_code == 200
        acme = Tenant.objects.get(slug="acme")
        acme.deployment = Deployment.objects.get(name="remote")
        acme.save()
        response = get(client, "acme.example")
        assert response.status_code == 421
        assert response.wsgi_request.hostguard.reason == "other_deployment"

    @override_settings(HOSTGUARD_DATABASE="unreachable")
    def test_never_loaded_policy_answers_503_with_retry_after(self, client: Client) -> None:
        response = get(client, "acme.example")
        assert response.status_code == 503
        assert int(response["Retry-After"]) >= 1
        assert response["Cache-Control"] == "no-store"
        # Exempt and always-allowed hosts do not need the policy.
        assert get(client, "acme.example", path="/healthz").status_code == 200
        assert get(client, "localhost").status_code == 200

    def test_last_good_snapshot_serves_when_the_database_fails(self, client: Client) -> None:
        assert get(client, "acme.example").status_code == 200
        with override_settings(HOSTGUARD_DATABASE="unreachable"):
            changed()  # a write no row names: forces a full read, which fails
            assert get(client, "acme.example").status_code == 200
            assert get(client, "evil.example").status_code == 421


@pytest.mark.usefixtures("sites")
class TestAsync:
    """Through Django's ASGI handler: the middleware runs its async path."""

    def get(self, path: str, **headers: str) -> Any:
        return asgi_get(path, headers)

    def test_async_verdicts_match_sync(self) -> None:
        allowed = self.get("/api/whoami", host="acme.example")
        assert allowed.status_code == 200
        assert json.loads(allowed.content)["tenant"] == "acme"
        foreign = self.get("/", host="globex.example", accept="application/json")
        assert foreign.status_code == 421
        assert problem(foreign)["error"] == "misdirected_request"
        assert self.get("/", host="a..b").status_code == 400
        assert self.get("/healthz", host="evil.example").status_code == 200
        assert json.loads(self.get("/api/whoami", host="localhost").content)["tenant"] is None

    @override_settings(HOSTGUARD_DATABASE="unreachable")
    def test_async_503_when_never_loaded(self) -> None:
        response = self.get("/", host="acme.example")
        assert response.status_code == 503
        assert response["Retry-After"]
