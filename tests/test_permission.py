"""The TLS permission endpoint Caddy's on-demand TLS asks: which names get a certificate,
who may ask, and how it answers (in process; with Caddy itself: tests/test_e2e_caddy.py)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings

from hostguard import permission
from hostguard.conf import conf, parse_ask_from, parse_trusted_proxies
from hostguard.models import Authority, Deployment, Tenant
from hostguard.policy import policy
from hostguard.sni import ENVIRON_KEY
from hostguard.views import LogWindow, answer_lines, forbidden_lines
from tests.test_checks import ids, only

pytestmark = pytest.mark.django_db

URL = "/_hostguard/tls-permission"
# Caddy asks with the ask URL's own host, one the site always lets through.
ASK_HOST = "127.0.0.1:8000"


def make_tenant(slug: str, deployment: str, *, active: bool = True) -> Tenant:
    dep, _ = Deployment.objects.get_or_create(name=deployment)
    return Tenant.objects.create(name=slug.title(), slug=slug, deployment=dep, is_active=active)


def claim(tenant: Tenant, host: str, *, port: int | None = None, scheme: str = "", active: bool = True) -> None:
    Authority.objects.create(tenant=tenant, host=host, port=port, scheme=scheme, is_active=active)


@pytest.fixture(autouse=True)
def tenants() -> None:
    acme = make_tenant("acme", "local")
    claim(acme, "acme.example")
    claim(acme, "shop.acme.example", port=8443, scheme="https")  # any port and scheme counts
    claim(acme, "xn--bcher-kva.example")  # bücher.example
    claim(acme, "old.acme.example", active=False)
    claim(acme, "*.acme.example")
    wild = make_tenant("wild", "local")
    claim(wild, "*.wild.example")
    claim(wild, "off.wild.example", active=False)  # the exact authority decides, not the wildcard
    claim(make_tenant("initech", "local", active=False), "initech.example")
    claim(make_tenant("globex", "remote"), "globex.example")


@pytest.fixture(autouse=True)
def _fresh_log_windows() -> None:
    forbidden_lines.reset()
    answer_lines.reset()


def ask(
    client: Client, domain: str, *, peer: str = "127.0.0.1", headers: dict[str, str] | None = None, **extra: Any
) -> Any:
    return client.get(URL, {"domain": domain}, headers=headers or {"host": ASK_HOST}, REMOTE_ADDR=peer, **extra)


# --- which names ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "domain",
    [
        "acme.example",
        "shop.acme.example",  # claimed for https on 8443 only: the certificate is for the name
        "ACME.Example.",  # as every host is read: lower case, one trailing dot dropped
        "bücher.example",  # a Unicode name is read as its A-label
        "xn--bcher-kva.example",
    ],
)
def test_a_host_an_active_tenant_here_claims_gets_a_certificate(client: Client, domain: str) -> None:
    response = ask(client, domain)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Cache-Control"] == "no-store"
    assert response.content == b"allowed\n"


@pytest.mark.parametrize(
    ("domain", "reason"),
    [
        ("unclaimed.example", "unknown_host"),
        ("initech.example", "inactive"),  # a suspended tenant
        ("old.acme.example", "inactive"),  # an inactive authority, though *.acme.example is active
        ("globex.example", "other_deployment"),
        ("x.wild.example", "wildcard_only"),  # on-demand issuance for every subdomain is opt-in
        ("www.acme.example", "wildcard_only"),
        ("127.0.0.1", "ip_address"),
        ("[::1]", "ip_address"),
    ],
)
def test_every_other_name_is_refused_without_being_echoed(
    client: Client, caplog: pytest.LogCaptureFixture, domain: str, reason: str
) -> None:
    caplog.set_level(logging.INFO, logger="hostguard.tls")
    response = ask(client, domain)
    assert response.status_code == 403
    assert response["Cache-Control"] == "no-store"
    assert response.content == b"refused\n"  # never the name asked for
    # The operator learns what was asked, and why it was refused, from the log.
    lines = [record.getMessage() for record in caplog.records if record.name == "hostguard.tls"]
    assert any(f"refused: domain={domain} reason={reason}" in line for line in lines), lines


@override_settings(HOSTGUARD_TLS_ANY_DEPLOYMENT=True)
def test_with_any_deployment_a_moved_tenant_still_gets_its_certificate(client: Client) -> None:
    assert ask(client, "globex.example").status_code == 200
    assert ask(client, "acme.example").status_code == 200
    assert ask(client, "initech.example").status_code == 403


@override_settings(HOSTGUARD_TLS_WILDCARDS=True)
def test_with_wildcards_names_under_a_wildcard_authority_get_certificates(client: Client) -> None:
    assert ask(client, "x.wild.example").status_code == 200
    assert ask(client, "a.b.wild.example").status_code == 200
    assert ask(client, "wild.example").status_code == 403  # a wildcard never covers its own domain
    assert ask(client, "off.wild.example").status_code == 403  # the exact, inactive authority decides


def test_a_host_added_is_allowed_on_the_next_ask(client: Client) -> None:
    assert ask(client, "new.example").status_code == 403
    claim(Tenant.objects.get(slug="acme"), "new.example")
    assert ask(client, "new.example").status_code == 200
    Tenant.objects.filter(slug="acme").update(is_active=False)  # a queryset update is recorded too
    assert ask(client, "new.example").status_code == 403


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?domain=",
        "?domain=acme.example:443",  # a port
        "?domain=*.acme.example",  # a wildcard is not a name a client asks for
        "?domain=*.b%C3%BCcher.example",
        "?domain=acme..example",
        "?domain=acme%20example",
        "?domain=user@acme.example",
        "?domain=acme.example/path",
        "?domain=::1",
        "?domain=" + "a" * 300,
        "?domain=acme.example&domain=globex.example",
    ],
)
def test_a_missing_or_malformed_domain_is_a_bad_request(client: Client, query: str) -> None:
    response = client.get(URL + query, headers={"host": ASK_HOST}, REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 400
    assert response["Cache-Control"] == "no-store"
    assert response.content == b"malformed\n"


@pytest.mark.parametrize(
    "query",
    [
        "domain=b\xc3\xbccher.example",  # raw UTF-8, as a WSGI server passes it (decoded as latin-1)
        "domain=b%C3%BCcher.example",
        "domain=ACME.example.",
        "other=1&domain=acme.example",
    ],
)
def test_the_query_is_read_as_django_reads_it(client: Client, query: str) -> None:
    response = client.get(URL, headers={"host": ASK_HOST}, REMOTE_ADDR="127.0.0.1", QUERY_STRING=query)
    assert response.status_code == 200


def test_the_name_is_read_as_hosts_are_everywhere() -> None:
    assert permission.certificate_name("Bücher.Example.") == "xn--bcher-kva.example"
    assert permission.certificate_name("r1---sn-x.example") == "r1---sn-x.example"
    assert permission.certificate_name("[::FFFF:127.0.0.1]") == "[::ffff:127.0.0.1]"
    with pytest.raises(permission.MalformedName):
        permission.certificate_name("xn--bcher-kva.example:443")


def test_a_control_character_is_escaped_in_the_log(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hostguard.tls")
    assert ask(client, "evil\x1b[31m.example").status_code == 400
    (line,) = [record.getMessage() for record in caplog.records if record.name == "hostguard.tls"]
    assert "\x1b" not in line
    assert "evil\\x1b[31m.example" in line


def test_only_get_and_head_are_answered(client: Client) -> None:
    response = client.post(URL + "?domain=acme.example", headers={"host": ASK_HOST}, REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert client.head(URL + "?domain=acme.example", headers={"host": ASK_HOST}).status_code == 200


# --- from the snapshot, never the database --------------------------------------------


def test_an_ask_makes_no_query_once_the_hosts_are_loaded(client: Client, django_assert_num_queries: Any) -> None:
    assert policy.obtain() is not None
    with django_assert_num_queries(0):
        assert ask(client, "acme.example").status_code == 200
        assert ask(client, "unclaimed.example").status_code == 403


def test_while_the_database_is_down_the_snapshot_keeps_answering(client: Client) -> None:
    assert policy.obtain() is not None
    with override_settings(HOSTGUARD_DATABASE="unreachable"):
        assert ask(client, "acme.example").status_code == 200
        assert ask(client, "globex.example").status_code == 403


@override_settings(HOSTGUARD_REFRESH_SECONDS=5)
def test_with_no_hosts_loaded_it_fails_closed(client: Client) -> None:
    with override_settings(HOSTGUARD_DATABASE="unreachable"):
        response = ask(client, "acme.example")
    assert response.status_code == 503
    assert response.content == b"unavailable\n"
    assert response["Retry-After"] == "5"
    assert response["Cache-Control"] == "no-store"


# --- who may ask ------------------------------------------------------------------------


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.0.0.53", "::1", "::ffff:127.0.0.1"])
def test_this_machine_may_ask_by_default(client: Client, peer: str) -> None:
    assert ask(client, "acme.example", peer=peer).status_code == 200


@pytest.mark.parametrize("peer", ["10.1.2.3", "192.0.2.7", "2001:db8::1", "", "not an address"])
def test_any_other_peer_is_forbidden(client: Client, peer: str) -> None:
    response = ask(client, "acme.example", peer=peer)
    assert response.status_code == 403
    assert response.content == b"forbidden\n"


@override_settings(HOSTGUARD_TRUSTED_PROXIES=["10.0.0.0/8", "unix"])
def test_trusted_proxies_may_ask_by_default(client: Client) -> None:
    assert ask(client, "acme.example", peer="10.1.2.3").status_code == 200
    assert ask(client, "acme.example", peer="").status_code == 200  # a Unix socket
    assert ask(client, "acme.example", peer="192.0.2.7").status_code == 403


@override_settings(HOSTGUARD_TLS_ASK_FROM=["192.0.2.7"], HOSTGUARD_TRUSTED_PROXIES=["10.0.0.0/8"])
def test_ask_from_replaces_the_default(client: Client) -> None:
    assert ask(client, "acme.example", peer="192.0.2.7").status_code == 200
    assert ask(client, "acme.example", peer="127.0.0.1").status_code == 403
    assert ask(client, "acme.example", peer="10.1.2.3").status_code == 403


@override_settings(HOSTGUARD_SNI_HEADER="X-Forwarded-SNI", HOSTGUARD_TRUSTED_PROXIES=["127.0.0.1"])
def test_an_ask_relayed_from_a_clients_tls_connection_is_forbidden(client: Client) -> None:
    # A visitor's request through the TLS proxy comes from the proxy's (allowed) address,
    # but carries the name the visitor's connection was opened for: Caddy's ask never does.
    response = ask(client, "acme.example", headers={"host": ASK_HOST, "x-forwarded-sni": "acme.example"})
    assert response.status_code == 403
    assert response.content == b"forbidden\n"
    assert ask(client, "acme.example", **{ENVIRON_KEY: "acme.example"}).status_code == 403
    assert ask(client, "acme.example").status_code == 200


def test_refused_askers_are_logged_once_per_window(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hostguard.tls")
    for peer in ("10.1.2.3", "10.9.9.9", "10.1.2.3"):
        assert ask(client, "acme.example", peer=peer).status_code == 403
    lines = [r for r in caplog.records if r.name == "hostguard.tls"]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    assert "10.1.2.3" in lines[0].getMessage()
    assert "HOSTGUARD_TLS_ASK_FROM" in lines[0].getMessage()


def test_a_log_window_writes_each_line_once_and_counts_the_rest() -> None:
    window = LogWindow(2)
    assert window.admit("a", 60, now=0.0) == 0
    assert window.admit("a", 60, now=1.0) is None  # the same line again
    assert window.admit("b", 60, now=2.0) == 1
    assert window.admit("c", 60, now=3.0) is None  # past the window's limit of distinct lines
    assert window.admit("a", 60, now=61.0) == 1  # a new window says how many were skipped since


# --- where the endpoint can be reached ----------------------------------------------------


@override_settings(HOSTGUARD_ADMIN_HOSTS=getattr(settings, "DEMO_ADMIN_HOSTS", None))
def test_the_demo_keeps_the_endpoint_off_tenant_hosts(client: Client) -> None:
    assert ask(client, "acme.example").status_code == 200
    response = client.get(URL, {"domain": "acme.example"}, headers={"host": "acme.example"}, REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 404
    assert response.wsgi_request.hostguard.verdict == "hidden"


# --- settings and checks -------------------------------------------------------------------


def test_the_settings_read_as_documented() -> None:
    default = conf.tls_permission
    assert default.askers == parse_ask_from(None, parse_trusted_proxies([]))
    assert (default.any_deployment, default.wildcards) == (False, False)
    with override_settings(HOSTGUARD_TLS_ASK_FROM="192.0.2.7, unix"):
        assert conf.tls_permission.askers.trusts("192.0.2.7")
        assert conf.tls_permission.askers.trusts("")
        assert not conf.tls_permission.askers.trusts("127.0.0.1")


@pytest.mark.parametrize(
    ("name", "value"),
    [("HOSTGUARD_TLS_WILDCARDS", "yes"), ("HOSTGUARD_TLS_ANY_DEPLOYMENT", 1), ("HOSTGUARD_TLS_ASK_FROM", 7)],
)
def test_a_setting_of_the_wrong_type_is_a_check_error(name: str, value: object) -> None:
    with override_settings(**{name: value}):
        message = only("hostguard.E005")
    assert name in message.msg


def test_an_ask_from_entry_that_is_not_an_address_is_a_check_error() -> None:
    with override_settings(HOSTGUARD_TLS_ASK_FROM=["127.0.0.1", "caddy.internal"]):
        message = only("hostguard.E013")
    assert "HOSTGUARD_TLS_ASK_FROM" in message.msg
    assert "'caddy.internal'" in message.msg
    with override_settings(HOSTGUARD_TLS_ASK_FROM=None, HOSTGUARD_TLS_WILDCARDS=True):
        assert ids() == []
