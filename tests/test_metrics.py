"""Prometheus metrics in one process: what an operator's scrape of /metrics reads.

Each test counts into a registry of its own (the ``registry`` fixture), so nothing
leaks between tests. Several workers sharing files (gunicorn) are tested end to end
in tests/test_e2e_metrics.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from hostguard import metrics
from hostguard.models import Authority, Deployment, Tenant
from hostguard.policy import policy
from tests.e2e import BASE_DIR

pytestmark = pytest.mark.django_db

DEMO = {"HOSTGUARD_ADMIN_HOSTS": settings.DEMO_ADMIN_HOSTS}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """hostguard's metrics on a fresh registry for this test, the previous ones restored after."""
    registry = CollectorRegistry()
    previous = metrics.activate(metrics.Metrics(registry, multiprocess=False))
    yield registry
    metrics.activate(previous)


@pytest.fixture
def sites() -> None:
    local = Deployment.objects.create(name="local")
    remote = Deployment.objects.create(name="remote")
    acme = Tenant.objects.create(name="Acme", slug="acme", deployment=local)
    Authority.objects.create(tenant=acme, host="acme.example")
    Authority.objects.create(tenant=acme, host="*.acme.example")
    globex = Tenant.objects.create(name="Globex", slug="globex", deployment=remote)
    Authority.objects.create(tenant=globex, host="globex.example")
    initech = Tenant.objects.create(name="Initech", slug="initech", deployment=local, is_active=False)
    Authority.objects.create(tenant=initech, host="initech.example")


def get(client: Client, host: str, path: str = "/api/ping", **headers: str) -> Any:
    return client.get(path, headers={"host": host, **headers})


def scrape(client: Client, host: str = "localhost") -> Samples:
    response = get(client, host, "/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    assert response["Cache-Control"] == "no-store"
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def refusals(samples: Samples, **labels: str) -> float:
    """The refusals whose labels include ``labels``, summed."""
    wanted = set(labels.items())
    return sum(
        value for (name, have), value in samples.items() if name == "hostguard_refusals_total" and wanted <= have
    )


def refused(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset({"deployment": "local", "enforced": "true", **labels}.items())


@pytest.mark.usefixtures("sites", "registry")
@override_settings(**DEMO)
def test_every_421_and_400_is_counted_by_reason_and_nothing_else_is(client: Client) -> None:
    for host in ("nowhere.example", "nowhere.example", "globex.example", "globex.example", "initech.example"):
        assert get(client, host).status_code == 421
    assert get(client, "nowhere.test", accept="application/json").status_code == 421
    for host in ("a..b", "acme.example:abc", "user@acme.example"):
        assert get(client, host).status_code == 400
    # Served requests, remembered or not, an always-allowed host and an exempt path: not refusals.
    for host in ("acme.example", "acme.example", "www.acme.example", "localhost"):
        assert get(client, host).status_code == 200
    assert get(client, "nowhere.example", "/healthz").status_code == 200

    samples = scrape(client)
    assert samples[("hostguard_refusals_total", refused(reason="unknown_host"))] == 3
    assert samples[("hostguard_refusals_total", refused(reason="other_deployment"))] == 2
    assert samples[("hostguard_refusals_total", refused(reason="inactive"))] == 1
    assert samples[("hostguard_refusals_total", refused(reason="malformed_host"))] == 3
    assert refusals(samples) == 9
    assert refusals(samples, enforced="false") == 0


@pytest.mark.usefixtures("sites", "registry")
@override_settings(HOSTGUARD_MODE="report", **DEMO)
def test_report_mode_counts_would_be_421s_as_not_enforced(client: Client) -> None:
    # Served, but counted: what enforcing would have refused.
    assert get(client, "globex.example").status_code == 200
    assert get(client, "initech.example").status_code == 200
    # Refused all the same: a host nobody claims (the site's ALLOWED_HOSTS is '*'), a malformed one.
    assert get(client, "nowhere.example").status_code == 421
    assert get(client, "a..b").status_code == 400

    samples = scrape(client)
    assert samples[("hostguard_refusals_total", refused(reason="other_deployment", enforced="false"))] == 1
    assert samples[("hostguard_refusals_total", refused(reason="inactive", enforced="false"))] == 1
    assert samples[("hostguard_refusals_total", refused(reason="unknown_host"))] == 1
    assert samples[("hostguard_refusals_total", refused(reason="malformed_host"))] == 1
    assert refusals(samples, enforced="false") == 2
    assert refusals(samples, enforced="true") == 2


@pytest.mark.usefixtures("sites", "registry")
@override_settings(**DEMO)
def test_the_policy_gauges_describe_the_snapshot_in_use(client: Client) -> None:
    before = time.time()
    assert get(client, "acme.example").status_code == 200  # loads the policy
    snapshot = policy.snapshot
    assert snapshot is not None
    samples = scrape(client)
    local = frozenset({("deployment", "local")})
    assert samples[("hostguard_policy_version", local)] == snapshot.version
    assert samples[("hostguard_policy_authorities", local)] == 4
    confirmed = samples[("hostguard_policy_confirmed_timestamp_seconds", local)]
    assert before <= confirmed <= time.time()
    assert 0 <= samples[("hostguard_policy_age_seconds", local)] < 5

    # A write reaches the next snapshot, and the next scrape.
    Authority.objects.create(tenant=Tenant.objects.get(slug="acme"), host="acme.test")
    assert get(client, "acme.test").status_code == 200
    samples = scrape(client)
    assert samples[("hostguard_policy_authorities", local)] == 5
    assert samples[("hostguard_policy_version", local)] > snapshot.version


@pytest.mark.usefixtures("registry")
@override_settings(**DEMO)
def test_no_policy_gauges_before_there_is_a_policy(client: Client) -> None:
    policy.reset()
    with override_settings(HOSTGUARD_DATABASE="unreachable"):
        samples = scrape(client)
    names = {name for name, _ in samples}
    assert not {name for name in names if name.startswith("hostguard_policy_") and "failures" not in name}


@pytest.mark.usefixtures("sites", "registry")
@override_settings(HOSTGUARD_REFRESH_SECONDS=0.05, **DEMO)
def test_failed_loads_of_the_policy_are_counted(client: Client) -> None:
    with override_settings(HOSTGUARD_DATABASE="unreachable"):
        for _ in range(2):
            assert get(client, "acme.example").status_code == 503
            time.sleep(0.08)  # past the retry interval: a second attempt
    assert get(client, "acme.example").status_code == 200
    samples = scrape(client)
    assert samples[("hostguard_policy_refresh_failures_total", frozenset({("deployment", "local")}))] == 2
    # A 503 is not a refusal of the host.
    assert refusals(samples) == 0


@pytest.mark.usefixtures("sites", "registry")
@override_settings(**DEMO)
def test_the_endpoint_is_a_plain_404_on_a_tenant_host_and_not_a_refusal(client: Client) -> None:
    for host in ("acme.example", "www.acme.example"):
        response = get(client, host, "/metrics")
        assert response.status_code == 404
        assert b"hostguard_" not in response.content
        assert response.wsgi_request.hostguard.verdict == "hidden"
    # A host not served here is refused for its host, as on any other path.
    assert get(client, "nowhere.example", "/metrics").status_code == 421
    samples = scrape(client, "127.0.0.1")
    assert refusals(samples) == 1
    assert refusals(samples, reason="unknown_host") == 1


@pytest.mark.usefixtures("sites", "registry")
@override_settings(HOSTGUARD_ADMIN_HOSTS={})
def test_without_the_path_rule_the_view_still_refuses_a_tenant_host(client: Client) -> None:
    response = get(client, "acme.example", "/metrics")
    assert response.status_code == 404
    assert b"hostguard_" not in response.content
    assert get(client, "localhost", "/metrics").status_code == 200


@pytest.mark.usefixtures("registry")
def test_tls_permission_answers_are_counted(client: Client) -> None:
    for answer in ("allowed", "allowed", "refused", "unavailable", "forbidden"):
        metrics.count_tls_permission(answer)
    with override_settings(**DEMO):
        samples = scrape(client)
    for answer, count in (("allowed", 2), ("refused", 1), ("unavailable", 1), ("forbidden", 1)):
        labels = frozenset({"answer": answer, "deployment": "local"}.items())
        assert samples[("hostguard_tls_permission_total", labels)] == count
    with pytest.raises(ValueError, match="answer must be one of allowed, refused, malformed, unavailable, forbidden"):
        metrics.count_tls_permission("maybe")


@pytest.mark.usefixtures("sites", "registry")
def test_only_safe_methods(client: Client) -> None:
    response = client.post("/metrics", headers={"host": "localhost"})
    assert response.status_code == 405


@pytest.mark.usefixtures("sites")
@override_settings(**DEMO)
def test_metrics_switched_off_count_nothing_and_say_so(client: Client) -> None:
    previous = metrics.activate(None)
    try:
        assert get(client, "nowhere.example").status_code == 421
        response = get(client, "localhost", "/metrics")
    finally:
        metrics.activate(previous)
    assert response.status_code == 503
    assert response.content == b"hostguard's metrics are off in this process.\n"


@pytest.mark.usefixtures("sites")
@override_settings(**DEMO)
def test_a_multiprocess_directory_gone_from_under_the_server_is_a_503_and_a_log_line(
    client: Client, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    previous = metrics.activate(metrics.Metrics(CollectorRegistry()))
    try:
        assert metrics.active().multiprocess  # type: ignore[union-attr]
        directory.rmdir()
        response = get(client, "localhost", "/metrics")
    finally:
        metrics.activate(previous)
    assert response.status_code == 503
    assert response.content == b"hostguard could not collect its metrics; its log says why.\n"
    assert [r for r in caplog.records if r.name == "hostguard.metrics" and r.exc_info]


WORKER = """
import os, sys
import django
django.setup()
from hostguard import metrics
class Snapshot:
    version = int(sys.argv[1])
    size = int(sys.argv[2])
metrics.policy_confirmed(Snapshot())  # as the policy's refresher does on each confirmation
print(os.getpid())
"""


@pytest.mark.usefixtures("sites")
@override_settings(**DEMO)
def test_several_workers_gauges_show_the_stalest_worker_until_it_is_dead(
    client: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))

    def worker(version: int, size: int) -> int:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
        command = [sys.executable, "-c", WORKER, str(version), str(size)]
        done = subprocess.run(command, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60, check=True)
        return int(done.stdout.strip())

    stuck = worker(7, 10)
    time.sleep(1.5)
    worker(9, 12)
    previous = metrics.activate(metrics.Metrics(CollectorRegistry()))
    try:
        local = frozenset({("deployment", "local")})
        samples = scrape(client)
        assert samples[("hostguard_policy_version", local)] == 7  # the stuck worker's
        assert samples[("hostguard_policy_authorities", local)] == 12  # the latest written
        stuck_confirmed = samples[("hostguard_policy_confirmed_timestamp_seconds", local)]  # the stuck worker's
        assert samples[("hostguard_policy_age_seconds", local)] >= 1.5

        # gunicorn.conf.py's child_exit, when the stuck worker is replaced.
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(stuck)
        samples = scrape(client)
        assert samples[("hostguard_policy_version", local)] == 9
        assert samples[("hostguard_policy_confirmed_timestamp_seconds", local)] >= stuck_confirmed + 1.5
        assert samples[("hostguard_policy_age_seconds", local)] <= time.time() - stuck_confirmed - 1.5
    finally:
        metrics.activate(previous)


def test_the_openmetrics_format_when_asked(client: Client, registry: CollectorRegistry) -> None:
    with override_settings(**DEMO):
        response = get(client, "localhost", "/metrics", accept="application/openmetrics-text; version=1.0.0")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.endswith(b"# EOF\n")


WITHOUT_PROMETHEUS = """
import sys
sys.modules["prometheus_client"] = None  # as if the extra were not installed: importing it fails
import django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
from hostguard import metrics
setup_test_environment()
client = Client()
print(metrics.AVAILABLE, metrics.active())
metrics.refused(metrics.Decision("misdirected", "unknown_host"))
metrics.refresh_failed()
metrics.count_tls_permission("allowed")
response = client.get("/metrics", headers={"host": "localhost"})
print(response.status_code)
print(response.content.decode().strip())
"""


def test_without_prometheus_client_metrics_are_off_and_the_endpoint_says_what_to_install(tmp_path: Any) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PROMETHEUS],
        cwd=BASE_DIR,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "HOSTGUARD_LOG_LEVEL": "ERROR",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    available, status, message = done.stdout.strip().splitlines()
    assert available == "False None"
    assert status == "503"
    assert message == (
        "hostguard's metrics need prometheus_client, which is not installed: "
        'pip install "hostguard[prometheus]" (or prometheus-client) and restart.'
    )
    # Said once in the log, as an error: the operator mounted an endpoint that cannot work.
    assert done.stderr.count("hostguard's metrics need prometheus_client") == 1


# --- the Prometheus side, as docs/metrics.md gives it ---------------------------------------

SPIKE_TEST = """
rule_files: [hostguard-rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # 0.2 misdirected requests a second for 10 minutes, then 3 a second; malformed noise throughout.
      - series: 'hostguard_refusals_total{reason="unknown_host",deployment="eu-1",enforced="true"}'
        values: '0+12x10 120+180x15'
      - series: 'hostguard_refusals_total{reason="malformed_host",deployment="eu-1",enforced="true"}'
        values: '0+300x25'
      # A worker confirmed its policy at 0 and never again.
      - series: 'hostguard_policy_age_seconds{deployment="eu-1"}'
        values: '0+60x25'
    alert_rule_test:
      - eval_time: 10m
        alertname: HostguardMisdirectedSpike
        exp_alerts: []
      - eval_time: 20m
        alertname: HostguardMisdirectedSpike
        exp_alerts:
          - exp_labels: {deployment: eu-1, severity: warning}
            exp_annotations:
              summary: "eu-1 refuses 3 requests/s as misdirected"
              description: >-
                Requests for hosts this deployment does not serve. After a tenant moved: DNS or a
                load balancer still sends its traffic here. See the mismatch log in the admin.
      - eval_time: 3m
        alertname: HostguardPolicyStale
        exp_alerts: []
      - eval_time: 5m
        alertname: HostguardPolicyStale
        exp_alerts:
          - exp_labels: {deployment: eu-1, severity: critical}
            exp_annotations:
              summary: "eu-1: a worker's host policy is 5m 0s old"
"""


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true requires it", pytrace=False)
        pytest.skip(message)
    return path


def test_the_documented_scrape_config_and_alerts_are_valid_and_fire_on_a_spike(tmp_path: Path) -> None:
    scrape_config, rules = re.findall(r"```yaml\n(.*?)```", (BASE_DIR / "docs" / "metrics.md").read_text(), re.S)
    (tmp_path / "prometheus.yml").write_text(scrape_config)
    (tmp_path / "hostguard-rules.yml").write_text(rules)
    (tmp_path / "spike.yml").write_text(SPIKE_TEST)
    tool = promtool()
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "hostguard-rules.yml"],
        ["test", "rules", "spike.yml"],
    ):
        done = subprocess.run([tool, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
