"""What operators see while the policy database is unreachable (in-process; the real
outage, with gunicorn and a cut TCP relay, is tests/test_e2e_outage.py)."""

from __future__ import annotations

import logging
import time

import pytest
from django.test import Client, override_settings

from hostguard.models import Authority, Deployment, Tenant
from hostguard.policy import policy

pytestmark = pytest.mark.django_db

INTERVAL = 0.1


@pytest.fixture(autouse=True)
def acme() -> None:
    deployment = Deployment.objects.create(name="local")
    tenant = Tenant.objects.create(name="Acme", slug="acme", deployment=deployment)
    Authority.objects.create(tenant=tenant, host="acme.example")
    # Load once, then forget the snapshot as a fresh process would. The policy reads
    # on the test's thread here (tests/conftest.py): the in-process view of an outage.
    assert policy.obtain() is not None
    policy.reset()


def policy_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "hostguard.policy" and r.levelno == logging.WARNING]


@override_settings(HOSTGUARD_REFRESH_SECONDS=5)
def test_a_flood_of_503s_logs_one_warning_and_no_error(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with override_settings(HOSTGUARD_DATABASE="unreachable"):
        responses = [client.get("/api/ping", headers={"host": "acme.example"}) for _ in range(50)]
    assert {r.status_code for r in responses} == {503}
    assert all(r["Retry-After"] == "5" for r in responses)
    assert len(policy_warnings(caplog)) == 1
    # Django would log each 503 at ERROR, which mails ADMINS: not during an outage.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@override_settings(HOSTGUARD_REFRESH_SECONDS=INTERVAL)
def test_a_long_outage_repeats_the_gist_not_the_traceback(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with override_settings(HOSTGUARD_DATABASE="unreachable"):
        for _ in range(3):
            assert client.get("/api/ping", headers={"host": "acme.example"}).status_code == 503
            time.sleep(INTERVAL * 1.5)
    first, *later = policy_warnings(caplog)
    assert first.exc_info is not None
    assert len(later) == 2
    assert all(r.exc_info is None and "still failing: " in r.getMessage() for r in later)
    assert "unreachable" in later[0].getMessage()

    time.sleep(INTERVAL * 1.5)
    response = client.get("/api/ping", headers={"host": "acme.example"})
    assert response.status_code == 200
    assert response.json()["tenant"] == "acme"
    back = [r for r in caplog.records if "reached its database again" in r.getMessage()]
    assert len(back) == 1
    assert policy.snapshot is not None
