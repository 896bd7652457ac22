"""A change at scale: what one add or remove costs each process, beside a full rebuild.

    python -m benchmarks.bench_changes [--quick] [--data DIR] [--rounds N]

For 100,000 and 1,000,000 authorities (quick: 10,000 and 100,000), in one process on
the SQLite data set:

* **CPU per change per process** — what every other process spends to take up one
  committed change: ``policy.advance()`` (the change log after its version, the rows
  it names, a copy-on-write overlay), against a full read (``hostguard.store.full``),
  which is what every process paid for every change before;
* **the writer's next request** — a save through the ORM (its commit applies the
  writer's own change before it returns), then the next request through Django's
  WSGI handler: the time from the start of the save to the end of that response,
  against the full rebuild the next request used to wait for.

Each change alternates: add an authority, then remove it again, so the data set is
the same at the end. CPU time is the process's (``time.process_time``); the writer's
next request is wall-clock time, as a user waits it.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks import common
from benchmarks.common import goal, heading
from benchmarks.site import HOSTGUARD

SIZES_FULL = (100_000, 1_000_000)
SIZES_QUICK = (10_000, 100_000)


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def one_size(directory: Any, size: int, changes: int) -> dict[str, float]:
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.utils import override_settings

    from hostguard import store
    from hostguard.models import Authority, Tenant
    from hostguard.policy import policy

    common.use_data(directory, size)
    tenant = Tenant.objects.filter(slug="tenant-0").get()
    full_times = []
    for _ in range(3 if size >= 1_000_000 else 5):
        started = time.process_time()
        snapshot = store.full()
        full_times.append(time.process_time() - started)
    assert snapshot.size == size, (snapshot.size, size)

    # CPU per change per process: the writer records, another process applies.
    policy.background = False
    policy.install(snapshot)
    apply_times = []
    for number in range(changes):
        if number % 2 == 0:
            Authority.objects.create(tenant=tenant, host=f"change-{number}.bench.example")
        else:
            Authority.objects.filter(host=f"change-{number - 1}.bench.example").delete()
        started = time.process_time()
        current = policy.advance()
        apply_times.append(time.process_time() - started)
    assert current is not None
    assert current.size == size

    # The writer's next request: in the background mode a server runs, the save's
    # commit applies the writer's own change; then the next request is served.
    policy.background = True
    handler_settings = {"MIDDLEWARE": [HOSTGUARD], "ROOT_URLCONF": "benchmarks.site"}
    host = common.served_host(size)
    next_request = []
    with override_settings(**handler_settings):
        handler = WSGIHandler()
        base = common.environ(host)
        common.serve(handler, base, 20)  # warm
        for number in range(changes):
            name = f"writer-{number // 2}.bench.example"
            started = time.perf_counter()
            if number % 2 == 0:
                Authority.objects.create(tenant=tenant, host=name)
            else:
                Authority.objects.filter(host=name).delete()
            status, _body = common.probe(handler, base)
            next_request.append(time.perf_counter() - started)
            assert status == 200, status
            served = common.probe(handler, common.environ(name))[0]
            assert served == (200 if number % 2 == 0 else 421), (name, served)
    policy.background = False
    return {
        "full": statistics.median(full_times),
        "apply": statistics.median(apply_times),
        "apply_p95": percentile(apply_times, 0.95),
        "next": statistics.median(next_request),
        "next_p95": percentile(next_request, 0.95),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = common.arguments(__doc__.splitlines()[0], argv)
    sizes = SIZES_QUICK if args.quick else SIZES_FULL
    changes = 20 if args.quick else 100
    with common.data_dir(args.data) as directory:
        common.configure(directory, sizes[0])
        heading("data")
        common.ensure_data(directory, sizes)
        print(f"  {common.machine()}")
        heading(f"one change, {changes} times (an add, then its removal), per data set")
        print(
            f"  {'authorities':>11}  {'full rebuild ms':>15}  {'delta ms (p95)':>16}  {'× cheaper':>9}  "
            f"{'writer: save + next request ms (p95)':>37}"
        )
        results = {}
        for size in sizes:
            result = one_size(directory, size, changes)
            results[size] = result
            print(
                f"  {size:>11,}  {result['full'] * 1000:>15.1f}  "
                f"{result['apply'] * 1000:>7.2f} ({result['apply_p95'] * 1000:>5.2f})  "
                f"{result['full'] / result['apply']:>9.0f}  "
                f"{result['next'] * 1000:>27.2f} ({result['next_p95'] * 1000:>5.2f})",
                flush=True,
            )
        largest = results[sizes[-1]]
        label = f"{sizes[-1] // 1000:,}k" if sizes[-1] < 1_000_000 else "1M"
        heading("goals")
        goal(
            f"CPU per change per process at {label} authorities (median)",
            largest["apply"] <= 0.005,
            f"{largest['apply'] * 1000:.2f} ms, {largest['full'] / largest['apply']:.0f}× less than a full rebuild",
            "≤ 5 ms",
        )
        goal(
            f"the writer's save and next request at {label} authorities (median)",
            largest["next"] <= 0.020,
            f"{largest['next'] * 1000:.2f} ms (a full rebuild: {largest['full'] * 1000:.0f} ms)",
            "≤ 20 ms",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
