"""What every benchmark shares: a throwaway Django site on SQLite files, authority data,
WSGI requests built by hand, timing in interleaved rounds, and goal reporting.

Timing rules, so that figures are comparable and honest:

* every variant runs in the same process, in interleaved rounds (A B C, B C A, …), so
  drift in CPU frequency or caches touches all of them alike;
* a round times each variant's requests in 5 batches and keeps the fastest batch's
  mean time per request (timeit's "best of": interruptions only ever add time); a
  figure is the median over rounds, and the spread printed next to it is the
  interquartile range over rounds;
* a ratio is the median of the per-round ratios (both sides measured seconds apart);
* time is the process's CPU time (all its threads), not wall-clock time, so that other
  programs on a busy machine do not land in one variant's figure (``--clock wall``
  measures wall-clock time instead).
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FULL_SIZES = (10, 10_000, 100_000, 1_000_000)
QUICK_SIZES = (10, 10_000, 100_000)
#: The repository's top folder.
ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENT = "bench"
OTHER_DEPLOYMENT = "elsewhere"
# Every data set gets the same policy version, so the policy's background poller
# never sees a moved stamp when a benchmark switches between data sets.
STAMP = 1
REJECTED_HOST = "unknown-host.example"
TIMESTAMP = "2025-01-01 00:00:00"

# What a browser sends besides Host; identical for every variant.
BROWSER_HEADERS = {
    "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0",
    "HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9",
    "HTTP_ACCEPT_ENCODING": "gzip, deflate, br",
    "HTTP_CONNECTION": "keep-alive",
}


# --- command line -------------------------------------------------------------------


def arguments(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny counts, no 1M data set")
    parser.add_argument("--data", type=Path, help="directory for the SQLite data sets (default: a temp dir)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default: 41, quick: 3)")
    parser.add_argument("--requests", type=int, help="requests per variant per round (default: 1000, quick: 100)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="what to time (default: cpu)")
    args = parser.parse_args(argv)
    global clock
    clock = time.process_time_ns if args.clock == "cpu" else time.perf_counter_ns
    args.sizes = QUICK_SIZES if args.quick else FULL_SIZES
    args.rounds_given, args.requests_given = args.rounds, args.requests
    if args.rounds is None:
        args.rounds = 3 if args.quick else 41
    if args.requests is None:
        args.requests = 100 if args.quick else 1000
    return args


@contextmanager
def data_dir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="hostguard-bench-") as tmp:
        yield Path(tmp)


# --- the Django site ------------------------------------------------------------------


def database_file(directory: Path, size: int) -> Path:
    return directory / f"authorities-{size}.sqlite3"


def configure(directory: Path, size: int) -> None:
    """Configure Django for the benchmark site, its database the ``size`` data set.

    One database alias, as a real site has: Django checks every configured alias at
    the start and end of each request, so extra aliases would dilute every figure.
    Logging is Django's default, as on a site that does not configure it.
    Connections persist (``CONN_MAX_AGE=None``), which favours the ORM gate.
    """
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="hostguard-benchmark-not-secret",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["hostguard"],
        MIDDLEWARE=[],
        ROOT_URLCONF="benchmarks.site",
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(database_file(directory, size)),
                "CONN_MAX_AGE": None,
            }
        },
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
        USE_I18N=True,
        LANGUAGE_CODE="en-us",
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        HOSTGUARD_DEPLOYMENT=DEPLOYMENT,
        HOSTGUARD_ALWAYS_ALLOW=["localhost", "127.0.0.1", "[::1]"],
        # Django's default logging stays as it is; hostguard's own lines go where a
        # site would send them (a handler), here a stream to /dev/null, so they cost
        # what they cost without filling the benchmark's output.
        LOGGING={
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"null": {"class": "logging.StreamHandler", "stream": open(os.devnull, "w")}},  # noqa: SIM115
            "loggers": {"hostguard": {"handlers": ["null"], "level": "INFO", "propagate": False}},
        },
    )
    django.setup()


def use_data(directory: Path, size: int) -> None:
    """Point the ``default`` database at the ``size`` data set (set-up time only)."""
    from django.db import connections

    connection = connections["default"]
    connection.close()
    connection.settings_dict["NAME"] = str(database_file(directory, size))


# --- data -------------------------------------------------------------------------------


def tenant_count(size: int) -> int:
    return (size + 3) // 4


def tenant_served(k: int) -> bool:
    """Whether tenant ``k`` is active and served by this deployment (9 in 10 are)."""
    return k % 10 != 9 and k % 50 != 49


def authority_row(i: int) -> tuple[str, int | None, str, int]:
    """(host, port, scheme, tenant index): four authorities per tenant, in a realistic mix."""
    k, kind = divmod(i, 4)
    if kind == 0:
        return f"tenant{k}.example.com", None, "", k
    if kind == 1:
        return f"www.tenant{k}.example.com", None, "", k
    if kind == 2:
        return f"*.tenant{k}.example.net", None, "", k
    return f"tenant{k}.example.org", 8443, "https", k


def served_host(size: int, nth_last: int = 0) -> str:
    """A host served here, from the last tenants loaded (``nth_last`` picks an earlier one)."""
    k = (size - 2) // 4
    skipped = 0
    while k >= 0:
        if tenant_served(k):
            if skipped == nth_last:
                return f"www.tenant{k}.example.com"
            skipped += 1
        k -= 1
    raise ValueError(f"no served host in a data set of {size}")


def wildcard_hosts(size: int, count: int) -> list[str]:
    """``count`` distinct hosts served here through wildcards, spread over the data set."""
    tenants = [k for k in range(tenant_count(size)) if tenant_served(k) and 4 * k + 2 < size]
    step = max(1, len(tenants) // count)
    chosen = tenants[::step]
    return [f"h{index}.tenant{chosen[index % len(chosen)]}.example.net" for index in range(count)]


def served_hosts(size: int, count: int) -> list[str]:
    """Up to ``count`` distinct served hosts spread over the whole data set."""
    tenants = tenant_count(size)
    step = max(1, tenants // count)
    hosts = [f"www.tenant{k}.example.com" for k in range(0, tenants, step) if tenant_served(k) and 4 * k + 1 < size]
    return hosts[:count]


def static_allowed_hosts(count: int, allowed: str) -> list[str]:
    """Django's ALLOWED_HOSTS with ``count`` entries, ``allowed`` last: the worst case."""
    return [f"site{i}.example.com" for i in range(count - 1)] + [allowed]


def ensure_data(directory: Path, sizes: Iterable[int], quiet: bool = False) -> None:
    """Create each size's SQLite file (migrated, loaded) unless it is already there."""
    for size in sizes:
        marker = directory / f"authorities-{size}.ready"
        if marker.exists():
            migrate(directory, size)  # a data set made before a new migration
            continue
        started = time.perf_counter()
        use_data(directory, size)
        load("default", size)
        marker.write_text(str(size))
        if not quiet:
            print(f"  loaded {size:>9,} authorities in {time.perf_counter() - started:.1f} s", flush=True)


def migrate(directory: Path, size: int) -> None:
    from django.core.management import call_command

    use_data(directory, size)
    call_command("migrate", verbosity=0, interactive=False)


def load(using: str, size: int) -> None:
    """Migrate ``using`` and fill it with ``size`` authorities (raw executemany, for speed)."""
    from django.core.management import call_command
    from django.db import connections, transaction

    call_command("migrate", database=using, verbosity=0, interactive=False)
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=OFF")
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO hostguard_deployment (id, name, description) VALUES (%s, %s, '')",
            [(1, DEPLOYMENT), (2, OTHER_DEPLOYMENT)],
        )
        tenants = (
            (k + 1, f"Tenant {k}", f"tenant-{k}", k % 50 != 49, 2 if k % 10 == 9 else 1)
            for k in range(tenant_count(size))
        )
        for batch in _batches(tenants, 50_000):
            cursor.executemany(
                "INSERT INTO hostguard_tenant (id, name, slug, is_active, deployment_id) VALUES (%s, %s, %s, %s, %s)",
                batch,
            )
        authorities = (
            (i + 1, host, port, scheme, k + 1, True, "", TIMESTAMP, TIMESTAMP)
            for i, (host, port, scheme, k) in ((i, authority_row(i)) for i in range(size))
        )
        for batch in _batches(authorities, 50_000):
            cursor.executemany(
                "INSERT INTO hostguard_authority (id, host, port, scheme, tenant_id, is_active, note, "
                "created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                batch,
            )
        cursor.execute("UPDATE hostguard_policystamp SET version = %s", [STAMP])
    with connection.cursor() as cursor:
        # hostguard's unique constraints are partial indexes, which a plain
        # "WHERE host = ?" cannot use; django-tenants' domain column is indexed, so the
        # ORM gate gets a plain index too (a fair, not a straw-man, comparison).
        cursor.execute("CREATE INDEX bench_authority_host ON hostguard_authority (host)")
        cursor.execute("ANALYZE")
    connection.close()


def _batches(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def build_policy(directory: Path, size: int) -> Any:
    """Load ``size``'s data set into the process-wide policy and return its snapshot."""
    from hostguard.policy import policy

    use_data(directory, size)
    return policy.refresh()


_metrics: Any = None


def bench_metrics() -> Any:
    """hostguard's metrics on a registry of the benchmark's own (needs prometheus-client)."""
    global _metrics
    if _metrics is None:
        from hostguard import metrics

        if not metrics.AVAILABLE:
            raise SystemExit("a 'with metrics' variant needs prometheus-client: pip install -r requirements.txt")
        from prometheus_client import CollectorRegistry

        _metrics = metrics.Metrics(CollectorRegistry(), multiprocess=False)
    return _metrics


def install_snapshot(snapshot: Any) -> None:
    # The policy holds one snapshot per process; each hostguard variant here has its own
    # data set, so its snapshot is put in place before its round (all share one stamp,
    # so the background poller never swaps it back).
    from hostguard.policy import policy

    policy.install(snapshot)


# --- requests -------------------------------------------------------------------------


def environ(host: str, path: str = "/", **extra: Any) -> dict[str, Any]:
    """A WSGI environ as gunicorn builds it for ``GET path`` with ``Host: host``."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "RAW_URI": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "HTTP_HOST": host,
        **BROWSER_HEADERS,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    env.update(extra)
    return env


def _start_response(status: str, headers: Any, exc_info: Any = None) -> None:
    return None


def serve(handler: Callable[..., Any], base: dict[str, Any], count: int) -> None:
    """``count`` requests through ``handler``, each body consumed and closed as a server would."""
    start_response = _start_response
    for _ in range(count):
        env = base.copy()
        env["wsgi.input"] = io.BytesIO()
        response = handler(env, start_response)
        for _chunk in response:
            pass
        response.close()


def serve_hosts(handler: Callable[..., Any], base: dict[str, Any], hosts: Sequence[str], start: int, count: int) -> int:
    """:func:`serve` with each request's Host the next of ``hosts``; returns the next index."""
    start_response = _start_response
    total = len(hosts)
    for index in range(start, start + count):
        env = base.copy()
        env["HTTP_HOST"] = hosts[index % total]
        env["wsgi.input"] = io.BytesIO()
        response = handler(env, start_response)
        for _chunk in response:
            pass
        response.close()
    return (start + count) % total


def probe(handler: Callable[..., Any], base: dict[str, Any]) -> tuple[int, bytes]:
    """One request; its status code and body."""
    seen: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        seen.append(status)

    env = base.copy()
    env["wsgi.input"] = io.BytesIO()
    response = handler(env, start_response)
    body = b"".join(response)
    response.close()
    return int(seen[0].split()[0]), body


# --- interleaved timing -------------------------------------------------------------------

clock = time.process_time_ns
# A round times its requests in this many batches and keeps the fastest, as timeit's
# "best of" does: an interruption (another program, a page fault) lengthens a batch,
# nothing shortens one.
BATCHES = 5


@dataclass
class Variant:
    """One configuration to time: its settings, its Host, the status it must answer."""

    name: str
    settings: dict[str, Any]
    host: str
    status: int
    snapshot: Any = None
    path: str = "/"
    extra: dict[str, Any] = field(default_factory=dict)
    # Fewer requests per round for variants that cost far more (Django's 10,000-host list).
    scale: float = 1.0
    # If set, each request takes the next of these hosts instead of ``host``.
    hosts: Sequence[str] | None = None
    position: int = 0
    # hostguard's Prometheus metrics on (hostguard.metrics) or off, whatever is installed.
    metrics: bool = False

    @contextmanager
    def active(self) -> Iterator[Callable[..., Any]]:
        """Inside: this variant's settings, snapshot, metrics, and a freshly built WSGI handler."""
        from django.core.handlers.wsgi import WSGIHandler
        from django.test.utils import override_settings

        from hostguard import metrics

        previous = metrics.activate(bench_metrics() if self.metrics else None)
        try:
            with override_settings(**self.settings):
                if self.snapshot is not None:
                    install_snapshot(self.snapshot)
                # WSGIHandler loads MIDDLEWARE when built: build it under these settings.
                yield WSGIHandler()
        finally:
            metrics.activate(previous)

    def environ(self) -> dict[str, Any]:
        return environ(self.host, self.path, **self.extra)

    def serve(self, handler: Callable[..., Any], base: dict[str, Any], count: int) -> None:
        if self.hosts is None:
            serve(handler, base, count)
        else:
            self.position = serve_hosts(handler, base, self.hosts, self.position, count)


def check(variants: Sequence[Variant]) -> None:
    """Fail loudly if a variant does not answer what it is supposed to measure."""
    for variant in variants:
        with variant.active() as handler:
            status, body = probe(handler, variant.environ())
        if status != variant.status:
            raise SystemExit(
                f"benchmark variant {variant.name!r} answered {status}, expected {variant.status}: {body[:200]!r}"
            )


def measure(variants: Sequence[Variant], rounds: int, count: int) -> dict[str, list[float]]:
    """Microseconds per request for each variant, one sample per round."""
    samples: dict[str, list[float]] = {variant.name: [] for variant in variants}
    order = list(variants)
    for round_number in range(rounds):
        shift = round_number % len(order)
        for variant in order[shift:] + order[:shift]:
            n = max(BATCHES, int(count * variant.scale))
            batch = n // BATCHES
            with variant.active() as handler:
                base = variant.environ()
                variant.serve(handler, base, max(10, n // 10))  # warm caches and memo tables
                gc.collect()
                fastest = float("inf")
                for _ in range(BATCHES):
                    started = clock()
                    variant.serve(handler, base, batch)
                    fastest = min(fastest, clock() - started)
            samples[variant.name].append(fastest / batch / 1000)
    return samples


def time_calls(function: Callable[[], Any], count: int) -> float:
    """Microseconds per call of ``function``."""
    started = clock()
    for _ in range(count):
        function()
    return (clock() - started) / count / 1000


# --- statistics and reporting ----------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def iqr(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 4:
        return min(values), max(values)
    quartiles = statistics.quantiles(values, n=4)
    return quartiles[0], quartiles[2]


def ratio(samples: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of a/b, both from the same round."""
    return median([x / y for x, y in zip(samples[a], samples[b], strict=True)])


def ratio_spread(samples: dict[str, list[float]], a: str, b: str) -> tuple[float, float]:
    return iqr([x / y for x, y in zip(samples[a], samples[b], strict=True)])


def table(samples: dict[str, list[float]], baseline: str | None = None, unit: str = "µs/req") -> None:
    width = max(len(name) for name in samples)
    header = f"  {'variant':<{width}}  {'median ' + unit:>14}  {'IQR over rounds':>19}"
    if baseline:
        header += f"  {'× ' + baseline:>12}"
    print(header)
    for name, values in samples.items():
        low, high = iqr(values)
        line = f"  {name:<{width}}  {median(values):>14.2f}  {low:>8.2f} – {high:<8.2f}"
        if baseline:
            line += f"  {ratio(samples, name, baseline):>12.3f}"
        print(line)
    sys.stdout.flush()


def goal(name: str, passed: bool, measured: str, target: str) -> None:
    """Print one goal line; ``benchmarks/__main__.py`` collects these into a summary."""
    print(f"{'PASS' if passed else 'MISS'}  {name}: {measured} (goal: {target})", flush=True)


def heading(text: str) -> None:
    print(f"\n== {text}", flush=True)


def machine() -> str:
    import django

    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"Django {django.get_version()}, {platform.system()} {platform.release()}"
    )


# --- load over HTTP ------------------------------------------------------------------------


@dataclass
class WrkResult:
    """What one wrk run measured: requests/s, latency percentiles in ms, non-2xx answers."""

    rate: float
    p50: float
    p99: float
    non_2xx: int


def wrk(port: int, host: str, seconds: float, path: str = "/", pin: str | None = None) -> WrkResult:
    """One run of Debian's wrk (``-t1 -c4 --latency``) against 127.0.0.1:``port``, pinned to
    CPU ``pin`` when taskset exists."""
    import re
    import shutil
    import subprocess

    pinned = ["taskset", "-c", pin] if pin is not None and shutil.which("taskset") else []
    command = [*pinned, "wrk", "-t1", "-c4", f"-d{seconds:g}s", "--latency", "-H", f"Host: {host}"]
    output = subprocess.run(
        [*command, f"http://127.0.0.1:{port}{path}"], check=True, capture_output=True, text=True, timeout=seconds + 30
    ).stdout
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def latency(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\b", output, re.MULTILINE)
        if match is None:
            raise SystemExit(f"unexpected wrk output:\n{output}")
        return float(match.group(1)) * scale[match.group(2)]

    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if rate is None:
        raise SystemExit(f"unexpected wrk output:\n{output}")
    return WrkResult(float(rate.group(1)), latency("50"), latency("99"), int(errors.group(1)) if errors else 0)


def ask_every_worker(port: int, host: str, workers: int) -> list[tuple[int, int]]:
    """(status, worker pid) from one ``GET /api/ping`` (the demo site's) per worker: as
    many connections at once as there are sync workers, each of which takes one."""
    request = f"GET /api/ping HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(workers)]
    answers = []
    try:
        for sock in sockets:
            sock.sendall(request)
        for sock in sockets:
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            answers.append((status, int(json.loads(body)["pid"]) if status == 200 else 0))
    finally:
        for sock in sockets:
            sock.close()
    return answers
