"""Over HTTP: gunicorn and wrk, each pinned to its own core, with and without hostguard.

    python -m benchmarks.bench_http [--quick] [--data DIR] [--rounds N]

Three gunicorn servers (one sync worker each, all pinned to CPU 0) serve the demo
site's full middleware stack and the benchmark's trivial view from one SQLite file of
authorities: ``benchmarks.settings_http`` (hostguard first in MIDDLEWARE),
``benchmarks.settings_nogate`` with ``ALLOWED_HOSTS = ['*']`` (no gate), and the same
with Django's static list of 10 hosts. wrk (Debian's, pinned to CPU 1) loads each in
turn, in interleaved rounds, with a served host and with an unknown one. Every server
is stopped at the end, whatever happens.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import common
from benchmarks.common import REJECTED_HOST, heading
from tests.rawhttp import free_port

ROOT = common.ROOT


@dataclass
class Server:
    name: str
    settings: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None


@dataclass
class Case:
    name: str
    server: Server
    host: str
    status: int


def status_of(port: int, host: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/", headers={"Host": host})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@contextmanager
def running(servers: Sequence[Server], database: Path, log: Path) -> Iterator[None]:
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    try:
        with open(log, "ab") as errors:
            for server in servers:
                server.port = free_port()
                env = {
                    **os.environ,
                    "DJANGO_SETTINGS_MODULE": server.settings,
                    "DATABASE_URL": f"sqlite:///{database}",
                    "HOSTGUARD_DEPLOYMENT": common.DEPLOYMENT,
                    "HOSTGUARD_LOG_LEVEL": "WARNING",
                    **server.env,
                }
                server.process = subprocess.Popen(
                    [*pin, gunicorn, "--workers", "1", "--bind", f"127.0.0.1:{server.port}", "project.wsgi"],
                    cwd=ROOT,
                    env=env,
                    stdout=errors,
                    stderr=errors,
                    start_new_session=True,
                )
        deadline = time.monotonic() + 30
        for server in servers:
            while True:
                try:
                    status_of(server.port, "localhost")
                    break
                except OSError:
                    if time.monotonic() > deadline or (server.process and server.process.poll() is not None):
                        raise SystemExit(f"gunicorn for {server.name} did not start; see {log}") from None
                    time.sleep(0.1)
        yield
    finally:
        for server in servers:
            if server.process is not None and server.process.poll() is None:
                os.killpg(server.process.pid, signal.SIGTERM)
        for server in servers:
            if server.process is not None:
                try:
                    server.process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(server.process.pid, signal.SIGKILL)
                    server.process.wait(5)


def wrk(port: int, host: str, seconds: float) -> tuple[float, float, int]:
    """(requests/s, median latency in ms, non-2xx responses) of one wrk run."""
    result = common.wrk(port, host, seconds, pin="1")
    return result.rate, result.p50, result.non_2xx


def main(argv: Sequence[str] | None = None) -> int:
    args = common.arguments(__doc__.splitlines()[0], argv)
    if shutil.which("wrk") is None:
        print("http: not available (wrk is not installed: apt-get install -y wrk)")
        return 0
    size = 10_000 if args.quick else 100_000
    seconds = 1.0 if args.quick else 2.0
    rounds = 1 if args.quick else min(args.rounds, 10)
    with common.data_dir(args.data) as directory:
        common.configure(directory, size)
        heading("data")
        common.ensure_data(directory, [size])
        database = common.database_file(directory, size)
        allowed = common.served_host(size)
        hostguard = Server("hostguard", "benchmarks.settings_http")
        no_gate = Server("no gate", "benchmarks.settings_nogate")
        static = Server(
            "Django ALLOWED_HOSTS, 10",
            "benchmarks.settings_nogate",
            {"BENCH_ALLOWED_HOSTS": ",".join(common.static_allowed_hosts(10, allowed))},
        )
        cases = [
            Case("no gate, served host", no_gate, allowed, 200),
            Case("Django 10-host list, served host", static, allowed, 200),
            Case(f"hostguard ({size:,} authorities), served host", hostguard, allowed, 200),
            Case("no gate, unknown host (served: nothing refuses it)", no_gate, REJECTED_HOST, 200),
            Case("Django 10-host list, unknown host: 400", static, REJECTED_HOST, 400),
            Case("hostguard, unknown host: 421", hostguard, REJECTED_HOST, 421),
        ]
        log = directory / "gunicorn.log"
        heading(
            f"over HTTP: gunicorn (1 sync worker, CPU 0) and wrk (-t1 -c4, CPU 1), {rounds} interleaved "
            f"round(s) of {seconds:g} s per case"
        )
        rates: dict[str, list[float]] = {case.name: [] for case in cases}
        latencies: dict[str, list[float]] = {case.name: [] for case in cases}
        with running([hostguard, no_gate, static], database, log):
            for case in cases:
                status = status_of(case.server.port, case.host)
                if status != case.status:
                    raise SystemExit(f"{case.name}: answered {status}, expected {case.status}")
                wrk(case.server.port, case.host, min(seconds, 1.0))  # warm up
            for round_number in range(rounds):
                shift = round_number % len(cases)
                for case in cases[shift:] + cases[:shift]:
                    rate, p50, non_2xx = wrk(case.server.port, case.host, seconds)
                    if (non_2xx > 0) != (case.status >= 400):
                        raise SystemExit(f"{case.name}: {non_2xx} non-2xx responses, expected status {case.status}")
                    rates[case.name].append(rate)
                    latencies[case.name].append(p50)
        width = max(len(name) for name in rates)
        print(f"  {'case':<{width}}  {'requests/s':>10}  {'min – max over rounds':>21}  {'p50 ms':>7}")
        for case in cases:
            low, high = min(rates[case.name]), max(rates[case.name])
            print(
                f"  {case.name:<{width}}  {statistics.median(rates[case.name]):>10,.0f}  "
                f"{low:>10,.0f} – {high:<8,.0f}  {statistics.median(latencies[case.name]):>7.2f}"
            )
        hostguard_rate = statistics.median(rates[cases[2].name])
        print(
            f"  hostguard serves {hostguard_rate / statistics.median(rates[cases[0].name]):.3f}× the requests/s of "
            f"no gate, {hostguard_rate / statistics.median(rates[cases[1].name]):.3f}× Django's 10-host list; "
            f"its 421 {statistics.median(rates[cases[5].name]) / statistics.median(rates[cases[4].name]):.2f}× "
            "the rate of Django's 400"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
