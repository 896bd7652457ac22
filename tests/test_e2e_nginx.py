"""End to end: the nginx recipe of docs/proxy-nginx.md, run as printed, in front of two
deployments on one PostgreSQL database, browsed by Chromium over HTTP/2.

The configuration block is taken from the page between its ``nginx-config`` markers;
only the listening port, the certificate paths and the upstream addresses are
replaced. A throwaway CA signs the ``*.shops.example`` certificate; Chromium trusts it
through an NSS database in its ``HOME`` (no ``--ignore-certificate-errors``: the name
checks that coalescing depends on stay on), and reaches every name at 127.0.0.1.

Chromium opens a connection for alpha (eu-1) and coalesces the requests for charlie
(eu-1) and bravo (us-1) onto it. nginx's access log, which names each request's
connection, SNI name and upstream, shows each coalesced request answered 421 and its
retry answered 200 on a new connection by the deployment serving that tenant;
Chromium's NetLog shows the two restarts, gunicorn's log the two reasons.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import e2e, rawhttp, tls
from tests.browser import chromium
from tests.e2e import Server, Site
from tests.rawhttp import LOOPBACK

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.postgresql]

RECIPE = e2e.BASE_DIR / "docs" / "proxy-nginx.md"
DATA = {
    "deployments": [{"name": "eu-1"}, {"name": "us-1"}],
    "tenants": [
        # https only: the page is served only if X-Forwarded-Proto reaches the site.
        {"slug": "alpha", "name": "Alpha", "deployment": "eu-1", "authorities": ["https://alpha.shops.example"]},
        {"slug": "charlie", "name": "Charlie", "deployment": "eu-1", "authorities": ["charlie.shops.example"]},
        {
            "slug": "bravo",
            "name": "Bravo",
            "deployment": "us-1",
            "authorities": ["bravo.shops.example", "*.bravo.shops.example"],
        },
    ],
}
NAMES = ["alpha.shops.example", "bravo.shops.example", "charlie.shops.example"]
# The addresses the recipe names, and what stands in for them here.
PROXY_ADDRESS = "10.0.0.2"
UPSTREAMS = {"eu-1": "10.0.1.10:8000", "us-1": "10.0.2.10:8000"}
CERTIFICATE = ("/etc/ssl/shops.example.pem", "/etc/ssl/shops.example.key")
# What the test's own nginx.conf adds around the recipe: the access log names each
# request's connection (nginx's serial number for it) and where it went.
LOG_FORMAT = (
    "log_format hostguard_test escape=json '{"
    '"connection":"$connection","sni":"$ssl_server_name","host":"$host","method":"$request_method",'
    '"uri":"$request_uri","protocol":"$server_protocol","status":"$status","upstream":"$upstream_addr"'
    "}';"
)


def recipe_block(name: str, language: str) -> str:
    """The fenced block between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` of the recipe."""
    pattern = rf"<!-- {name}:start -->\n```{language}\n(.*?)```\n<!-- {name}:end -->"
    blocks = re.findall(pattern, RECIPE.read_text(), flags=re.S)
    assert len(blocks) == 1, f"{RECIPE} must hold exactly one ```{language} block marked {name}"
    return str(blocks[0])


def replace_argument(config: str, directive: str, old: str, new: str) -> str:
    """``config`` with the one ``directive old…;`` line (not a comment) now saying ``new``."""
    pattern = rf"^(\s*{directive}\s+){re.escape(old)}(?=[\s;])"

    def swap(match: re.Match[str]) -> str:
        return match.group(1) + new

    replaced, count = re.subn(pattern, swap, config, flags=re.M)
    assert count == 1, f"the recipe's nginx block has {count} `{directive} {old}` lines, expected one"
    return replaced


@dataclass(frozen=True)
class Logged:
    """One line of nginx's access log."""

    connection: int
    sni: str
    host: str
    uri: str
    protocol: str
    status: int
    upstream: str


class Nginx:
    """Debian's nginx in the foreground (``daemon off``) on a free loopback port, stopped by pid."""

    def __init__(self, directory: Path, site_config: str) -> None:
        self.binary = tls.require_tool("nginx", "nginx")
        self.directory = directory
        self.site_config = site_config
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.access_log = directory / "access.log"
        self.error_log = directory / "error.log"
        self.pid_file = directory / "nginx.pid"

    def start(self, timeout: float = 10.0) -> Nginx:
        for _ in range(3):
            self.port = rawhttp.free_port()
            self._spawn()
            # nginx writes its pid file once its configuration loaded and its port is bound.
            e2e.wait_until(lambda: self.pid_file.exists() or not self.running, timeout)
            if self.pid_file.exists() and self.running:
                return self
            taken = "Address already in use" in self.errors()
            self.stop()
            if not taken:
                raise e2e.E2EError(f"nginx did not listen on {self.port} within {timeout} s:\n{self.errors()}")
        raise e2e.E2EError("another process took the free port three times in a row")

    def _spawn(self) -> None:
        (self.directory / "hostguard.conf").write_text(
            replace_argument(self.site_config, "listen", "443", f"{LOOPBACK}:{self.port}")
        )
        temp = self.directory / "temp"
        temp.mkdir(exist_ok=True)
        # As Debian's /etc/nginx/nginx.conf does: the recipe is included inside http {}.
        (self.directory / "nginx.conf").write_text(
            "worker_processes 1;\n"
            "events { worker_connections 64; }\n"
            "http {\n"
            f"    {LOG_FORMAT}\n"
            f"    access_log {self.access_log} hostguard_test;\n"
            + "".join(f"    {kind}_temp_path {temp / kind};\n" for kind in ("client_body", "proxy", "fastcgi"))
            + "".join(f"    {kind}_temp_path {temp / kind};\n" for kind in ("uwsgi", "scgi"))
            + f"    include {self.directory / 'hostguard.conf'};\n"
            "}\n"
        )
        self.pid_file.unlink(missing_ok=True)
        globals_ = f"daemon off; pid {self.pid_file}; error_log {self.error_log} info;"
        with (self.directory / "nginx.stderr").open("wb") as stderr:
            self.process = subprocess.Popen(
                [self.binary, "-p", str(self.directory), "-c", str(self.directory / "nginx.conf"), "-g", globals_],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def errors(self) -> str:
        logs = (self.directory / "nginx.stderr", self.error_log)
        return "".join(path.read_text(errors="replace")[-4000:] for path in logs if path.exists())

    def log(self) -> list[Logged]:
        entries = []
        for line in self.access_log.read_text().splitlines():
            row = json.loads(line)
            entries.append(
                Logged(
                    int(row["connection"]),
                    row["sni"],
                    row["host"],
                    row["uri"],
                    row["protocol"],
                    int(row["status"]),
                    row["upstream"],
                )
            )
        return entries

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            e2e.stop_group(process, signal.SIGQUIT)


@dataclass
class Stack:
    nginx: Nginx
    eu: Server
    us: Server
    home: Path
    directory: Path


def gunicorn_environment() -> dict[str, str]:
    """The recipe's hostguard settings, as the demo site reads them from the environment."""
    settings: dict[str, Any] = {}
    exec(recipe_block("nginx-settings", "python").replace(PROXY_ADDRESS, LOOPBACK), settings)
    config = recipe_block("nginx-config", "nginx")
    header = settings["HOSTGUARD_SNI_HEADER"]
    assert re.search(rf"^\s*proxy_set_header {re.escape(header)} \$ssl_server_name;", config, flags=re.M)
    proto_header = settings["SECURE_PROXY_SSL_HEADER"]
    assert proto_header == ("HTTP_X_FORWARDED_PROTO", "https")
    assert re.search(r"^\s*proxy_set_header X-Forwarded-Proto \$scheme;", config, flags=re.M)
    return {
        "HOSTGUARD_SNI_HEADER": header,
        "HOSTGUARD_TRUSTED_PROXIES": ",".join(settings["HOSTGUARD_TRUSTED_PROXIES"]),
        # The demo leaves SECURE_PROXY_SSL_HEADER's job to gunicorn: it believes
        # X-Forwarded-Proto from these peers.
        "FORWARDED_ALLOW_IPS": LOOPBACK,
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("nginx")
    tls.require_tool("nginx", "nginx")
    ca = tls.CertificateAuthority.create(directory / "ca")
    cert, key = ca.issue(directory / "server", ["*.shops.example"])
    home = tls.nss_home(directory / "home", ca)
    e2e.require_postgres()
    with e2e.postgres_database(prefix="hostguard_e2e_nginx") as url:
        site = Site(directory / "site", database_url=url)
        with site:
            site.load(DATA)
            env = gunicorn_environment()
            eu = site.server(deployment="eu-1", workers=1, threads=4, env=env).start()
            us = site.server(deployment="us-1", workers=1, threads=4, env=env).start()
            config = recipe_block("nginx-config", "nginx")
            config = replace_argument(config, "ssl_certificate", CERTIFICATE[0], str(cert))
            config = replace_argument(config, "ssl_certificate_key", CERTIFICATE[1], str(key))
            for name, server in (("eu-1", eu), ("us-1", us)):
                config = replace_argument(config, "server", UPSTREAMS[name], f"{LOOPBACK}:{server.port}")
            nginx = Nginx(directory / "nginx", config)
            nginx.directory.mkdir()
            try:
                yield Stack(nginx.start(), eu, us, home, directory)
            finally:
                nginx.stop()


def restarts_for_misdirected_request(net_log: Path) -> int:
    """How many requests Chromium's NetLog says it restarted after a 421."""
    text = net_log.read_text()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:
        # A browser that did not shut down cleanly leaves the events list open.
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    event_type = log["constants"]["logEventTypes"]["HTTP_TRANSACTION_RESTART_MISDIRECTED_REQUEST"]
    return sum(1 for event in log["events"] if event["type"] == event_type)


def test_a_coalesced_request_ends_on_the_deployment_serving_its_tenant(stack: Stack) -> None:
    net_log = stack.directory / "netlog.json"
    pages = {}
    with chromium(dict.fromkeys(NAMES, LOOPBACK), home=stack.home, net_log=net_log) as browser:
        page = browser.new_page()
        # charlie before bravo: charlie can then only be coalesced onto alpha's connection
        # (to eu-1), and the SNI check is what refuses it.
        for tenant in ("alpha", "charlie", "bravo"):
            response = page.goto(f"https://{tenant}.shops.example:{stack.nginx.port}/", timeout=15_000)
            assert response is not None
            pages[tenant] = (response.status, page.inner_text("body"))
    assert pages["alpha"][0] == 200
    assert "You reached tenant Alpha (alpha) on deployment eu-1." in pages["alpha"][1]
    # What the visitor sees: the right tenant's page, served by its deployment.
    assert pages["charlie"][0] == 200
    assert "You reached tenant Charlie (charlie) on deployment eu-1." in pages["charlie"][1]
    assert pages["bravo"][0] == 200
    assert "You reached tenant Bravo (bravo) on deployment us-1." in pages["bravo"][1]

    eu_upstream, us_upstream = f"{LOOPBACK}:{stack.eu.port}", f"{LOOPBACK}:{stack.us.port}"
    documents = [entry for entry in stack.nginx.log() if entry.uri == "/"]
    report = "\n".join(map(str, documents))
    assert all(entry.protocol == "HTTP/2.0" for entry in documents), report
    assert len(documents) == 5, report
    alpha, charlie_first, charlie_retry, bravo_first, bravo_retry = documents
    assert (alpha.host, alpha.sni, alpha.status, alpha.upstream) == (NAMES[0], NAMES[0], 200, eu_upstream)
    # charlie rode alpha's connection to eu-1, which refused it; the retry came on a
    # connection of charlie's own, which nginx sent to eu-1 again.
    assert charlie_first.connection == alpha.connection, report
    assert (charlie_first.host, charlie_first.sni, charlie_first.status) == (NAMES[2], NAMES[0], 421), report
    assert charlie_first.upstream == eu_upstream, report
    assert charlie_retry.connection != alpha.connection, report
    assert (charlie_retry.host, charlie_retry.sni, charlie_retry.status) == (NAMES[2], NAMES[2], 200), report
    assert charlie_retry.upstream == eu_upstream, report
    # bravo rode an eu-1 connection (alpha's or charlie's), was refused there, and its
    # retry on a new connection opened for bravo went to us-1.
    assert bravo_first.connection in (alpha.connection, charlie_retry.connection), report
    assert (bravo_first.host, bravo_first.status, bravo_first.upstream) == (NAMES[1], 421, eu_upstream), report
    assert bravo_first.sni != NAMES[1], report
    assert bravo_retry.connection not in (alpha.connection, charlie_retry.connection), report
    assert (bravo_retry.host, bravo_retry.sni, bravo_retry.status) == (NAMES[1], NAMES[1], 200), report
    assert bravo_retry.upstream == us_upstream, report

    # Why eu-1 refused each: the step of the decision that applied.
    refusals = re.findall(r"refused (\w+): host=(\S+)", stack.eu.stderr(limit=100_000))
    assert ("sni_mismatch", NAMES[2]) in refusals, refusals
    assert ("other_deployment", NAMES[1]) in refusals, refusals
    assert ("sni_mismatch", NAMES[1]) not in refusals, "step 7 (other_deployment) comes before the SNI check"
    # Chromium restarted exactly the requests nginx saw refused (the documents' and any others').
    refused = [entry for entry in stack.nginx.log() if entry.status == 421]
    assert restarts_for_misdirected_request(net_log) == len(refused) >= 2, refused
    print(f"\nnginx access log (documents only):\n{report}")
