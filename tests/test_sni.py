"""Step 8: a connection's TLS SNI name must belong to the tenant its Host resolves to."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings

from hostguard.conf import conf
from hostguard.sni import ENVIRON_KEY
from tests.asgi import asgi_get
from tests.factories import make_tenant

pytestmark = pytest.mark.django_db

PROXY = {"HOSTGUARD_SNI_HEADER": "X-Forwarded-SNI", "HOSTGUARD_TRUSTED_PROXIES": ["10.0.0.0/8", "::1"]}


@pytest.fixture(autouse=True)
def sites() -> None:
    make_tenant("acme", "local", "acme.example", "*.acme.example", "acme-shop.example")
    make_tenant("umbrella", "local", "umbrella.example")
    make_tenant("globex", "remote", "globex.example")


def get(client: Client, host: str, sni: str | None = None, peer: str = "10.1.2.3", **extra: Any) -> Any:
    headers = {"host": host}
    if sni is not None:
        headers["x-forwarded-sni"] = sni
    return client.get("/api/ping", headers=headers, REMOTE_ADDR=peer, **extra)


def error_of(response: Any) -> str:
    body: dict[str, Any] = json.loads(response.content)
    return str(body["error"])


class TestTrustedHeader:
    @pytest.fixture(autouse=True)
    def _behind_a_proxy(self) -> Iterator[None]:
        with override_settings(**PROXY):
            yield

    @pytest.mark.parametrize(
        "sni",
        ["acme.example", "ACME.example.", "shop.acme.example", "acme-shop.example", ""],
    )
    def test_an_sni_name_of_the_same_tenant_passes(self, client: Client, sni: str) -> None:
        response = get(client, "acme.example", sni)
        assert response.status_code == 200
        assert response.json()["tenant"] == "acme"

    @pytest.mark.parametrize(
        "sni",
        [
            "umbrella.example",  # another tenant of this deployment
            "globex.example",  # a tenant of another deployment
            "unknown.example",
            "acme.example:443",  # SNI never carries a port
            "a..b",
            "127.0.0.1",
        ],
    )
    def test_an_sni_name_of_anything_else_is_misdirected(self, client: Client, sni: str) -> None:
        response = get(client, "acme.example", sni)
        assert response.status_code == 421
        assert response["Cache-Control"] == "no-store"
        assert error_of(response) == "misdirected_request"
        assert response.wsgi_request.hostguard.reason == "sni_mismatch"

    def test_a_wildcard_host_with_the_sni_of_an_exact_name_of_the_same_tenant_passes(self, client: Client) -> None:
        assert get(client, "shop.acme.example", "acme.example").status_code == 200

    def test_no_header_means_no_check(self, client: Client) -> None:
        assert get(client, "acme.example").status_code == 200

    def test_the_header_of_an_untrusted_peer_is_ignored(self, client: Client) -> None:
        response = get(client, "acme.example", "umbrella.example", peer="192.0.2.7")
        assert response.status_code == 200
        assert response.json()["tenant"] == "acme"

    def test_an_ipv6_proxy_is_trusted_by_address(self, client: Client) -> None:
        assert get(client, "acme.example", "umbrella.example", peer="::1").status_code == 421

    def test_hosts_refused_before_step_8_keep_their_reason(self, client: Client) -> None:
        response = get(client, "globex.example", "acme.example")
        assert response.status_code == 421
        assert response.wsgi_request.hostguard.reason == "other_deployment"

    def test_always_allowed_hosts_are_not_checked(self, client: Client) -> None:
        assert get(client, "localhost", "umbrella.example").status_code == 200

    def test_the_async_path_decides_the_same(self) -> None:
        assert asgi_status("acme.example", "shop.acme.example") == 200
        assert asgi_status("acme.example", "umbrella.example") == 421


def asgi_status(host: str, sni: str, peer: str = "10.9.9.9") -> int:
    """The status Django's ASGI handler answers."""
    return asgi_get("/api/ping", {"host": host, "x_forwarded_sni": sni}, peer=peer).status_code


@pytest.mark.parametrize(
    ("setting", "peer", "checked"),
    [
        ({"HOSTGUARD_TRUSTED_PROXIES": []}, "127.0.0.1", False),
        ({"HOSTGUARD_TRUSTED_PROXIES": ["127.0.0.1"]}, "127.0.0.1", True),
        ({"HOSTGUARD_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.1"}, "10.0.0.1", True),
        ({"HOSTGUARD_TRUSTED_PROXIES": ["127.0.0.1"]}, "127.0.0.2", False),
        ({"HOSTGUARD_TRUSTED_PROXIES": ["*"]}, "198.51.100.1", True),
        ({"HOSTGUARD_TRUSTED_PROXIES": ["*"], "HOSTGUARD_SNI_HEADER": None}, "198.51.100.1", False),
        (
            {"HOSTGUARD_TRUSTED_PROXIES": ["10.0.0.0/8"], "HOSTGUARD_SNI_HEADER": "HTTP_X_FORWARDED_SNI"},
            "10.0.0.1",
            True,
        ),
    ],
)
def test_which_peers_and_header_names_are_honoured(
    client: Client, setting: dict[str, Any], peer: str, checked: bool
) -> None:
    with override_settings(**{"HOSTGUARD_SNI_HEADER": "X-Forwarded-SNI", **setting}):
        response = get(client, "acme.example", "umbrella.example", peer=peer)
    assert response.status_code == (421 if checked else 200)


def test_the_servers_own_sni_needs_no_setting_and_no_trusted_peer(client: Client) -> None:
    # What the shipped gunicorn config sets when gunicorn terminates TLS; a client
    # cannot forge it: request headers only ever arrive as HTTP_* keys.
    assert get(client, "acme.example", peer="192.0.2.1", **{ENVIRON_KEY: "umbrella.example"}).status_code == 421
    assert get(client, "acme.example", peer="192.0.2.1", **{ENVIRON_KEY: "www.acme.example"}).status_code == 200


@override_settings(HOSTGUARD_TRUSTED_PROXIES=["10.0.0.0/8", "proxy.internal"])
def test_a_trusted_proxy_that_is_not_an_address_is_named_in_the_error() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"'proxy\.internal'"):
        _ = conf.trusted_proxies
