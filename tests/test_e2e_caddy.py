"""End to end: the Caddy recipe of docs/caddy.md, run as printed with Debian's caddy in
front of the demo site under gunicorn; Caddy's on-demand TLS asks hostguard.

The Caddyfile is the page's block between its ``caddyfile`` markers, with only gunicorn's
address (``127.0.0.1:8000``) replaced, plus global options that keep the test's Caddy to
itself: ``admin off``, ``default_bind 127.0.0.1``, free ``http_port``/``https_port`` (never
80/443), ``local_certs`` (Caddy's own internal CA issues instead of the recipe's ACME CA:
Caddy asks the endpoint before any issuer is tried, so nothing outside is needed) and
``skip_install_trust``. Caddy keeps its CA and certificates in a temporary ``HOME``.
The client is Python's ``ssl``, trusting that CA only, with the SNI name under test.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from urllib.request import HTTPCookieProcessor, build_opener

import pytest

from tests import e2e, rawhttp, tls
from tests.e2e import Server, Site
from tests.rawhttp import LOOPBACK

pytestmark = pytest.mark.e2e

RECIPE = e2e.BASE_DIR / "docs" / "caddy.md"
DATA = {
    "deployments": [{"name": "eu-1"}, {"name": "us-1"}],
    "tenants": [
        # https only: served only if Caddy's X-Forwarded-Proto reaches the site.
        {
            "slug": "acme",
            "name": "Acme",
            "deployment": "eu-1",
            "authorities": ["https://acme.shops.example", "*.acme.shops.example"],
        },
        {"slug": "bravo", "name": "Bravo", "deployment": "eu-1", "authorities": ["bravo.shops.example"]},
        {
            "slug": "initech",
            "name": "Initech",
            "deployment": "eu-1",
            "active": False,
            "authorities": ["initech.shops.example"],
        },
        {"slug": "globex", "name": "Globex", "deployment": "us-1", "authorities": ["globex.shops.example"]},
    ],
}
# Where the recipe's Caddy finds gunicorn, replaced by the test's gunicorn.
UPSTREAM = "127.0.0.1:8000"
ENDPOINT = "/_hostguard/tls-permission"
PASSWORD = "caddy-e2e-not-secret"
# The refresh interval of the site's processes: a change reaches every one within it.
REFRESH_SECONDS = 1.0


def recipe_block(name: str, language: str) -> str:
    """The fenced block between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` of the recipe."""
    pattern = rf"<!-- {name}:start -->\n```{language}\n(.*?)```\n<!-- {name}:end -->"
    blocks = re.findall(pattern, RECIPE.read_text(), flags=re.S)
    assert len(blocks) == 1, f"{RECIPE} must hold exactly one ```{language} block marked {name}"
    return str(blocks[0])


def test_only_ports_and_paths_differ_from_the_recipe() -> None:
    """What the test changes in the Caddyfile, and that the demo mounts what the recipe says."""
    caddyfile = recipe_block("caddyfile", "caddy")
    assert caddyfile.startswith("{\n"), "the recipe's Caddyfile opens with its global options"
    assert caddyfile.count(UPSTREAM) == 2, "the ask URL and reverse_proxy, each naming gunicorn"
    assert f"ask http://{UPSTREAM}{ENDPOINT}\n" in caddyfile
    include = re.search(r'path\("_hostguard/", include\("hostguard.urls"\)\)', recipe_block("caddy-urls", "python"))
    assert include is not None
    assert include.group(0) in (e2e.BASE_DIR / "project" / "urls.py").read_text()


def site_environment() -> dict[str, str]:
    """The recipe's settings, as the demo site reads them from the environment."""
    settings: dict[str, Any] = {}
    exec(recipe_block("caddy-settings", "python"), settings)
    caddyfile = recipe_block("caddyfile", "caddy")
    header = settings["HOSTGUARD_SNI_HEADER"]
    assert f"header_up {header} {{http.request.tls.server_name}}" in caddyfile
    assert settings["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    admin_hosts = settings["HOSTGUARD_ADMIN_HOSTS"]
    # The demo keeps /admin/ and /_hostguard/ to the one list HOSTGUARD_ADMIN_HOSTS gives.
    assert admin_hosts["/_hostguard/"] == admin_hosts["/admin/"]
    assert LOOPBACK in settings["HOSTGUARD_ALWAYS_ALLOW"], "the ask URL's host must be let through"
    return {
        "HOSTGUARD_ALWAYS_ALLOW": ",".join(settings["HOSTGUARD_ALWAYS_ALLOW"]),
        "HOSTGUARD_ADMIN_HOSTS": ",".join(admin_hosts["/_hostguard/"]),
        "HOSTGUARD_TLS_ASK_FROM": ",".join(settings["HOSTGUARD_TLS_ASK_FROM"]),
        "HOSTGUARD_SNI_HEADER": header,
        "HOSTGUARD_TRUSTED_PROXIES": ",".join(settings["HOSTGUARD_TRUSTED_PROXIES"]),
        # The demo leaves SECURE_PROXY_SSL_HEADER's job to gunicorn: it believes
        # X-Forwarded-Proto from these peers.
        "FORWARDED_ALLOW_IPS": LOOPBACK,
    }


class Caddy:
    """Debian's caddy in the foreground (``caddy run``) on free loopback ports, stopped by pid."""

    def __init__(self, directory: Path, caddyfile: str) -> None:
        self.binary = tls.require_tool("caddy", "caddy")
        self.directory = directory
        self.caddyfile = caddyfile
        self.home = directory / "home"
        self.https_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "caddy.log"

    @property
    def root_certificate(self) -> Path:
        """The internal CA's root, which ``local_certs`` makes Caddy issue from."""
        return self.home / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    def start(self, timeout: float = 15.0) -> Caddy:
        for _ in range(3):
            self._spawn()
            started = e2e.wait_until(lambda: "serving initial configuration" in self.log() or not self.running, timeout)
            if (
                started is not None
                and self.running
                and e2e.wait_until(self._listening, timeout) is not None
                and e2e.wait_until(self.root_certificate.exists, timeout) is not None
            ):
                return self
            taken = "address already in use" in self.log()
            self.stop()
            if not taken:
                raise e2e.E2EError(f"caddy did not start within {timeout} s:\n{self.log()[-4000:]}")
        raise e2e.E2EError("another process took a free port three times in a row")

    def _spawn(self) -> None:
        self.https_port = rawhttp.free_port()
        # Options that keep the test's Caddy to itself; the recipe's follow them.
        own = (
            "\tadmin off\n"
            f"\tdefault_bind {LOOPBACK}\n"
            f"\thttp_port {rawhttp.free_port()}\n"
            f"\thttps_port {self.https_port}\n"
            "\tlocal_certs\n"
            "\tskip_install_trust\n"
        )
        path = self.directory / "Caddyfile"
        path.write_text("{\n" + own + self.caddyfile.removeprefix("{\n"))
        env = {
            key: value for key, value in os.environ.items() if not key.startswith(("CADDY", "XDG_")) and key != "HOME"
        }
        env.update(
            HOME=str(self.home),
            XDG_DATA_HOME=str(self.home / "data"),
            XDG_CONFIG_HOME=str(self.home / "config"),
        )
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [self.binary, "run", "--config", str(path), "--adapter", "caddyfile"],
                cwd=self.directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _listening(self) -> bool:
        try:
            socket.create_connection((LOOPBACK, self.https_port), timeout=1).close()
        except OSError:
            return False
        return True

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            e2e.stop_group(process, signal.SIGTERM)


@dataclass
class Stack:
    site: Site
    server: Server
    caddy: Caddy


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("caddy")
    tls.require_tool("caddy", "caddy")
    env = site_environment()
    with Site(directory / "site", refresh_seconds=REFRESH_SECONDS) as site:
        site.load(DATA)
        site.run(["-m", "project.bootstrap"], env=site.env(DJANGO_SUPERUSER_PASSWORD=PASSWORD))
        server = site.server(workers=2, threads=2, env=env).start()
        caddyfile = recipe_block("caddyfile", "caddy").replace(UPSTREAM, f"{LOOPBACK}:{server.port}")
        caddy = Caddy(directory / "caddy", caddyfile)
        caddy.directory.mkdir()
        try:
            yield Stack(site, server, caddy.start())
        finally:
            caddy.stop()


# --- the client ---------------------------------------------------------------------------


@contextmanager
def tls_connection(stack: Stack, name: str) -> Iterator[ssl.SSLSocket]:
    """A TLS connection to Caddy opened for ``name`` (SNI), trusting Caddy's internal CA only."""
    context = ssl.create_default_context(cafile=str(stack.caddy.root_certificate))
    with (
        socket.create_connection((LOOPBACK, stack.caddy.https_port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=name) as connection,
    ):
        yield connection


def handshake_fails(stack: Stack, name: str) -> bool:
    try:
        with tls_connection(stack, name):
            return False
    except ssl.SSLError:
        return True


@dataclass
class Page:
    status: int
    body: str
    headers: dict[str, str]
    #: The DNS names of the certificate Caddy presented.
    certified: list[str]

    @property
    def text(self) -> str:
        """The body without its HTML tags: what a visitor reads."""
        return re.sub(r"<[^>]+>", "", self.body)


def get(stack: Stack, name: str, path: str = "/", host: str | None = None) -> Page:
    """``GET path`` on a connection opened for ``name``, with ``Host: host`` (default ``name``)."""
    with tls_connection(stack, name) as connection:
        certificate = connection.getpeercert() or {}
        client = http.client.HTTPConnection(host or name, timeout=10)
        client.sock = connection  # the request goes over this TLS connection
        client.request("GET", path, headers={"Host": host or name, "Accept": "text/html"})
        response = client.getresponse()
        body = response.read().decode()
    names = [value for kind, value in certificate.get("subjectAltName", ()) if kind == "DNS"]
    return Page(response.status, body, {key.lower(): value for key, value in response.getheaders()}, names)


def asks(stack: Stack, name: str) -> list[int]:
    """The statuses hostguard answered Caddy's asks for ``name`` with, from gunicorn's access log
    (which gunicorn writes just after the answer: give it a moment)."""
    target = f"GET {ENDPOINT}?{urlencode({'domain': name})} "

    def logged() -> list[int]:
        return [entry.status for entry in stack.server.access_log() if entry.request_line.startswith(target)]

    e2e.wait_until(lambda: bool(logged()), timeout=2)
    return logged()


def logged(stack: Stack, text: str) -> bool:
    """Whether the site's processes logged ``text`` (within a moment)."""
    return e2e.wait_until(lambda: text in stack.server.stderr(limit=1_000_000), timeout=2) is not None


# --- the tests ---------------------------------------------------------------------------


def test_a_served_host_gets_a_certificate_and_its_page(stack: Stack) -> None:
    page = get(stack, "acme.shops.example")
    assert page.certified == ["acme.shops.example"]
    assert page.status == 200
    assert "You reached tenant Acme (acme) on deployment eu-1." in page.text
    assert asks(stack, "acme.shops.example") == [200]
    # The TLS server name reaches hostguard: another tenant's host on this connection is refused.
    assert get(stack, "acme.shops.example", host="bravo.shops.example").status == 421
    assert logged(stack, "refused sni_mismatch: host=bravo.shops.example")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("unclaimed.shops.example", "unknown_host"),
        ("initech.shops.example", "inactive"),  # a suspended tenant
        ("globex.shops.example", "other_deployment"),
        ("www.acme.shops.example", "wildcard_only"),
    ],
)
def test_a_host_not_wanted_here_gets_no_certificate(stack: Stack, name: str, reason: str) -> None:
    assert handshake_fails(stack, name)
    assert asks(stack, name) == [403]
    assert logged(stack, f"hostguard TLS permission refused: domain={name} reason={reason}")


def test_a_host_added_in_the_admin_gets_a_certificate_after_propagation(stack: Stack) -> None:
    name = "new.shops.example"
    assert handshake_fails(stack, name)
    tenant_id = stack.site.python("from hostguard.models import Tenant\nprint(Tenant.objects.get(slug='acme').pk)")
    admin = AdminSession(stack.server.port)
    admin.log_in("admin", PASSWORD)
    saved = admin.post_form(
        "/admin/hostguard/authority/add/",
        {"host": name, "scheme": "", "port": "", "tenant": tenant_id.strip(), "is_active": "on", "note": ""},
    )
    assert "was added successfully" in saved, saved[-2000:]
    added = time.monotonic()
    # Caddy asks either worker, and either serves the page: the one that saved knows at
    # once, the other within its refresh interval.
    certified = e2e.wait_until(lambda: not handshake_fails(stack, name), timeout=REFRESH_SECONDS + 5, interval=0.1)
    assert certified is not None, asks(stack, name)
    pages: list[Page] = []

    def page_served() -> bool:
        pages.append(get(stack, name))
        return pages[-1].status == 200

    served = e2e.wait_until(page_served, timeout=REFRESH_SECONDS + 5, interval=0.1)
    assert served is not None, pages[-1]
    assert pages[-1].certified == [name]
    assert "You reached tenant Acme (acme) on deployment eu-1." in pages[-1].text
    # Before that, a worker that had not heard of the host yet could only have said 421.
    assert {page.status for page in pages[:-1]} <= {421}
    print(
        f"\n{name}: certificate {certified:.2f} s and page {time.monotonic() - added:.2f} s after the admin "
        f"saved it; Caddy's asks were answered {asks(stack, name)}"
    )


def test_the_endpoint_answers_only_caddy(stack: Stack) -> None:
    query = f"{ENDPOINT}?domain=acme.shops.example"
    request = rawhttp.http_request("GET", query, host=f"{LOOPBACK}:{stack.server.port}")
    assert rawhttp.raw_request(stack.server.port, request).status == 200  # from Caddy's address
    # From another address of this machine: not in HOSTGUARD_TLS_ASK_FROM.
    for _ in range(8):
        refused = ask_from("127.0.0.2", stack.server.port, request)
        assert refused.status == 403
        assert refused.header("Cache-Control") == "no-store"
        assert refused.body == b"forbidden\n"
    assert logged(stack, "refused a TLS permission ask")
    lines = [
        line for line in stack.server.stderr(limit=1_000_000).splitlines() if "refused a TLS permission ask" in line
    ]
    # One line per window from each process (at most one per worker here), not one per request.
    assert 1 <= len(lines) <= stack.server.workers, lines
    assert "from 127.0.0.2" in lines[0]
    # Through Caddy, on a tenant's connection, whatever the Host: Caddy's own 404.
    for host in ("acme.shops.example", f"{LOOPBACK}:{stack.server.port}"):
        page = get(stack, "acme.shops.example", query, host=host)
        assert page.status == 404
        assert "gunicorn" not in page.headers.get("server", "")


def ask_from(source: str, port: int, data: bytes) -> rawhttp.Response:
    """``data`` sent to gunicorn from the local address ``source``: another peer, on loopback."""
    with socket.create_connection((LOOPBACK, port), timeout=5, source_address=(source, 0)) as sock:
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [(key.strip(), value.strip()) for key, _, value in (line.partition(":") for line in lines)]
    return rawhttp.Response("HTTP/1.1", int(status_line.split()[1]), "", headers, body)


class AdminSession:
    """The Django admin over HTTP, as staff use it: log in, then submit a form."""

    def __init__(self, port: int) -> None:
        self.base = f"http://{LOOPBACK}:{port}"
        self.opener = build_opener(HTTPCookieProcessor(CookieJar()))

    def _token(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=10) as response:
            page = response.read().decode()
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert match is not None, page[:2000]
        return match.group(1)

    def log_in(self, username: str, password: str) -> None:
        page = self.post_form("/admin/login/?next=/admin/", {"username": username, "password": password})
        assert "Log out" in page, page[:2000]

    def post_form(self, path: str, fields: dict[str, str]) -> str:
        data = urlencode({**fields, "csrfmiddlewaretoken": self._token(path)}).encode()
        with self.opener.open(self.base + path, data=data, timeout=10) as response:
            return str(response.read().decode())
