"""The audit log under a flood of random hosts: 421 cost with it on and off, and DB writes.

    python -m benchmarks.bench_audit [--quick] [--data DIR] [--rounds N] [--requests N]

Every request carries a random host name never seen before (or, in the last part, one
of the window's first 1,000 again), all unknown: a 421 each.
"audit on" is the default (``HOSTGUARD_AUDIT = True``: counted in memory, written by a
background thread every ``HOSTGUARD_AUDIT_FLUSH_SECONDS``); "audit off" only logs. The
time is the CPU time of the thread serving requests; every flush's CPU (whichever
thread ran it) is added to "audit on", shared out per request. Every statement the
audit log sends to the database is counted.
"""

from __future__ import annotations

import random
import string
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from benchmarks import common
from benchmarks.common import Variant, goal, heading
from benchmarks.site import COMMON, HOSTGUARD


class WriteCounter:
    """Counts statements on the audit table, on every connection of every thread."""

    def __init__(self) -> None:
        self.statements: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if "hostguard_mismatchlog" in sql:
            verb = sql.lstrip().split(None, 1)[0].upper()
            with self.lock:
                self.statements[verb] += len(params) if many else 1
        return execute(sql, params, many, context)

    @property
    def writes(self) -> int:
        return sum(count for verb, count in self.statements.items() if verb in ("INSERT", "UPDATE", "DELETE"))

    def install(self) -> None:
        from django.db import connections
        from django.db.backends.signals import connection_created

        connections["default"].execute_wrappers.append(self)

        def created(sender: Any, connection: Any, **kwargs: Any) -> None:
            if self not in connection.execute_wrappers:
                connection.execute_wrappers.append(self)

        connection_created.connect(created, weak=False)


def flood_hosts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    letters = string.ascii_lowercase + string.digits
    return [f"{''.join(rng.choices(letters, k=12))}.flood.example" for _ in range(count)]


def main(argv: Sequence[str] | None = None) -> int:
    args = common.arguments(__doc__.splitlines()[0], argv)
    size = 10_000
    with common.data_dir(args.data) as directory:
        common.configure(directory, size)
        heading("data")
        common.ensure_data(directory, [size])
        snapshot = common.build_policy(directory, size)
        try:
            from hostguard import audit
        except ImportError:
            print("audit: not available (hostguard.audit is missing)")
            return 0
        from django.db.models import Sum

        from hostguard.conf import conf
        from hostguard.models import MismatchLog

        counter = WriteCounter()
        counter.install()
        flushes: list[int] = []
        flush_cpu = [0]  # ns of CPU spent in flushes, in whichever thread ran them
        recorder_flush = audit.recorder.flush

        def counting_flush(*, final: bool = False) -> int:
            before = counter.writes
            started = time.thread_time_ns()
            written = recorder_flush(final=final)
            flush_cpu[0] += time.thread_time_ns() - started
            if counter.writes > before:
                flushes.append(counter.writes - before)
            return written

        # Instrumentation only: the writer thread calls recorder.flush() as before.
        audit.recorder.flush = counting_flush  # type: ignore[method-assign]

        # Separate pools, so neither variant finds the other's hosts in a memo.
        pool = conf.AUDIT_MAX_KEYS + args.rounds * args.requests * 2 + 1
        new_on, new_off = flood_hosts(pool, seed=1), flood_hosts(pool, seed=2)
        hosts = new_on
        # One long window for the whole run, so no window ends mid-measurement; the
        # figure for the default window is derived from the measured costs below.
        window_settings = {"HOSTGUARD_AUDIT_WINDOW_SECONDS": 24 * 3600}
        on = Variant(
            "audit on (default)",
            {"MIDDLEWARE": [HOSTGUARD, COMMON], **window_settings},
            hosts[0],
            421,
            snapshot=snapshot,
        )
        off = Variant(
            "audit off",
            {"MIDDLEWARE": [HOSTGUARD, COMMON], "HOSTGUARD_AUDIT": False, **window_settings},
            hosts[0],
            421,
            snapshot=snapshot,
        )
        MismatchLog.objects.all().delete()
        common.check([on, off])
        audit.flush()
        MismatchLog.objects.all().delete()
        audit.recorder.reset()
        max_keys = conf.AUDIT_MAX_KEYS
        default_window = conf.AUDIT_WINDOW_SECONDS

        # 1. The first HOSTGUARD_AUDIT_MAX_KEYS distinct hosts of a window: each is a new
        #    row to write. Measured once, writes included.
        writes_before = counter.writes
        with on.active() as handler:
            flush_cpu[0] = 0
            started = time.thread_time_ns()
            common.serve_hosts(handler, on.environ(), hosts, 0, max_keys)
            served = time.thread_time_ns() - started
            audit.flush()
            first_keys = (served + flush_cpu[0]) / max_keys / 1000
        first_writes = counter.writes - writes_before
        heading(f"421 under a flood of random hosts: the first {max_keys:,} of a window, each a new row")
        print(f"  {first_keys:,.1f} µs of CPU per request, writes included: {first_writes:,} write statements")

        def flood(
            name: str, hosts_on: Sequence[str], hosts_off: Sequence[str], rounds: int, count: int
        ) -> dict[str, Any]:
            """Interleaved rounds of audit on and off; CPU per request, writes, exactness."""
            flushes.clear()
            flush_cpu[0] = 0
            writes_before = counter.writes
            counted_before = MismatchLog.objects.aggregate(total=Sum("count"))["total"] or 0
            samples: dict[str, list[float]] = {on.name: [], off.name: []}
            streams = {on.name: (hosts_on, 0), off.name: (hosts_off, 0)}
            served_on, wall_on = 0, 0.0
            for round_number in range(rounds):
                for variant in [on, off] if round_number % 2 == 0 else [off, on]:
                    hosts, position = streams[variant.name]
                    with variant.active() as handler:
                        base = variant.environ()
                        started_wall = time.perf_counter()
                        started = time.thread_time_ns()
                        position = common.serve_hosts(handler, base, hosts, position, count)
                        elapsed = time.thread_time_ns() - started
                    streams[variant.name] = (hosts, position)
                    if variant is on:
                        served_on += count
                        wall_on += time.perf_counter() - started_wall
                    samples[variant.name].append(elapsed / count / 1000)
            audit.flush()
            # Every flush belongs to "audit on" (with it off there is nothing to write):
            # its CPU, spent mostly in the writer thread, is shared out per request.
            share = flush_cpu[0] / served_on / 1000
            samples[on.name] = [value + share for value in samples[on.name]]
            counted = (MismatchLog.objects.aggregate(total=Sum("count"))["total"] or 0) - counted_before
            writes = counter.writes - writes_before
            heading(
                f"{name}: {rounds} interleaved rounds × {count} requests; CPU time of the request thread, plus "
                f"for audit on its share of the writer's flushes (every {conf.AUDIT_FLUSH_SECONDS:g} s): "
                f"{share:.2f} µs/req"
            )
            common.table(samples, baseline=off.name)
            print(
                f"  {served_on:,} refusals with audit on ({served_on / wall_on:,.0f}/s), counted {counted:,}; "
                f"{writes:,} write statements ({writes / wall_on:,.1f}/s) in {len(flushes)} flushes; "
                f"{MismatchLog.objects.count():,} rows"
            )
            return {
                "samples": samples,
                "ratio": common.ratio(samples, off.name, on.name),
                "writes": writes,
                "flushes": len(flushes),
                "exact": counted == served_on,
            }

        rounds, count = args.rounds, args.requests * 2
        fresh = flood(
            f"the flood goes on, every host new, the window's {max_keys:,}-key cap reached",
            new_on[max_keys:],
            new_off[max_keys:],
            rounds,
            count,
        )
        revisit = flood(
            f"a flood that keeps revisiting the window's {max_keys:,} hosts (one row each)",
            new_on[:max_keys],
            new_off[:max_keys],
            rounds,
            count,
        )

        # A sustained flood of new hosts through one default-length window: the capped
        # cost for the window's length, plus writing its first max_keys rows.
        steady_off = common.median(fresh["samples"][off.name])
        steady_on = steady_off / fresh["ratio"]
        per_window = default_window / (steady_on * 1e-6)
        window_on = (max_keys * first_keys + (per_window - max_keys) * steady_on) / per_window
        heading(f"a sustained flood of new hosts over one {default_window}-second window (derived from the above)")
        print(
            f"  {per_window:,.0f} requests per window per process: audit on {window_on:.2f} µs/req, "
            f"off {steady_off:.2f} µs/req"
        )

        heading("goals")
        for label, result in (("every host new", fresh), (f"revisiting {max_keys:,} hosts", revisit)):
            r = result["ratio"]
            goal(f"flood, {label}: audit on vs audit off, throughput", r >= 0.9, f"{r:.3f}×", "≥ 0.9×")
        r = steady_off / window_on
        goal(
            f"flood of new hosts over a whole {default_window}-s window: audit on vs off, throughput",
            r >= 0.9,
            f"{r:.3f}×",
            "≥ 0.9×",
        )
        # New hosts beyond the cap: one UPDATE of the overflow row per flush. Revisited
        # hosts: at most one UPDATE per host per flush. Never one per request.
        bounded = (
            fresh["writes"] <= 2 * fresh["flushes"] + 2
            and revisit["writes"] <= max_keys * (revisit["flushes"] + 1)
            and fresh["exact"]
            and revisit["exact"]
        )
        goal(
            "flood: DB writes bounded by distinct keys, not requests",
            bounded,
            f"{fresh['writes']:,} and {revisit['writes']:,} write statements for {rounds * count:,} requests each, "
            f"counts exact: {fresh['exact'] and revisit['exact']}",
            f"≤ 1 per distinct key (capped at {max_keys:,}) per flush",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
