"""End to end: gunicorn terminates TLS itself; each connection's SNI name reaches hostguard.

A throwaway self-signed certificate for the names of two tenants (generated with
the openssl CLI), served by gunicorn through the shipped config (SSL_CERTFILE /
SSL_KEYFILE). A client that opened its connection for one tenant's name and asks
for another tenant's host — what HTTP/2 connection coalescing does — gets 421.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import rawhttp
from tests.e2e import Server, Site
from tests.rawhttp import LOOPBACK, Response, http_request

pytestmark = pytest.mark.e2e

DATA = {
    "deployments": [{"name": "eu-1"}],
    "tenants": [
        {"slug": "alpha", "name": "Alpha", "deployment": "eu-1", "authorities": ["a.example", "*.a.example"]},
        {
            "slug": "beta",
            "name": "Beta",
            "deployment": "eu-1",
            "authorities": ["b.example", "https://secure.b.example"],
        },
    ],
}


def make_certificate(directory: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        message = "the openssl command is needed to make a throwaway certificate"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=a.example",
            "-addext",
            "subjectAltName=DNS:a.example,DNS:*.a.example,DNS:b.example",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def tls_request(port: int, data: bytes, sni: str | None, timeout: float = 5.0) -> Response:
    """Send ``data`` over TLS, with ``sni`` as the server name (``None``: no SNI at all)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    with (
        socket.create_connection((LOOPBACK, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=sni) as sock,
    ):
        sock.sendall(data)
        return rawhttp.read_response(rawhttp.Reader(sock, deadline), data.split(b" ", 1)[0].decode(), 0.3)


class TLSServer(Server):
    """A :class:`Server` that speaks only TLS: its readiness probes must too."""

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise self._fail(f"gunicorn exited with {self.process.returncode} while starting")
            try:
                if tls_request(self.port, http_request("GET", "/healthz"), None, timeout=1).status == 200:
                    return
            except (OSError, rawhttp.IncompleteResponse):
                pass
            if time.monotonic() > deadline:
                raise self._fail(f"gunicorn did not answer /healthz over TLS within {self.startup_timeout} s")
            time.sleep(0.05)

    def wait_for_workers(self, timeout: float | None = None) -> set[int]:
        return set()

    def get(self, host: str, sni: str | None, path: str = "/api/ping") -> Response:
        return tls_request(self.port, http_request("GET", path, host=host), sni)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSServer]:
    directory = tmp_path_factory.mktemp("sni")
    cert, key = make_certificate(directory)
    with Site(directory, deployment="eu-1") as site:
        site.load(DATA)
        tls = TLSServer(site, workers=1, env={"SSL_CERTFILE": str(cert), "SSL_KEYFILE": str(key)})
        site.servers.append(tls)
        yield tls.start()


@pytest.mark.parametrize(
    ("sni", "host"),
    [
        ("a.example", "a.example"),
        ("a.example", "shop.a.example"),  # a wildcard authority of the same tenant
        ("www.a.example", "a.example"),
        ("b.example", "b.example"),
        (None, "b.example"),  # no SNI: nothing to check
    ],
)
def test_an_sni_name_of_the_hosts_tenant_is_served(server: TLSServer, sni: str | None, host: str) -> None:
    response = server.get(host, sni)
    assert response.status == 200, response
    assert response.json()["tenant"] == {"a": "alpha", "b": "beta"}[host.rsplit(".", 2)[-2]]


@pytest.mark.parametrize(("sni", "host"), [("a.example", "b.example"), ("b.example", "shop.a.example")])
def test_a_connection_opened_for_another_tenant_is_misdirected(server: TLSServer, sni: str, host: str) -> None:
    response = server.get(host, sni)
    assert response.status == 421, response
    assert response.header("Cache-Control") == "no-store"
    assert response.json()["error"] == "misdirected_request"
    # The refusal names neither tenant nor host.
    assert b"a.example" not in response.body
    assert b"b.example" not in response.body


def test_the_request_is_https_and_health_checks_pass_whatever_the_sni(server: TLSServer) -> None:
    # An https-only authority: gunicorn's TLS makes request.is_secure() true.
    assert server.get("secure.b.example", "b.example").status == 200
    assert server.get("b.example", "a.example", "/healthz").status == 200
    # A Host the connection was opened for, but no tenant claims: the usual 421.
    assert server.get("unknown.example", "unknown.example").status == 421


def test_behind_a_tls_proxy_the_trusted_sni_header_decides_the_same(tmp_path: Path) -> None:
    # What nginx sends with `proxy_set_header X-Forwarded-SNI $ssl_server_name;`.
    with Site(tmp_path, deployment="eu-1") as site:
        site.load(DATA)
        proxied = {"HOSTGUARD_SNI_HEADER": "X-Forwarded-SNI", "HOSTGUARD_TRUSTED_PROXIES": "127.0.0.1"}
        with site.server(workers=1, env=proxied) as plain:

            def status(host: str, sni: str) -> int:
                return plain.request(
                    http_request("GET", "/api/ping", host=host, headers=[("X-Forwarded-SNI", sni)])
                ).status

            assert status("b.example", "a.example") == 421
            assert status("shop.a.example", "a.example") == 200
            assert status("b.example", "") == 200  # $ssl_server_name is empty without SNI


class ProxyBindServer(Server):
    """gunicorn bound as the docs list for a proxy in front: a dual-stack TCP address
    (an IPv4 peer arrives as ``::ffff:127.0.0.1``) and a Unix socket (no address at all)."""

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["BIND"] = f"[::]:{self.port},unix:{self.site.directory / 'gunicorn.sock'}"
        return env

    def unix_request(self, data: bytes, timeout: float = 5.0) -> Response:
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.site.directory / "gunicorn.sock"))
            sock.sendall(data)
            return rawhttp.read_response(rawhttp.Reader(sock, deadline), data.split(b" ", 1)[0].decode(), 0.3)


def test_the_sni_header_is_checked_behind_dual_stack_and_unix_socket_binds(tmp_path: Path) -> None:
    def ask(server: ProxyBindServer, via_unix: bool, sni: str) -> Response:
        data = http_request("GET", "/api/ping", host="b.example", headers=[("X-Forwarded-SNI", sni)])
        return server.unix_request(data) if via_unix else server.request(data)

    with Site(tmp_path, deployment="eu-1") as site:
        site.load(DATA)
        for trusted, unix_checked in (("127.0.0.1", False), ("127.0.0.1,unix", True)):
            proxied = {"HOSTGUARD_SNI_HEADER": "X-Forwarded-SNI", "HOSTGUARD_TRUSTED_PROXIES": trusted}
            server = ProxyBindServer(site, workers=1, env=proxied)
            site.servers.append(server)
            with server.start():
                # 127.0.0.1 reaches the dual-stack socket as ::ffff:127.0.0.1: still the trusted proxy.
                assert ask(server, False, "a.example").status == 421
                assert ask(server, False, "b.example").status == 200
                assert ask(server, True, "a.example").status == (421 if unix_checked else 200)
                assert ask(server, True, "b.example").status == 200
            if not unix_checked:
                assert "not in HOSTGUARD_TRUSTED_PROXIES" in server.stderr()
