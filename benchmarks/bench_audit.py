"""The audit log under a flood of random hosts: 421 cost with it on and off, and DB writes.

    python -m benchmarks.bench_audit [--quick] [--data DIR] [--rounds N] [--requests N]

Every request carries the next of 50,000 random host names, all unknown: a 421 each.
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

FLOOD_HOSTS = 50_000


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


def flood_hosts(count: int) -> list[str]:
    rng = random.Random(421)
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

        hosts = flood_hosts(FLOOD_HOSTS)
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
            position = common.serve_hosts(handler, on.environ(), hosts, 0, max_keys)
            served = time.thread_time_ns() - started
            audit.flush()
            first_keys = (served + flush_cpu[0]) / max_keys / 1000
        first_writes = counter.writes - writes_before

        # 2. The flood once the window's key cap is reached: interleaved rounds.
        flushes.clear()
        flush_cpu[0] = 0
        writes_before = counter.writes
        counted_before = MismatchLog.objects.aggregate(total=Sum("count"))["total"] or 0
        rounds, count = args.rounds, args.requests * 2
        samples: dict[str, list[float]] = {on.name: [], off.name: []}
        positions = {on.name: position, off.name: position}
        served_on = 0
        wall_on = 0.0
        for round_number in range(rounds):
            order = [on, off] if round_number % 2 == 0 else [off, on]
            for variant in order:
                with variant.active() as handler:
                    base = variant.environ()
                    started_wall = time.perf_counter()
                    started = time.thread_time_ns()
                    positions[variant.name] = common.serve_hosts(handler, base, hosts, positions[variant.name], count)
                    elapsed = time.thread_time_ns() - started
                    if variant is on:
                        served_on += count
                        wall_on += time.perf_counter() - started_wall
                samples[variant.name].append(elapsed / count / 1000)
        audit.flush()
        # Every flush of the run belongs to "audit on" (with it off there is nothing to
        # write): its CPU, spent mostly in the writer thread, is shared out per request.
        flush_share = flush_cpu[0] / served_on / 1000
        for index, value in enumerate(samples[on.name]):
            samples[on.name][index] = value + flush_share
        counted = (MismatchLog.objects.aggregate(total=Sum("count"))["total"] or 0) - counted_before
        writes = counter.writes - writes_before
        rows = MismatchLog.objects.count()

        heading(f"421 under a flood of {FLOOD_HOSTS:,} random hosts: the first {max_keys:,} of a window")
        print(f"  {first_keys:,.1f} µs of CPU per request, each a new row: {first_writes:,} write statements")
        heading(
            f"421 under the flood once the window's {max_keys:,}-key cap is reached, "
            f"{rounds} interleaved rounds × {count} requests; CPU time of the request thread, plus for audit "
            f"on its share of the writer's flushes (every {conf.AUDIT_FLUSH_SECONDS:g} s): {flush_share:.2f} µs/req"
        )
        common.table(samples, baseline=off.name)
        steady = common.ratio(samples, off.name, on.name)
        steady_off = common.median(samples[off.name])
        steady_on = steady_off / steady
        heading("database writes during the capped flood")
        print(f"  requests refused                 {served_on:>10,}  ({served_on / wall_on:,.0f}/s wall-clock)")
        print(f"  counted in the audit log         {counted:>10,}  (exact: every refusal)")
        print(f"  write statements                 {writes:>10,}  ({writes / wall_on:,.1f}/s)")
        print(f"  flushes that wrote               {len(flushes):>10,}")
        print(f"  rows in the audit log            {rows:>10,}  ({max_keys:,} hosts + the overflow row)")

        # A sustained flood through one default-length window: the capped rate for the
        # window's length, plus writing its first max_keys rows.
        per_window = default_window / (steady_on * 1e-6)
        window_on = (max_keys * first_keys + (per_window - max_keys) * steady_on) / per_window
        heading(f"a sustained flood over one {default_window}-second window (derived from the figures above)")
        print(
            f"  {per_window:,.0f} requests per window per process: audit on {window_on:.2f} µs/req, "
            f"off {steady_off:.2f} µs/req"
        )

        heading("goals")
        goal("flood, key cap reached: audit on vs audit off, throughput", steady >= 0.9, f"{steady:.3f}×", "≥ 0.9×")
        r = steady_off / window_on
        goal(
            f"flood over a whole {default_window}-s window: audit on vs off, throughput",
            r >= 0.9,
            f"{r:.3f}×",
            "≥ 0.9×",
        )
        exact = counted == served_on
        goal(
            "flood: DB writes bounded by distinct keys, not requests",
            writes <= 2 * len(flushes) + 2 and exact and rows <= max_keys + 1,
            f"{writes:,} write statements for {served_on:,} requests, {rows:,} rows, exact counts: {exact}",
            f"≤ 2 per flush (the overflow row), ≤ {max_keys + 1:,} rows",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
