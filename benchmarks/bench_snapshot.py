"""Snapshot build time and memory for 10k, 100k and 1M authorities.

    python -m benchmarks.bench_snapshot [--quick] [--data DIR] [--rounds N]

Each measurement runs in a fresh process (``--child``), so that "cold" means what a
newly started worker pays: the first ``hostguard.policy.build_snapshot()`` after
``django.setup()``, query compilation included. Memory is the tracemalloc peak during
a build, what the snapshot keeps (tracemalloc, after the build), and the growth of
the process's resident set (RSS) across the cold build.
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
        heading("goals")
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
