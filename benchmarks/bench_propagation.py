"""Propagation on PostgreSQL: commit → every worker, by push and by polling alone; latency under changes.

    python -m benchmarks.bench_propagation [--quick] [--rounds N]

Two deployments (eu-1, us-1) of two gunicorn workers each (the shipped config) on one
throwaway PostgreSQL database holding 100,000 authorities (quick: 10,000), with
``HOSTGUARD_REFRESH_SECONDS = 5``. This process commits each change through the ORM
(hostguard's own write path: change log, stamp, ``NOTIFY``) and then asks every
worker of the deployment that serves the new host, over and over, until each has
answered it 200; the figure is the time from the commit to the last worker's first
200 (the probe loop's own resolution is about a millisecond).

* propagation with the push (``HOSTGUARD_PUSH = True``), p50 and p99;
* propagation with polling alone (``HOSTGUARD_PUSH = False``), p50 and p99;
* request latency p99 (wrk, served host) on eu-1 while idle and while this process
  commits 10 changes a second, side by side.

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth) and wrk; without them
it says so and measures nothing.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.common import goal, heading

BASE = "postgres://postgres@127.0.0.1:5432"
REFRESH = 5.0
WORKERS = 2


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def load(url: str, size: int) -> None:
    """Fill the migrated database with ``size`` authorities, 4 per tenant (as the SQLite data sets)."""
    import psycopg

    tenants = common.tenant_count(size)
    with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as db, db.cursor() as cursor:
        cursor.execute(
            "INSERT INTO hostguard_deployment (id, name, description) VALUES (1, 'eu-1', ''), (2, 'us-1', '')"
        )
        with cursor.copy("COPY hostguard_tenant (id, name, slug, is_active, deployment_id) FROM STDIN") as copy:
            for k in range(tenants):
                copy.write_row((k + 1, f"Tenant {k}", f"tenant-{k}", True, 2 if k % 2 else 1))
        columns = "id, host, port, scheme, tenant_id, is_active, note, created_at, updated_at"
        with cursor.copy(f"COPY hostguard_authority ({columns}) FROM STDIN") as copy:
            for i in range(size):
                host, port, scheme, k = common.authority_row(i)
                copy.write_row((i + 1, host, port, scheme, k + 1, True, "", common.TIMESTAMP, common.TIMESTAMP))
        for table in ("hostguard_deployment", "hostguard_tenant", "hostguard_authority"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        cursor.execute("ANALYZE")


@contextmanager
def fleet(url: str, directory: Path, push: bool) -> Iterator[dict[str, Any]]:
    from tests.e2e import Site

    site = Site(directory, database_url=url, refresh_seconds=REFRESH, extra_env={"HOSTGUARD_PUSH": str(push)})
    servers = {}
    try:
        for name in ("eu-1", "us-1"):
            servers[name] = site.server(deployment=name, workers=WORKERS, env={"HOSTGUARD_LOG_LEVEL": "WARNING"})
            servers[name].start()
        yield servers
    finally:
        site.close()


def every_worker_serves(server: object, host: str, timeout: float) -> float | None:
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for status, pid in common.ask_every_worker(server.port, host, WORKERS):  # type: ignore[attr-defined]
            if status == 200:
                seen.add(pid)
        if len(seen) >= WORKERS:
            return time.monotonic()
    return None


def propagation(servers: dict[str, object], changes: int, label: str) -> list[float]:
    from hostguard.models import Authority, Tenant

    tenants = {"eu-1": Tenant.objects.get(slug="tenant-0"), "us-1": Tenant.objects.get(slug="tenant-1")}
    delays = []
    for number in range(changes):
        deployment = "eu-1" if number % 2 == 0 else "us-1"
        host = f"{label}-{number}-{time.monotonic_ns()}.bench.example"
        Authority.objects.create(host=host, tenant=tenants[deployment])  # autocommit: committed on return
        committed = time.monotonic()
        served = every_worker_serves(servers[deployment], host, REFRESH * 3)
        if served is None:
            raise SystemExit(f"{label}: {host} never reached every worker of {deployment}")
        delays.append(served - committed)
    return delays


def wrk_p99(port: int, host: str, seconds: float) -> float:
    return common.wrk(port, host, seconds, path="/api/ping").p99


def under_changes(servers: dict[str, object], seconds: float, rounds: int) -> tuple[list[float], list[float]]:
    from hostguard.models import Authority, Tenant

    tenant = Tenant.objects.get(slug="tenant-2")
    port = servers["eu-1"].port  # type: ignore[attr-defined]
    host = "tenant0.example.com"
    idle, busy = [], []
    for round_number in range(rounds):
        idle.append(wrk_p99(port, host, seconds))
        stop = threading.Event()

        def write(round_number: int = round_number, stop: threading.Event = stop) -> None:
            number = 0
            while not stop.wait(0.1):  # 10 changes a second
                Authority.objects.create(host=f"load-{round_number}-{number}.bench.example", tenant=tenant)
                number += 1

        writer = threading.Thread(target=write)
        writer.start()
        try:
            busy.append(wrk_p99(port, host, seconds))
        finally:
            stop.set()
            writer.join()
    return idle, busy


def main(argv: Sequence[str] | None = None) -> int:
    args = common.arguments(__doc__.splitlines()[0], argv)
    try:
        import psycopg

        psycopg.connect(BASE.replace("postgres://", "postgresql://", 1) + "/postgres", connect_timeout=3).close()
    except Exception as exc:
        print(f"propagation: not available (PostgreSQL at 127.0.0.1:5432: {exc})")
        return 0
    if shutil.which("wrk") is None:
        print("propagation: not available (wrk is not installed: apt-get install -y wrk)")
        return 0
    size = 10_000 if args.quick else 100_000
    pushed, polled = (6, 3) if args.quick else (40, 10)
    seconds, rounds = (1.0, 1) if args.quick else (3.0, 3)
    name = f"hostguard_bench_{os.getpid()}"
    admin = psycopg.connect(BASE.replace("postgres://", "postgresql://", 1) + "/postgres", autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{BASE}/{name}"
    try:
        with tempfile.TemporaryDirectory(prefix="hostguard-bench-") as tmp:
            run(url, Path(tmp), size, pushed, polled, seconds, rounds)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    return 0


def run(url: str, directory: Path, size: int, pushed: int, polled: int, seconds: float, rounds: int) -> None:
    import django
    from django.conf import settings

    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    os.environ.setdefault("HOSTGUARD_DEPLOYMENT", "eu-1")
    django.setup()
    from django.core.management import call_command

    from hostguard.policy import policy

    policy.background = False  # this process only writes; its own snapshot does not matter
    call_command("migrate", verbosity=0, interactive=False)
    heading("data")
    started = time.perf_counter()
    load(url, size)
    print(f"  loaded {size:,} authorities into PostgreSQL in {time.perf_counter() - started:.1f} s")
    print(f"  {common.machine()}; PostgreSQL via {settings.DATABASES['default']['ENGINE']}")
    heading(f"propagation, commit → every worker of the deployment (2 × {WORKERS} workers, refresh {REFRESH:g} s)")
    with fleet(url, directory / "push", push=True) as servers:
        push = propagation(servers, pushed, "push")
        idle, busy = under_changes(servers, seconds, rounds)
    with fleet(url, directory / "poll", push=False) as servers:
        poll = propagation(servers, polled, "poll")
    print(f"  {'':<22}  {'changes':>7}  {'p50 ms':>8}  {'p99 ms':>8}  {'max ms':>8}")
    for label, delays in (("push (LISTEN/NOTIFY)", push), ("polling alone", poll)):
        print(
            f"  {label:<22}  {len(delays):>7}  {statistics.median(delays) * 1000:>8.1f}  "
            f"{percentile(delays, 0.99) * 1000:>8.1f}  {max(delays) * 1000:>8.1f}"
        )
    print(f"  push is {statistics.median(poll) / statistics.median(push):.0f}× faster at the median")
    heading(f"request latency p99 on eu-1 (wrk -t1 -c4, {seconds:g} s × {rounds}), idle and with 10 changes a second")
    ratio = statistics.median(busy) / statistics.median(idle)
    print(f"  idle p99 {statistics.median(idle):.2f} ms, under changes {statistics.median(busy):.2f} ms: {ratio:.2f}×")
    heading("goals")
    goal(
        "propagation p99 with the push",
        percentile(push, 0.99) <= 0.100,
        f"{percentile(push, 0.99) * 1000:.0f} ms",
        "≤ 100 ms",
    )
    goal("request latency p99 under 10 changes a second", ratio <= 1.5, f"{ratio:.2f}× idle", "≤ 1.5×")


if __name__ == "__main__":
    sys.exit(main())
