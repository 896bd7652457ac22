"""Per-request cost through Django's WSGI handler: hostguard beside the alternatives.

    python -m benchmarks.bench_wsgi [--quick] [--data DIR] [--rounds N] [--requests N]

Every variant serves ``GET /`` (a trivial view behind ``CommonMiddleware``) with the
same browser-like headers. Allowed requests: no gate at all, Django's static
``ALLOWED_HOSTS`` (the allowed host last in the list: its worst case), hostguard with
10 to 1,000,000 authorities, and a gate that makes one ORM query per request; then
hostguard and that gate again with a view that reads ``request.tenant`` instead (at ``/``
too: ``benchmarks/site_tenant.py``).
Rejections: hostguard's 421, Django's ``DisallowedHost`` 400 (logged at ERROR through
Django's default logging, as on a site that does not configure it), the ORM gate's
404, and the floor: a fixed response from the first middleware. Then the TLS
permission endpoint Caddy asks (``GET /_hostguard/tls-permission?domain=…``, a served
name) beside an allowed request.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence

from benchmarks import common
from benchmarks.common import REJECTED_HOST, Variant, goal, heading
from benchmarks.site import (
    COMMON,
    FLOOR,
    HOSTGUARD,
    ORM_GATE,
    QUIET_FLOOR,
    TENANT_URLCONF,
    TLS_PERMISSION,
    TLS_PERMISSION_DIRECT,
    TLS_ROUTE_FLOOR,
)

NEW_HOSTS = 20_000


def label(size: int) -> str:
    if size >= 1_000_000:
        return f"{size // 1_000_000}M"
    if size >= 1000:
        return f"{size // 1000}k"
    return str(size)


def main(argv: Sequence[str] | None = None) -> int:
    args = common.arguments(__doc__.splitlines()[0], argv)
    sizes = list(args.sizes)
    reference = 100_000 if 100_000 in sizes else sizes[-1]
    with common.data_dir(args.data) as directory:
        common.configure(directory, reference)
        heading("data")
        common.ensure_data(directory, sizes)
        snapshots = {size: common.build_policy(directory, size) for size in sizes}
        # The ORM gate queries the reference data set.
        common.use_data(directory, reference)
        print(f"  {common.machine()}")
        run(args, sizes, reference, snapshots)
    return 0


def run(args: object, sizes: list[int], reference: int, snapshots: dict[int, object]) -> None:
    rounds: int = args.rounds  # type: ignore[attr-defined]
    count: int = args.requests  # type: ignore[attr-defined]
    allowed = common.served_host(reference)

    def hostguard(size: int, host: str, status: int, name: str) -> Variant:
        return Variant(
            name,
            {"MIDDLEWARE": [HOSTGUARD, COMMON]},
            host,
            status,
            snapshot=snapshots[size],
        )

    no_gate = Variant("no gate (ALLOWED_HOSTS=['*'])", {"MIDDLEWARE": [COMMON]}, allowed, 200)
    static10 = Variant(
        "Django ALLOWED_HOSTS, 10 hosts",
        {"MIDDLEWARE": [COMMON], "ALLOWED_HOSTS": common.static_allowed_hosts(10, allowed)},
        allowed,
        200,
    )
    static10k = Variant(
        "Django ALLOWED_HOSTS, 10,000 hosts",
        {"MIDDLEWARE": [COMMON], "ALLOWED_HOSTS": common.static_allowed_hosts(10_000, allowed)},
        allowed,
        200,
        scale=0.05,
    )
    gated = {
        size: hostguard(size, common.served_host(size), 200, f"hostguard, {label(size)} authorities") for size in sizes
    }
    with_metrics = hostguard(reference, allowed, 200, f"hostguard, {label(reference)} authorities, with metrics")
    with_metrics.metrics = True
    orm = Variant(
        f"ORM gate ({label(reference)} authorities)", {"MIDDLEWARE": [ORM_GATE, COMMON]}, allowed, 200, scale=0.2
    )
    # The same allowed request, to a view that reads request.tenant: from the snapshot, no query.
    reads_tenant = Variant(
        f"hostguard, {label(reference)} authorities, view reads request.tenant (pk, slug, name)",
        {"MIDDLEWARE": [HOSTGUARD, COMMON], "ROOT_URLCONF": TENANT_URLCONF},
        allowed,
        200,
        snapshot=snapshots[reference],
    )
    orm_reads_tenant = Variant(
        f"ORM gate ({label(reference)} authorities), view reads request.tenant",
        {"MIDDLEWARE": [ORM_GATE, COMMON], "ROOT_URLCONF": TENANT_URLCONF},
        allowed,
        200,
        scale=0.2,
    )
    allow_variants = [no_gate, static10, static10k, *gated.values(), with_metrics, reads_tenant, orm, orm_reads_tenant]

    heading(
        f"allowed request, {rounds} interleaved rounds × {count} requests "
        "(Django's list: allowed host last, its worst case)"
    )
    common.check(allow_variants)
    allow = common.measure(allow_variants, rounds, count)
    common.table(allow, baseline=no_gate.name)

    refused = [
        hostguard(reference, REJECTED_HOST, 421, f"hostguard 421 ({label(reference)} authorities)"),
        Variant(
            "Django DisallowedHost 400 (10 hosts)",
            {"MIDDLEWARE": [COMMON], "ALLOWED_HOSTS": common.static_allowed_hosts(10, allowed)},
            REJECTED_HOST,
            400,
        ),
        Variant(
            f"ORM gate 404 ({label(reference)} authorities)",
            {"MIDDLEWARE": [ORM_GATE, COMMON]},
            REJECTED_HOST,
            404,
            scale=0.2,
        ),
        Variant("floor: fixed response, first middleware", {"MIDDLEWARE": [FLOOR, COMMON]}, REJECTED_HOST, 421),
        Variant("floor, without Django's log line", {"MIDDLEWARE": [QUIET_FLOOR, COMMON]}, REJECTED_HOST, 421),
        hostguard(reference, REJECTED_HOST, 421, f"hostguard 421 ({label(reference)} authorities), with metrics"),
    ]
    refused[-1].metrics = True
    heading(f"rejected request (Host: {REJECTED_HOST}), {rounds} interleaved rounds × {count} requests")
    print(
        "  Django's 400 goes through its default logging (django.security.DisallowedHost at ERROR), as shipped;\n"
        "  the floor is logged by Django too (django.request, WARNING, as every 4xx); hostguard's 421 is not\n"
        "  (it keeps its own summarised log), so the floor without that line is shown as well."
    )
    common.check(refused)
    refuse = common.measure(refused, rounds, count)
    floor_name = refused[3].name
    common.table(refuse, baseline=floor_name)

    fresh = [
        Variant(
            f"hostguard, {label(size)} authorities",
            {"MIDDLEWARE": [HOSTGUARD, COMMON]},
            "",
            200,
            snapshot=snapshots[size],
            hosts=common.wildcard_hosts(size, NEW_HOSTS),
        )
        for size in sizes
    ]
    for variant in fresh:
        variant.host = variant.hosts[0]  # type: ignore[index]
    heading(
        f"allowed request, every Host new: {NEW_HOSTS:,} distinct hosts served through wildcards, "
        f"more than any memo holds ({rounds} rounds × {count} requests)"
    )
    common.check(fresh)
    fresh_samples = common.measure(fresh, rounds, count)
    common.table(fresh_samples, baseline=fresh[0].name)

    ask_samples, ask_names = tls_permission_costs(rounds, count, gated[reference], allowed)

    heading("lookup alone: Snapshot._decide, no memo, 1,000 distinct served hosts per size")
    lookups = lookup_costs(snapshots, rounds, count)
    common.table(lookups, baseline=next(iter(lookups)), unit="µs/lookup")

    heading("goals")
    gate_ref = gated[reference].name
    r = common.ratio(allow, gate_ref, no_gate.name)
    goal(f"allowed, hostguard {label(reference)} vs no gate", r <= 1.03, f"{r:.3f}×", "≤ 1.03×")
    r = common.ratio(allow, gate_ref, static10.name)
    goal(f"allowed, hostguard {label(reference)} vs Django's 10-host list", r <= 1.01, f"{r:.3f}×", "≤ 1.01×")
    small = 10_000 if 10_000 in gated else sizes[0]
    r = common.ratio(allow, static10k.name, gated[small].name)
    goal(f"allowed, Django's 10,000-host list vs hostguard {label(small)}", r >= 10, f"{r:.1f}× slower", "≥ 10×")
    r = common.ratio(allow, orm.name, gate_ref)
    goal(f"allowed, ORM gate vs hostguard {label(reference)}", r >= 1.5, f"{r:.2f}× slower", "≥ 1.5×")
    r = common.ratio(allow, reads_tenant.name, gate_ref)
    goal("allowed, a view reading request.tenant vs the plain allowed request", r <= 1.10, f"{r:.3f}×", "≤ 1.10×")
    r = common.ratio(allow, orm_reads_tenant.name, reads_tenant.name)
    print(f"info  allowed, a view reading request.tenant: the ORM gate vs hostguard: {r:.2f}× slower")
    r = common.ratio(refuse, refused[1].name, refused[0].name)
    goal("rejected, Django's 400 vs hostguard's 421", r >= 1.6, f"{r:.2f}× the cost", "≥ 1.6×")
    r = common.ratio(refuse, refused[0].name, floor_name)
    goal("rejected, hostguard's 421 vs the floor", r <= 1.10, f"{r:.3f}×", "≤ 1.10×")
    r = common.ratio(refuse, refused[0].name, refused[4].name)
    print(f"info  rejected, hostguard's 421 vs the floor without Django's log line: {r:.3f}×")
    # Prometheus metrics (hostguard.metrics): nothing runs for an allowed request; a
    # refusal adds one counter increment.
    r = common.ratio(allow, with_metrics.name, gate_ref)
    low, high = common.ratio_spread(allow, with_metrics.name, gate_ref)
    measured = f"{r:.3f}×, IQR {low:.3f}–{high:.3f}"
    goal(f"allowed, hostguard {label(reference)} with metrics vs without", r <= 1.02, measured, "≤ 1.02×")
    r = common.ratio(refuse, refused[-1].name, refused[0].name)
    low, high = common.ratio_spread(refuse, refused[-1].name, refused[0].name)
    measured = f"{r:.3f}×, IQR {low:.3f}–{high:.3f}"
    goal("rejected, hostguard's 421 with metrics vs without", r <= 1.05, measured, "≤ 1.05×")
    ask_name, allowed_name, floor_name, direct_name = ask_names
    r = common.ratio(ask_samples, ask_name, allowed_name)
    goal(f"TLS permission ask vs an allowed request ({label(reference)} authorities)", r <= 1.2, f"{r:.3f}×", "≤ 1.2×")
    r = common.ratio(ask_samples, floor_name, allowed_name)
    print(f"info  the ask's route with a view that does nothing vs an allowed request: {r:.3f}×")
    r = common.ratio(ask_samples, ask_name, floor_name)
    print(f"info  TLS permission ask vs its route with a view that does nothing: {r:.3f}× (the endpoint's own work)")
    r = common.ratio(ask_samples, direct_name, allowed_name)
    print(f"info  TLS permission ask, the view mounted without include(), vs an allowed request: {r:.3f}×")
    smallest, largest = sizes[0], sizes[-1]
    r = common.ratio(allow, gated[largest].name, gated[smallest].name)
    goal(
        f"flat: allowed request, {label(largest)} vs {label(smallest)} authorities",
        0.8 <= r <= 1.2,
        f"{r:.3f}×",
        "within ± 20 %",
    )
    r = common.ratio(fresh_samples, fresh[-1].name, fresh[0].name)
    goal(
        f"flat: allowed request, every Host new, {label(largest)} vs {label(smallest)} authorities",
        0.8 <= r <= 1.2,
        f"{r:.3f}×",
        "within ± 20 %",
    )
    names = list(lookups)
    r = common.ratio(lookups, names[-1], names[0])
    print(
        f"info  lookup alone (no memo), {label(largest)} vs {label(smallest)} authorities: {r:.3f}× "
        "(a table larger than the CPU caches costs memory latency, not a scan)"
    )


def tls_permission_costs(
    rounds: int, count: int, allowed: Variant, name: str
) -> tuple[dict[str, list[float]], tuple[str, str, str, str]]:
    """Caddy's ask for a served name beside an allowed request and the ask's route with a
    view that does nothing, interleaved; (samples, (ask, allowed, route floor, ask mounted directly)).

    All run with docs/caddy.md's settings: the endpoint kept to the always-allowed hosts.
    """
    kept = ["localhost", "127.0.0.1"]
    settings = {
        **allowed.settings,
        "HOSTGUARD_ADMIN_HOSTS": {"/_hostguard/": kept, "/_floor/": kept, "/_direct/": kept},
    }
    request = Variant(allowed.name, settings, allowed.host, 200, snapshot=allowed.snapshot)
    query = f"domain={name}"

    def asking(label: str, path: str) -> Variant:
        # Caddy asks with its ask URL's host, which the site always lets through.
        extra = {"QUERY_STRING": query, "RAW_URI": f"{path}?{query}"}
        return Variant(label, settings, "127.0.0.1:8000", 200, snapshot=allowed.snapshot, path=path, extra=extra)

    size = allowed.name.removeprefix("hostguard, ")
    ask = asking(f"TLS permission ask, served name ({size})", TLS_PERMISSION)
    floor = asking("its route, a view that does nothing", TLS_ROUTE_FLOOR)
    direct = asking("TLS permission ask, the view mounted without include()", TLS_PERMISSION_DIRECT)
    heading(f"TLS permission ask (GET {TLS_PERMISSION}?{query}) beside an allowed request, {rounds} rounds")
    common.check([request, ask, floor, direct])
    samples = common.measure([request, ask, floor, direct], rounds, count)
    common.table(samples, baseline=request.name)
    return samples, (ask.name, request.name, floor.name, direct.name)


def lookup_costs(snapshots: dict[int, object], rounds: int, count: int) -> dict[str, list[float]]:
    """The snapshot's own lookup, bypassing the memo, over many distinct hosts."""
    from benchmarks.common import DEPLOYMENT

    cases = {}
    for size, snapshot in snapshots.items():
        hosts = common.served_hosts(size, 1000)
        random.Random(size).shuffle(hosts)
        decide = snapshot._decide  # type: ignore[attr-defined]
        calls = [(host, 80, "http", DEPLOYMENT) for host in hosts]
        for call in calls:
            assert decide(*call).verdict == "allow", call
        cases[f"{label(size)} authorities ({len(hosts)} hosts)"] = (decide, calls)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    repeat = max(1, count * 5 // 1000)
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            decide, calls = cases[name]
            total = len(calls) * repeat

            def loop(decide: object = decide, calls: list[tuple[str, int, str, str]] = calls) -> None:
                for _ in range(repeat):
                    for call in calls:
                        decide(*call)  # type: ignore[operator]

            samples[name].append(common.time_calls(loop, 1) * 1 / total)
    return samples


if __name__ == "__main__":
    sys.exit(main())
