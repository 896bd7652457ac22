"""End to end: Prometheus metrics under real gunicorn, 2 sync workers, as an operator scrapes them.

The shipped gunicorn.conf.py sets up prometheus_client's multiprocess mode with no
extra environment: refusals answered by either worker add up in any worker's
/metrics, a worker that dies keeps its counts but not its gauges, and the
directory goes when gunicorn does.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import e2e
from tests.e2e import Server, Site
from tests.rawhttp import concurrent_requests, http_request, raw_request

pytestmark = pytest.mark.e2e

DATA = {
    "deployments": [{"name": "eu-1"}, {"name": "us-1"}],
    "tenants": [
        {"slug": "acme", "name": "Acme", "deployment": "eu-1", "authorities": ["acme.example", "*.acme.example"]},
        {"slug": "globex", "name": "Globex", "deployment": "us-1", "authorities": ["globex.example"]},
        {"slug": "initech", "name": "Initech", "deployment": "eu-1", "active": False, "authorities": ["initech.test"]},
    ],
}
AUTHORITIES = 4
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class MetricsServer(Server):
    """The demo's gunicorn, with no PROMETHEUS_MULTIPROC_DIR from the caller's environment."""

    def environment(self) -> dict[str, str]:
        env = super().environment()
        if "PROMETHEUS_MULTIPROC_DIR" not in self.extra_env:
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        return env


def start(site: Site, tmp: Path, **env: str) -> Server:
    # TMPDIR: where gunicorn.conf.py's own directory goes, so the test can look into it.
    server = MetricsServer(site, workers=2, env={"TMPDIR": str(tmp), **env})
    site.servers.append(server)
    return server.start()


def scrape(server: Server) -> Samples:
    response = server.request(http_request("GET", "/metrics", host="127.0.0.1"))
    assert response.status == 200, response
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def refusals(samples: Samples, reason: str, enforced: str = "true") -> float:
    labels = frozenset({"reason": reason, "deployment": "eu-1", "enforced": enforced}.items())
    return samples.get(("hostguard_refusals_total", labels), 0.0)


def total_refusals(samples: Samples) -> float:
    return sum(value for (name, _), value in samples.items() if name == "hostguard_refusals_total")


def send_in_pairs(server: Server, hosts: list[str | bytes]) -> list[int]:
    """Each pair on two connections held open at once: one reaches each sync worker."""
    statuses = []
    for index in range(0, len(hosts), 2):
        pair = [http_request("GET", "/api/ping", host=host) for host in hosts[index : index + 2]]
        statuses += [response.status for response in concurrent_requests(server.port, pair)]
    return statuses


def answered_by(server: Server, status: int) -> dict[int, int]:
    counts: dict[int, int] = {}
    for entry in server.access_log():
        if entry.status == status and "/api/ping" in entry.request_line:
            counts[entry.pid] = counts.get(entry.pid, 0) + 1
    return counts


def gauge_files(directory: Path, pid: int) -> list[str]:
    return sorted(path.name for path in directory.glob(f"gauge_*_{pid}.db"))


def test_refusals_add_up_across_workers_and_outlive_a_worker(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with Site(tmp_path / "site", deployment="eu-1") as site:
        site.load(DATA)
        server = start(site, tmp)
        (directory,) = tmp.glob("hostguard-prometheus-*")

        misdirected: list[str | bytes] = ["nowhere.example", "globex.example", "initech.test"] * 2
        assert send_in_pairs(server, misdirected) == [421] * 6
        assert send_in_pairs(server, ["a..b", "acme.example:abc", "user@acme.example"]) == [400] * 3
        # Both workers answered refusals: the counts below add up two processes' files.
        by_worker = answered_by(server, 421)
        assert len(by_worker) == 2, by_worker
        assert sum(by_worker.values()) == 6, by_worker
        assert sum(answered_by(server, 400).values()) == 3
        # The endpoint on a tenant's host is a plain 404, and not a refusal.
        assert server.request(http_request("GET", "/metrics", host="acme.example")).status == 404

        samples = scrape(server)
        assert refusals(samples, "unknown_host") == 2
        assert refusals(samples, "other_deployment") == 2
        assert refusals(samples, "inactive") == 2
        assert refusals(samples, "malformed_host") == 3
        assert total_refusals(samples) == 9
        eu1 = frozenset({("deployment", "eu-1")})
        assert samples[("hostguard_policy_authorities", eu1)] == AUTHORITIES
        assert samples[("hostguard_policy_version", eu1)] >= 1
        assert 0 <= samples[("hostguard_policy_age_seconds", eu1)] < site.refresh_seconds + 5
        # One series per metric, not one per worker.
        assert not [key for key in samples if ("pid" in dict(key[1]))]

        # A worker dies; gunicorn starts another in its place.
        victim = next(iter(by_worker))
        assert gauge_files(directory, victim)
        os.kill(victim, signal.SIGTERM)
        assert e2e.wait_until(lambda: not gauge_files(directory, victim), timeout=10) is not None
        assert e2e.wait_until(lambda: new_worker_answers(server, set(by_worker)), timeout=20) is not None

        samples = scrape(server)
        assert refusals(samples, "unknown_host") == 2
        assert refusals(samples, "other_deployment") == 2
        assert refusals(samples, "inactive") == 2
        assert refusals(samples, "malformed_host") == 3
        assert total_refusals(samples) == 9
        assert samples[("hostguard_policy_authorities", eu1)] == AUTHORITIES
        # The dead worker's counts stay in its file; its gauges are gone.
        assert (directory / f"counter_{victim}.db").exists()
        assert not gauge_files(directory, victim)
        live = {int(path.stem.rsplit("_", 1)[1]) for path in directory.glob("gauge_*.db")}
        assert live
        assert victim not in live

        server.stop()
        assert not directory.exists(), "gunicorn.conf.py removes the directory it made"


def new_worker_answers(server: Server, old: set[int]) -> bool:
    concurrent_requests(server.port, [http_request("GET", "/api/ping", host="acme.example")] * 2)
    return bool({entry.pid for entry in server.access_log()} - old - {0})


def test_report_mode_counts_what_it_served_as_not_enforced(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with Site(tmp_path / "site", deployment="eu-1") as site:
        site.load(DATA)
        server = start(site, tmp, HOSTGUARD_MODE="report")
        # Served, but would have been 421 (other deployment, inactive); a host nobody
        # claims stays refused (the demo's ALLOWED_HOSTS is '*'); a malformed one too.
        assert send_in_pairs(server, ["globex.example", "initech.test", "globex.example", "nowhere.example"]) == [
            200,
            200,
            200,
            421,
        ]
        assert raw_request(server.port, http_request("GET", "/api/ping", host="a..b")).status == 400
        samples = scrape(server)
        assert refusals(samples, "other_deployment", enforced="false") == 2
        assert refusals(samples, "inactive", enforced="false") == 1
        assert refusals(samples, "unknown_host") == 1
        assert refusals(samples, "malformed_host") == 1
        assert total_refusals(samples) == 5


def test_a_directory_the_operator_names_is_used_and_emptied_at_start(tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    # A previous run's counts must not add to this one's.
    stale = directory / "counter_1.db"
    stale.write_bytes(b"")
    with Site(tmp_path / "site", deployment="eu-1") as site:
        site.load(DATA)
        server = start(site, tmp_path, PROMETHEUS_MULTIPROC_DIR=str(directory))
        assert not stale.exists()
        assert send_in_pairs(server, ["nowhere.example", "nowhere.example"]) == [421, 421]
        assert refusals(scrape(server), "unknown_host") == 2
        assert list(directory.glob("counter_*.db"))
        server.stop()
        assert directory.exists(), "a directory the operator named stays"


def test_a_reload_keeps_the_directory_and_the_counts(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with Site(tmp_path / "site", deployment="eu-1") as site:
        site.load(DATA)
        server = start(site, tmp)
        (directory,) = tmp.glob("hostguard-prometheus-*")
        assert send_in_pairs(server, ["nowhere.example", "globex.example"]) == [421, 421]
        old = {entry.pid for entry in server.access_log()}
        assert server.process is not None
        # SIGHUP: gunicorn reads its config file again and replaces every worker.
        os.kill(server.process.pid, signal.SIGHUP)
        assert e2e.wait_until(lambda: all_workers_new(server, old), timeout=20) is not None
        assert list(tmp.glob("hostguard-prometheus-*")) == [directory]
        samples = scrape(server)
        assert refusals(samples, "unknown_host") == 1
        assert refusals(samples, "other_deployment") == 1
        # The old workers' gauges go as gunicorn reaps them.
        assert e2e.wait_until(lambda: not [name for pid in old for name in gauge_files(directory, pid)], 10) is not None


def all_workers_new(server: Server, old: set[int]) -> bool:
    """Whether two workers that were not there before answer."""
    marker = len(server.access_log())
    concurrent_requests(server.port, [http_request("GET", "/healthz")] * 2)
    return len({entry.pid for entry in server.access_log()[marker:]} - old) == 2
