"""Snapshot build time and memory for 10k, 100k and 1M authorities, and gunicorn serving them.

    python -m benchmarks.bench_snapshot [--quick] [--data DIR] [--rounds N]

Each measurement runs in a fresh process (``--child``), so that "cold" means what a
newly started worker pays: the first full read (``hostguard.store.full()``) after
``django.setup()``, query compilation included. Memory is the tracemalloc peak during
a build, what the snapshot keeps (tracemalloc, after the build), and the growth of
the process's resident set (RSS) across the cold build.

Then the demo site under gunicorn (2 sync workers, the largest data set), started
as usual and with ``--preload`` (``preload_app``: the master reads the hosts once,
before it forks): how long until every worker serves a tenant's host, and each
process's memory once it has — resident (RSS), its share of pages it shares with the
others (PSS) and its own (USS, what stopping it would free).
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from benchmarks import common
from benchmarks.common import goal, heading

SIZES_FULL = (10_000, 100_000, 1_000_000)
SIZES_QUICK = (10_000, 100_000)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(directory: Path, size: int, warm_builds: int) -> dict[str, float]:
    common.configure(directory, size)
    from hostguard.store import full as build_snapshot

    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    snapshot = build_snapshot()
    cold = time.perf_counter() - started
    assert snapshot.size == size, (snapshot.size, size)
    rss_delta = rss_bytes() - before
    del snapshot
    gc.collect()
    warm = []
    for _ in range(warm_builds):
        started = time.perf_counter()
        snapshot = build_snapshot()
        warm.append(time.perf_counter() - started)
        del snapshot
        gc.collect()
    tracemalloc.start()
    snapshot = build_snapshot()
    retained, peak = tracemalloc.get_traced_memory()
    del snapshot
    tracemalloc.stop()
    return {
        "cold": cold,
        "warm": statistics.median(warm) if warm else cold,
        "warm_low": min(warm) if warm else cold,
        "warm_high": max(warm) if warm else cold,
        "peak": peak,
        "retained": retained,
        "rss_delta": rss_delta,
    }


def measure(directory: Path, size: int, warm_builds: int) -> dict[str, float]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_snapshot",
        "--child",
        str(size),
        "--data",
        str(directory),
        "--rounds",
        str(warm_builds),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])  # type: ignore[no-any-return]


def memory_of(pid: int) -> dict[str, int]:
    """A process's RSS, PSS and USS (private pages), in bytes, from /proc."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            name, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                fields[name] = int(value.split()[0]) * 1024
    return {
        "rss": fields["Rss"],
        "pss": fields["Pss"],
        "uss": fields["Private_Clean"] + fields["Private_Dirty"],
    }


def worker_pids(master: int) -> list[int]:
    with open(f"/proc/{master}/task/{master}/children") as children:
        return [int(pid) for pid in children.read().split()]


class Served(NamedTuple):
    #: Seconds from starting gunicorn until every worker served a tenant's host.
    ready: float
    #: ("master" or "worker", memory_of(pid)) for each process.
    memory: list[tuple[str, dict[str, int]]]


def gunicorn_figures(directory: Path, size: int, preload: bool, workers: int = 2) -> Served:
    """Start the demo site on the ``size`` data set; time until every worker serves a
    tenant's host, then each process's memory. Stops it, whatever happens."""
    from tests.e2e import stop_group
    from tests.rawhttp import free_port

    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": f"sqlite:///{common.database_file(directory, size)}",
        "HOSTGUARD_DEPLOYMENT": common.DEPLOYMENT,
        "HOSTGUARD_LOG_LEVEL": "WARNING",
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_CMD_ARGS": "--preload" if preload else "",
    }
    command = [sys.executable, "-m", "gunicorn", "-c", "project/gunicorn.conf.py", "--no-control-socket"]
    host = common.served_host(size)
    with open(directory / "gunicorn.log", "ab") as log:
        started = time.monotonic()
        process = subprocess.Popen(
            [*command, "project.wsgi"],
            cwd=common.ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    try:
        served: set[int] = set()
        while len(served) < workers:
            if process.poll() is not None or time.monotonic() - started > 120:
                raise RuntimeError(f"gunicorn did not serve {host} from every worker (see {directory}/gunicorn.log)")
            try:
                served |= {pid for status, pid in common.ask_every_worker(port, host, workers) if status == 200}
            except OSError:
                time.sleep(0.02)
        ready = time.monotonic() - started
        memory = [("master", memory_of(process.pid))]
        memory += [("worker", memory_of(pid)) for pid in worker_pids(process.pid)]
        return Served(ready, memory)
    finally:
        stop_group(process)


def label(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1000}k"


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if "--child" in arguments:
        index = arguments.index("--child")
        size = int(arguments[index + 1])
        del arguments[index : index + 2]
        args = common.arguments(__doc__.splitlines()[0], arguments)
        print(json.dumps(child(args.data, size, args.rounds)))
        return 0
    args = common.arguments(__doc__.splitlines()[0], arguments)
    sizes = SIZES_QUICK if args.quick else SIZES_FULL
    cold_runs = 1 if args.quick else 3
    warm_builds = 1 if args.quick else 5
    with common.data_dir(args.data) as directory:
        common.configure(directory, sizes[0])
        heading("data")
        common.ensure_data(directory, sizes)
        heading(f"snapshot build: cold = first build in a fresh process (median of {cold_runs}), warm = rebuilds")
        print(
            f"  {'authorities':>11}  {'cold s':>7}  {'warm s (min–max)':>22}  "
            f"{'peak MB':>8}  {'kept MB':>8}  {'RSS +MB':>8}"
        )
        results = {}
        for size in sizes:
            runs = [measure(directory, size, warm_builds) for _ in range(cold_runs)]
            result = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
            results[size] = result
            print(
                f"  {size:>11,}  {result['cold']:>7.3f}  "
                f"{result['warm']:>7.3f} ({result['warm_low']:.3f}–{result['warm_high']:.3f})  "
                f"{result['peak'] / 1e6:>8.1f}  {result['retained'] / 1e6:>8.1f}  {result['rss_delta'] / 1e6:>8.1f}",
                flush=True,
            )
        largest = sizes[-1]
        served = {preload: gunicorn_figures(directory, largest, preload) for preload in (False, True)}
        heading(f"gunicorn, 2 sync workers, {largest:,} authorities (the demo site)")
        print(f"  {'':>14}  {'ready s':>8}  {'process':>8}  {'RSS MB':>7}  {'PSS MB':>7}  {'USS MB':>7}")
        for preload, figures in served.items():
            for number, (role, used) in enumerate(figures.memory):
                first = ("--preload" if preload else "as usual") if number == 0 else ""
                ready = f"{figures.ready:.2f}" if number == 0 else ""
                print(
                    f"  {first:>14}  {ready:>8}  {role:>8}  {used['rss'] / 1e6:>7.1f}  "
                    f"{used['pss'] / 1e6:>7.1f}  {used['uss'] / 1e6:>7.1f}"
                )
        heading("goals")
        if 1_000_000 in results:
            million = results[1_000_000]
            goal("snapshot of 1M authorities built cold", million["cold"] <= 1.5, f"{million['cold']:.3f} s", "≤ 1.5 s")
            memory = max(million["peak"], million["rss_delta"])
            goal(
                "snapshot of 1M authorities, memory per process (tracemalloc peak and RSS growth, the larger)",
                memory <= 200e6,
                f"{memory / 1e6:.1f} MB",
                "≤ 200 MB",
            )
        reference = results[100_000]
        goal(
            "snapshot of 100k authorities built cold",
            reference["cold"] <= 1.0,
            f"{reference['cold']:.3f} s",
            "≤ 1 s",
        )
        memory = max(reference["peak"], reference["rss_delta"])
        goal(
            "snapshot of 100k authorities, memory (tracemalloc peak and RSS growth, the larger)",
            memory <= 80e6,
            f"{memory / 1e6:.1f} MB",
            "≤ 80 MB",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
