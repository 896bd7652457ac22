"""Run every benchmark, then summarise the goals: ``python -m benchmarks [--quick]``.

``make bench`` runs this; ``make bench QUICK=1`` passes ``--quick`` (tiny counts, no
1M data set: a smoke test that the scripts work, whose figures mean little). The data
sets are made once, in a temporary directory shared by the scripts (``--data DIR``
keeps them for the next run). Each script runs in its own process.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from benchmarks import common

SCRIPTS = ("bench_wsgi", "bench_snapshot", "bench_changes", "bench_audit", "bench_http", "bench_propagation")


def main() -> int:
    args = common.arguments(__doc__.splitlines()[0])
    goals: list[str] = []
    failed: list[str] = []
    with common.data_dir(args.data) as directory:
        for script in SCRIPTS:
            command = [sys.executable, "-m", f"benchmarks.{script}", "--data", str(directory), "--clock", args.clock]
            if args.quick:
                command.append("--quick")
            for option, value in (("--rounds", args.rounds_given), ("--requests", args.requests_given)):
                if value is not None:
                    command += [option, str(value)]
            print(f"\n#### {script}", flush=True)
            started = time.monotonic()
            with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent) as run:
                assert run.stdout is not None
                for line in run.stdout:
                    print(line, end="", flush=True)
                    if line.startswith(("PASS ", "MISS ")):
                        goals.append(line.rstrip())
            if run.returncode:
                failed.append(script)
            print(f"#### {script}: {time.monotonic() - started:.0f} s", flush=True)
    print("\n#### goals" + (" (quick run: tiny counts, figures are indicative only)" if args.quick else ""))
    for line in goals:
        print(line)
    if failed:
        print(f"#### failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
