"""End to end: two deployments (eu-1, us-1) of gunicorn workers on one PostgreSQL database.

A third process moves a tenant from eu-1 to us-1, as staff would in the admin of
either. Within HOSTGUARD_REFRESH_SECONDS + 0.5 s every worker of us-1 must answer
it 200 and every worker of eu-1 421 — measured per worker from the access log.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests import e2e
from tests.e2e import Server, Site
from tests.rawhttp import concurrent_requests, http_request

pytestmark = pytest.mark.e2e

REFRESH = 1.0
BOUND = REFRESH + 0.5
WORKERS = 2
DATA = {
    "deployments": [{"name": "eu-1"}, {"name": "us-1"}],
    "tenants": [
        {"slug": "mover", "name": "Mover", "deployment": "eu-1", "authorities": ["mover.example", "*.mover.example"]},
        {"slug": "euro", "name": "Euro", "deployment": "eu-1", "authorities": ["euro.example"]},
        {"slug": "yank", "name": "Yank", "deployment": "us-1", "authorities": ["yank.example"]},
    ],
}


@dataclass
class Fleet:
    site: Site
    eu: Server
    us: Server


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    e2e.require_postgres()
    with e2e.postgres_database() as url:
        site = Site(tmp_path_factory.mktemp("deployments"), database_url=url, refresh_seconds=REFRESH)
        with site:
            site.load(DATA)
            eu = site.server(deployment="eu-1", workers=WORKERS).start()
            us = site.server(deployment="us-1", workers=WORKERS).start()
            yield Fleet(site, eu, us)


def ping(host: str, seq: int) -> bytes:
    # The sequence number lands in the access log next to the pid of the worker.
    return http_request("GET", f"/api/ping?seq={seq}", host=host)


def every_worker(server: Server, host: str) -> set[int]:
    """The statuses each worker answers for ``host`` right now (one request per worker)."""
    return {r.status for r in concurrent_requests(server.port, [http_request("GET", "/api/ping", host=host)] * WORKERS)}


@dataclass
class Probe:
    seq: int
    server: str
    sent: float
    received: float
    status: int


def test_a_moved_tenant_settles_on_every_worker_of_both_deployments(fleet: Fleet) -> None:
    # Every worker has its snapshot and its poller before the move.
    assert every_worker(fleet.eu, "shop.mover.example") == {200}
    assert every_worker(fleet.us, "shop.mover.example") == {421}
    assert every_worker(fleet.us, "yank.example") == {200}

    moved_at = float(
        e2e.change_in_other_process(
            fleet.site,
            "import os, time\n"
            "tenant = Tenant.objects.get(slug='mover')\n"
            "tenant.deployment = Deployment.objects.get(name='us-1')\n"
            "tenant.save()\n"
            # Straight out: the interpreter's shutdown would only delay the first probe.
            "print(time.monotonic(), flush=True)\n"
            "os._exit(0)\n",
        ).split()[-1]
    )

    servers = {"eu-1": fleet.eu, "us-1": fleet.us}
    wanted = {"eu-1": 421, "us-1": 200}
    probes: list[Probe] = []
    seq = 0
    # Poll both deployments on fresh connections until well past the bound, then
    # reach every worker explicitly (the kernel need not spread connections evenly).
    while time.monotonic() < moved_at + BOUND + 0.5:
        for name, server in servers.items():
            seq += 1
            sent = time.monotonic()
            status = server.request(ping("shop.mover.example", seq)).status
            probes.append(Probe(seq, name, sent, time.monotonic(), status))
    for name, server in servers.items():
        first = seq + 1
        sent = time.monotonic()
        requests = [ping("shop.mover.example", seq + i + 1) for i in range(WORKERS)]
        for i, response in enumerate(concurrent_requests(server.port, requests)):
            probes.append(Probe(first + i, name, sent, time.monotonic(), response.status))
        seq += WORKERS

    assert {p.status for p in probes} <= {200, 421}, "no 5xx while tenants move"
    pids = {
        int(entry.request_line.split("seq=")[1].split()[0]): entry.pid
        for server in servers.values()
        for entry in server.access_log()
        if "seq=" in entry.request_line
    }
    report = []
    for name in servers:
        workers = {pids[p.seq] for p in probes if p.server == name}
        assert len(workers) == WORKERS, f"{name}: only workers {workers} answered"
        for pid in sorted(workers):
            mine = [p for p in probes if p.server == name and pids[p.seq] == pid]
            stale = [p for p in mine if p.status != wanted[name]]
            fresh = [p for p in mine if p.status == wanted[name]]
            last_stale = max((p.sent for p in stale), default=moved_at) - moved_at
            first_fresh = min(p.received for p in fresh if p.sent >= moved_at + last_stale) - moved_at
            old = f"last old answer at {last_stale:.2f} s" if stale else "no old answer after the move"
            report.append(f"{name} worker {pid}: {old}, new answer from {first_fresh:.2f} s")
            # A worker that still answered the old verdict BOUND seconds after the commit
            # failed the promise; every later answer of it must be the new one.
            assert last_stale < BOUND, "\n".join(report)
            assert all(p.status == wanted[name] for p in mine if p.sent >= moved_at + BOUND)
    first_probe = min(p.sent for p in probes) - moved_at
    print(
        "\nmove eu-1 → us-1, seconds after the commit, per worker (bound %.1f s, first probe at %.2f s):\n  %s"
        % (BOUND, first_probe, "\n  ".join(report))
    )

    # Neighbours on either side never noticed.
    assert every_worker(fleet.eu, "euro.example") == {200}
    assert every_worker(fleet.us, "yank.example") == {200}
    assert every_worker(fleet.eu, "yank.example") == {421}
