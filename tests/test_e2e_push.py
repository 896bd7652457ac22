"""End to end on PostgreSQL: changes arrive by push, fall back to polling, never skip or repeat.

Two deployments (eu-1, us-1) of two gunicorn workers each on one PostgreSQL database,
with ``HOSTGUARD_REFRESH_SECONDS = 5``: polling alone would take up to five seconds,
so a change every worker serves within a second came by ``NOTIFY``. The demo's
``/api/ping`` answers with the worker's pid and policy version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from hostguard.push import STABLE
from tests import e2e
from tests.e2e import Server, Site
from tests.rawhttp import concurrent_requests, http_request

pytestmark = [pytest.mark.e2e, pytest.mark.postgresql]

REFRESH = 5.0
WORKERS = 2
PUSHED = 1.0  # well below REFRESH: only a push arrives this fast on every worker
DATA = {
    "deployments": [{"name": "eu-1"}, {"name": "us-1"}],
    "tenants": [
        {"slug": "euro", "name": "Euro", "deployment": "eu-1", "authorities": ["euro.example"]},
        {"slug": "yank", "name": "Yank", "deployment": "us-1", "authorities": ["yank.example"]},
    ],
}


@dataclass
class Fleet:
    site: Site
    url: str
    servers: dict[str, Server]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    e2e.require_postgres()
    with e2e.postgres_database() as url:
        site = Site(tmp_path_factory.mktemp("push"), database_url=url, refresh_seconds=REFRESH)
        with site:
            site.load(DATA)
            servers = {name: site.server(deployment=name, workers=WORKERS).start() for name in ("eu-1", "us-1")}
            yield Fleet(site, url, servers)


def add(fleet: Fleet, *hosts_and_tenants: str) -> float:
    """Add authorities (``host=tenant`` pairs) in one transaction of another process; its commit time."""
    code = (
        "import os, sys, time\n"
        "from django.db import transaction\n"
        "with transaction.atomic():\n"
        "    for pair in sys.argv[1:]:\n"
        "        host, slug = pair.split('=')\n"
        "        Authority.objects.create(host=host, tenant=Tenant.objects.get(slug=slug))\n"
        "print(time.monotonic(), flush=True)\n"
        "os._exit(0)\n"
    )
    return float(e2e.change_in_other_process(fleet.site, code, *hosts_and_tenants).split()[-1])


def served_by_every_worker(server: Server, host: str, deadline: float) -> dict[int, float]:
    """When each worker of ``server`` first answered ``host`` with 200 (and every later probe too)."""
    first: dict[int, float] = {}
    while time.monotonic() < deadline and len(first) < WORKERS:
        requests = [http_request("GET", "/api/ping", host=host)] * WORKERS
        for response in concurrent_requests(server.port, requests):
            if response.status == 200:
                first.setdefault(response.json()["pid"], time.monotonic())
            else:
                assert response.status == 421, response
        time.sleep(0.002)
    return first


def propagation(fleet: Fleet, host: str, tenant: str, deployment: str, bound: float) -> float:
    committed = add(fleet, f"{host}={tenant}")
    seen = served_by_every_worker(fleet.servers[deployment], host, committed + bound + 1.0)
    assert len(seen) == WORKERS, f"{host}: only workers {sorted(seen)} served it within {bound + 1.0:.1f} s"
    return max(seen.values()) - committed


def test_changes_reach_every_worker_by_push(fleet: Fleet) -> None:
    delays = []
    for number in range(6):
        deployment, tenant = ("eu-1", "euro") if number % 2 == 0 else ("us-1", "yank")
        delays.append(propagation(fleet, f"push{number}.example", tenant, deployment, PUSHED))
    print(f"\npush: commit → every worker of the deployment serves it: {', '.join(f'{d:.3f}' for d in delays)} s")
    # Polling every 5 s would land one of six past a second (each is uniform in 0–5 s).
    assert max(delays) < PUSHED, delays


def terminate_listeners(url: str) -> int:
    import psycopg

    from hostguard.push import APPLICATION_NAME

    with psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True, connect_timeout=5) as db:
        rows = db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            [APPLICATION_NAME],
        ).fetchall()
    return len(rows)


def test_without_the_listening_connection_changes_still_arrive_by_polling(fleet: Fleet) -> None:
    assert terminate_listeners(fleet.url) == 2 * WORKERS, "each worker listens on a connection of its own"
    stop = threading.Event()

    def keep_them_out() -> None:
        while not stop.is_set():
            terminate_listeners(fleet.url)
            stop.wait(0.1)

    killer = threading.Thread(target=keep_them_out, daemon=True)
    killer.start()
    try:
        time.sleep(0.5)
        delay = propagation(fleet, "polled.example", "euro", "eu-1", REFRESH)
        print(f"\nlisteners cut: commit → every worker serves it in {delay:.2f} s (polling every {REFRESH:g} s)")
        assert delay < REFRESH + 1.0
    finally:
        stop.set()
        killer.join(5)
    # The listeners come back by themselves (backoff up to 30 s: at most a few seconds here)…
    assert e2e.wait_until(lambda: terminate_listeners_count(fleet.url) == 2 * WORKERS, timeout=40) is not None
    # …and the push with them.
    assert propagation(fleet, "pushed-again.example", "yank", "us-1", PUSHED) < PUSHED

    def recovered() -> bool:
        logs = [server.stderr(limit=10_000_000) for server in fleet.servers.values()]
        return all(log.count("hostguard is listening for policy changes again") == WORKERS for log in logs)

    assert e2e.wait_until(recovered, timeout=STABLE + 20) is not None
    for server in fleet.servers.values():
        log = server.stderr(limit=10_000_000)
        # Once per outage per worker, not once per reconnection attempt (they kept dropping).
        assert log.count("hostguard lost its connection for policy changes") == WORKERS, log[-3000:]


def terminate_listeners_count(url: str) -> int:
    """How many listening connections are there (without ending them)."""
    import psycopg

    from hostguard.push import APPLICATION_NAME

    with psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True, connect_timeout=5) as db:
        row = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()",
            [APPLICATION_NAME],
        ).fetchone()
    return int(row[0]) if row else 0


def test_two_deployments_writing_at_once_skip_nothing(fleet: Fleet) -> None:
    results: list[float] = []
    errors: list[BaseException] = []

    def writer(prefix: str, tenant: str) -> None:
        try:
            for batch in range(5):
                hosts = [f"{prefix}{batch}-{n}.example={tenant}" for n in range(3)]
                results.append(add(fleet, *hosts))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=("eu", "euro")),
        threading.Thread(target=writer, args=("us", "yank")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    version = int(
        e2e.change_in_other_process(
            fleet.site, "from hostguard.models import PolicyStamp\nprint(PolicyStamp.objects.get(pk=1).version)"
        ).split()[-1]
    )
    for deployment, prefix in (("eu-1", "eu"), ("us-1", "us")):
        server = fleet.servers[deployment]
        for batch in range(5):
            for n in range(3):
                deadline = max(max(results), time.monotonic()) + REFRESH + 1.0
                seen = served_by_every_worker(server, f"{prefix}{batch}-{n}.example", deadline)
                assert len(seen) == WORKERS, (deployment, batch, n)
        pings = concurrent_requests(server.port, [http_request("GET", "/api/ping", host="localhost")] * 4)
        # Every worker is at the database's version: no change skipped, none pending.
        assert {response.json()["policy_version"] for response in pings} == {version}
