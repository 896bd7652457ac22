"""End to end: project/asgi.py under uvicorn (2 workers) — the middleware's async path on a real ASGI server.

The same smoke as under gunicorn: served hosts 200, foreign ones 421, malformed
ones 400, health checks exempt, and a change made by another process reaches every
worker. Plus what differs under uvicorn's HTTP/1.1 parser (h11): it refuses a
request without Host itself, and leaves an absolute-form target in the path.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests import e2e
from tests.e2e import Server, Site
from tests.rawhttp import LOOPBACK, Response, http_request

pytestmark = pytest.mark.e2e

REFRESH = 1.0
DATA = {
    "deployments": [{"name": "eu-1"}, {"name": "us-1"}],
    "tenants": [
        {"slug": "acme", "name": "Acme", "deployment": "eu-1", "authorities": ["acme.example", "*.acme.example"]},
        {"slug": "globex", "name": "Globex", "deployment": "us-1", "authorities": ["globex.example"]},
    ],
}


class UvicornServer(Server):
    """``uvicorn project.asgi:application`` in place of gunicorn, same life cycle."""

    program = "uvicorn"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "project.asgi:application",
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--timeout-graceful-shutdown",
            "2",
        ]

    def environment(self) -> dict[str, str]:
        return self.site.env(HOSTGUARD_DEPLOYMENT=self.deployment, **self.extra_env)

    def wait_for_workers(self, timeout: float | None = None) -> set[int]:
        # uvicorn's access log names no worker; /api/ping answers with its pid instead.
        pids: set[int] = set()

        def all_answered() -> bool:
            pids.add(self.request(http_request("GET", "/api/ping", host="localhost")).json()["pid"])
            return len(pids) >= self.workers

        if e2e.wait_until(all_answered, timeout or self.startup_timeout, interval=0) is None:
            raise self._fail(f"only {len(pids)} of {self.workers} uvicorn workers answered")
        return pids


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with Site(tmp_path_factory.mktemp("asgi"), deployment="eu-1", refresh_seconds=REFRESH) as site:
        site.load(DATA)
        yield site


@pytest.fixture(scope="module")
def server(site: Site) -> Iterator[UvicornServer]:
    uvicorn = UvicornServer(site, workers=2)
    site.servers.append(uvicorn)
    with uvicorn:
        yield uvicorn


def get(server: Server, host: str | bytes | None, target: str = "/api/ping", **kwargs: object) -> Response:
    return server.request(http_request("GET", target, host=host, **kwargs))  # type: ignore[arg-type]


def test_served_hosts_pass_with_their_tenant(server: UvicornServer) -> None:
    for host in ("acme.example", "shop.acme.example", "ACME.example.", "acme.example:80"):
        response = get(server, host, "/api/whoami")
        assert response.status == 200, response
        assert response.json() == {"tenant": "acme", "deployment": "eu-1"}


@pytest.mark.parametrize("host", ["globex.example", "evil.example", "acme.example.evil"])
def test_foreign_hosts_get_421(server: UvicornServer, host: str) -> None:
    response = get(server, host)
    assert response.status == 421, response
    assert response.header("Content-Type") == "application/problem+json"
    assert response.header("Cache-Control") == "no-store"
    assert response.json()["error"] == "misdirected_request"
    assert not response.has_header("Set-Cookie")


def test_a_foreign_head_request_gets_421_without_a_body(server: UvicornServer) -> None:
    response = server.request(http_request("HEAD", "/", host="globex.example"))
    assert response.status == 421
    assert response.body == b""
    assert response.trailing == b""


@pytest.mark.parametrize(
    "host", ["a..b", "acme.example:0", "user@acme.example", "acme.example, evil.example", b"\xc3\xa9.example"]
)
def test_malformed_hosts_get_400(server: UvicornServer, host: str | bytes) -> None:
    response = get(server, host, "/", headers=[("Accept", "application/json")])
    assert response.status == 400, response
    assert response.json()["error"] == "malformed_host"


def test_a_missing_host_is_refused_by_uvicorn_itself(server: UvicornServer) -> None:
    # h11 answers 400 before the application sees the request.
    assert get(server, None).status == 400


def test_an_absolute_form_target_that_disagrees_with_host_is_malformed(server: UvicornServer) -> None:
    # uvicorn passes "http://globex.example/api/ping" as the path; hostguard reads
    # the target's authority from it, as from gunicorn's RAW_URI.
    response = get(server, "acme.example", "http://globex.example/api/ping")
    assert response.status == 400, response
    assert get(server, "acme.example", "http://acme.example:8080/api/ping").status == 400


def test_health_checks_pass_whatever_the_host(server: UvicornServer) -> None:
    assert get(server, "evil.example", "/healthz").status == 200


def test_a_change_in_another_process_reaches_every_uvicorn_worker(site: Site, server: UvicornServer) -> None:
    e2e.change_in_other_process(
        site, "Tenant.objects.filter(slug='globex').update(deployment=Deployment.objects.get(name='eu-1'))"
    )

    def served_everywhere() -> bool:
        # Several requests per check: connections land on either worker.
        return all(get(server, "globex.example").status == 200 for _ in range(8))

    took = e2e.wait_until(served_everywhere, timeout=REFRESH + 3)
    assert took is not None
    assert took < REFRESH + 1
    pids: set[int] = set()
    for _ in range(200):
        response = get(server, "globex.example")
        assert response.status == 200
        pids.add(response.json()["pid"])
        if len(pids) == server.workers:
            break
    assert len(pids) == server.workers, "every worker serves the moved tenant"
