"""End to end: the policy database goes away under running gunicorn servers, and comes back.

PostgreSQL is reached through a TCP relay (tests/relay.py) that the test cuts:
every open connection is reset and new ones are refused, as when the database host
dies. Running servers must keep answering from their last snapshot (no 5xx, one
warning per refresh interval per worker, not one per request); a server started
during the outage answers 503 + Retry-After for gated requests and recovers by
itself once the database is back.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass

import pytest

from tests import e2e, rawhttp
from tests.e2e import Server, Site
from tests.rawhttp import concurrent_requests, http_request
from tests.relay import Relay

pytestmark = pytest.mark.e2e

REFRESH = 1.0
WORKERS = 2
DATA = {
    "deployments": [{"name": "eu-1"}, {"name": "us-1"}],
    "tenants": [
        {"slug": "acme", "name": "Acme", "deployment": "eu-1", "authorities": ["acme.example"]},
        {"slug": "globex", "name": "Globex", "deployment": "us-1", "authorities": ["globex.example"]},
    ],
}


@dataclass
class Outage:
    site: Site
    relay: Relay
    direct_url: str


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    e2e.require_postgres()
    with e2e.postgres_database() as direct_url, Relay(("127.0.0.1", 5432)) as relay:
        relayed = direct_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{relay.port}/")
        site = Site(tmp_path_factory.mktemp("outage"), database_url=relayed, deployment="eu-1", refresh_seconds=REFRESH)
        with site:  # migrates: before any cut
            site.load(DATA)
            yield Outage(site, relay, direct_url)


@pytest.fixture(autouse=True)
def _restored(outage: Outage) -> Iterator[None]:
    outage.relay.restore()
    yield
    outage.relay.restore()


def statuses(server: Server, host: str | None, path: str = "/api/ping") -> set[int]:
    """What every worker answers right now (one request per worker, on fresh connections)."""
    return {r.status for r in concurrent_requests(server.port, [http_request("GET", path, host=host)] * WORKERS)}


def policy_warnings(server: Server) -> list[str]:
    return [line for line in server.stderr(limit=10_000_000).splitlines() if " WARNING hostguard.policy " in line]


def test_running_servers_answer_from_their_last_snapshot(outage: Outage) -> None:
    with outage.site.server(workers=WORKERS) as server:
        assert statuses(server, "acme.example") == {200}  # every worker loads its snapshot
        before = len(policy_warnings(server))

        outage.relay.cut()
        cut_at = time.monotonic()
        while time.monotonic() - cut_at < 3.5 * REFRESH:
            assert statuses(server, "acme.example") == {200}
            # Views that read request.tenant keep answering: it comes from the snapshot.
            assert statuses(server, "acme.example", "/api/whoami") == {200}
            tenants = concurrent_requests(
                server.port, [http_request("GET", "/api/tenant", host="acme.example")] * WORKERS
            )
            for response in tenants:
                assert response.status == 200
                tenant = response.json()["tenant"]
                assert isinstance(tenant.pop("id"), int)
                assert tenant == {"slug": "acme", "name": "Acme", "active": True, "deployment": "eu-1"}
            assert statuses(server, "globex.example") == {421}
            assert statuses(server, "evil.example") == {421}
            assert statuses(server, "a..b") == {400}
            assert statuses(server, "evil.example", "/healthz") == {200}
        elapsed = time.monotonic() - cut_at

        warnings = policy_warnings(server)[before:]
        print(f"\n{len(warnings)} policy warnings from {WORKERS} workers in {elapsed:.1f} s of outage")
        # Noticed, but once per refresh interval per worker, not once per request.
        assert warnings, server.stderr()
        assert len(warnings) <= WORKERS * (elapsed / REFRESH + 1)
        assert all("serving the last good policy" in line for line in warnings)
        assert sum("still failing" not in line for line in warnings) <= WORKERS  # one traceback per worker

        # Staff change the policy on a path that still reaches the database; once
        # the relay is back, the running workers catch up by themselves.
        outage.site.run(
            [
                "-c",
                "import django\ndjango.setup()\nfrom hostguard.models import Deployment, Tenant\n"
                "tenant = Tenant.objects.get(slug='globex')\n"
                "tenant.deployment = Deployment.objects.get(name='eu-1')\ntenant.save()\n",
            ],
            env=outage.site.env(DATABASE_URL=outage.direct_url),
        )
        assert statuses(server, "globex.example") == {421}  # still cut off: the last snapshot
        outage.relay.restore()
        caught_up = e2e.wait_until(lambda: statuses(server, "globex.example") == {200}, timeout=REFRESH + 3)
        assert caught_up is not None
        assert caught_up < REFRESH + 1
        print(f"after the database came back, every worker saw the change made meanwhile in {caught_up:.2f} s")
        assert "reached its database again" in server.stderr(limit=10_000_000)

        # Put globex back for the other test.
        outage.site.python(
            "from hostguard.models import Deployment, Tenant\n"
            "tenant = Tenant.objects.get(slug='globex')\n"
            "tenant.deployment = Deployment.objects.get(name='us-1')\ntenant.save()\n"
        )


def test_a_server_started_during_the_outage_answers_503_then_recovers(outage: Outage) -> None:
    outage.relay.cut()
    # gunicorn and Django start without the database: health checks pass at once.
    with outage.site.server(workers=WORKERS) as server:
        for host in ("acme.example", "globex.example", "evil.example"):
            # No snapshot ever loaded: neither an accidental allow nor a guessed 421.
            responses = concurrent_requests(server.port, [http_request("GET", "/api/ping", host=host)] * WORKERS)
            assert {r.status for r in responses} == {503}
            for response in responses:
                assert response.header("Retry-After") == "1"
                assert response.header("Content-Type") == "application/problem+json"
                assert response.json()["error"] == "service_unavailable"
        assert statuses(server, "acme.example", "/healthz") == {200}
        assert statuses(server, "a..b") == {400}  # malformed needs no policy
        assert statuses(server, "localhost") == {200}  # HOSTGUARD_ALWAYS_ALLOW needs none either
        assert len(policy_warnings(server)) <= WORKERS * 2

        outage.relay.restore()
        recovered = e2e.wait_until(lambda: statuses(server, "acme.example") == {200}, timeout=3 * REFRESH + 2)
        assert recovered is not None, server.stderr()
        print(f"\nrecovered on every worker {recovered:.2f} s after the database came back")
        assert recovered < 2 * REFRESH + 1
        assert statuses(server, "globex.example") == {421}


def test_a_worker_started_while_the_database_hangs_answers_503_at_once(outage: Outage) -> None:
    # A hanging database, not a refused one: connections are accepted, nothing answers.
    outage.relay.stall()
    try:
        server = outage.site.server(workers=WORKERS)
        with server:  # gunicorn starts and answers health checks without the database
            timings = []
            for _ in range(8):
                started = time.monotonic()
                responses = concurrent_requests(
                    server.port, [http_request("GET", "/api/ping", host="acme.example")] * WORKERS
                )
                timings.append(time.monotonic() - started)
                assert {r.status for r in responses} == {503}
                assert all(r.header("Retry-After") == "1" for r in responses)
            print(
                f"\n503s while the database hangs, per round of {WORKERS}: {', '.join(f'{t:.2f}' for t in timings)} s"
            )
            # A worker waits at most 2 s for its first snapshot as it boots (before it
            # serves); after that, no request waits on the hanging database.
            assert max(timings) < 0.5
            assert statuses(server, "acme.example", "/healthz") == {200}
            assert statuses(server, "localhost") == {200}
            # The stall is said in the log, not passed over in silence.
            said = e2e.wait_until(
                lambda: "has waited on the database" in server.stderr(limit=10_000_000), timeout=REFRESH + 5
            )
            assert said is not None, server.stderr()
            outage.relay.restore()
            recovered = e2e.wait_until(lambda: statuses(server, "acme.example") == {200}, timeout=15)
            assert recovered is not None, server.stderr()
            print(f"recovered on every worker {recovered:.2f} s after the database answered again")
    finally:
        outage.relay.restore()


def test_a_database_that_hangs_under_running_servers_is_said_in_the_log(outage: Outage) -> None:
    # With persistent connections a hang is not an error the driver reports: the
    # refresher's query simply never returns. The watchdog says so while it lasts.
    server = outage.site.server(workers=WORKERS, env={"CONN_MAX_AGE": "60"})
    with server:
        assert statuses(server, "acme.example") == {200}
        outage.relay.stall()
        try:
            stalled_at = time.monotonic()
            while time.monotonic() - stalled_at < REFRESH + 3.5:
                # Requests never wait on the hanging database.
                started = time.monotonic()
                assert statuses(server, "acme.example") == {200}
                assert statuses(server, "evil.example") == {421}
                assert time.monotonic() - started < 1.0
            log = server.stderr(limit=10_000_000)
            assert "hostguard's policy refresh has waited on the database" in log, log[-3000:]
        finally:
            outage.relay.restore()
        ended = e2e.wait_until(
            lambda: "stalled policy refresh has ended" in server.stderr(limit=10_000_000), timeout=15
        )
        assert ended is not None, server.stderr()


def test_with_preload_a_worker_restarted_in_an_outage_never_serves_an_older_policy(outage: Outage) -> None:
    # gunicorn --preload: the site (and a snapshot) load once in the master, and every
    # worker forks with that snapshot. A worker restarted later (a crash, max_requests)
    # must not answer from it while its siblings had moved on.
    server = outage.site.server(workers=1, env={"GUNICORN_CMD_ARGS": "--preload"})
    with server:
        assert statuses(server, "globex.example") == {421}  # us-1's tenant
        outage.site.python(
            "from hostguard.models import Deployment, Tenant\n"
            "tenant = Tenant.objects.get(slug='globex')\n"
            "tenant.deployment = Deployment.objects.get(name='eu-1')\ntenant.save()\n"
        )
        assert e2e.wait_until(lambda: statuses(server, "globex.example") == {200}, timeout=REFRESH + 3) is not None
        try:
            # While the database is reachable, a restarted worker starts from the master's
            # snapshot brought up to date before the fork: it serves globex at once.
            killed = {entry.pid for entry in server.access_log()}
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            assert e2e.wait_until(lambda: statuses(server, "globex.example") == {200}, timeout=10) is not None
            # Move it back, then cut the database and restart the worker again: the master
            # could not bring its snapshot up to date, so the new worker answers 503 until
            # the database confirms it — never globex's old 200.
            outage.site.python(
                "from hostguard.models import Deployment, Tenant\n"
                "tenant = Tenant.objects.get(slug='globex')\n"
                "tenant.deployment = Deployment.objects.get(name='us-1')\ntenant.save()\n"
            )
            assert e2e.wait_until(lambda: statuses(server, "globex.example") == {421}, timeout=REFRESH + 3) is not None
            outage.relay.cut()
            killed = {entry.pid for entry in server.access_log()} - killed
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            seen: set[int] = set()
            while time.monotonic() < deadline:
                with suppress(OSError, rawhttp.IncompleteResponse):
                    seen |= statuses(server, "globex.example")
                time.sleep(0.1)
            assert 200 not in seen, seen
            assert seen & {503, 421}
        finally:
            outage.relay.restore()
        assert e2e.wait_until(lambda: statuses(server, "globex.example") == {421}, timeout=15) is not None
