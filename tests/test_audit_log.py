"""The audit log's lines read back to the right fields, whatever a client sends."""

from __future__ import annotations

import logging
import re
import time

import pytest
from django.test import Client, override_settings

from hostguard import audit
from hostguard.audit import recorder
from hostguard.models import Authority, Deployment, MismatchLog, Tenant

pytestmark = pytest.mark.django_db

FORGED = "evil.example port=443 tenant=acme"
_FIELD = re.compile(r' ?([a-z_]+)=("[^"]*"|[^\s"=]+)')


def logfmt(text: str) -> dict[str, str]:
    """``key=value key="a value"`` as a dict; fails on anything else, or a key given twice."""
    fields: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _FIELD.match(text, position)
        assert match is not None, f"not logfmt at {text[position:]!r}"
        key, value = match.groups()
        assert key not in fields, f"{key} given twice in {text!r}"
        fields[key] = value[1:-1].replace("\\x22", '"') if value.startswith('"') else value
        position = match.end()
    return fields


def mismatch_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "hostguard.mismatch"]


def fields_of(record: logging.LogRecord) -> tuple[str, dict[str, str]]:
    head, _, rest = record.getMessage().partition(": ")
    return head, logfmt(rest)


def test_a_host_that_looks_like_fields_cannot_forge_them(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert client.get("/api/whoami", headers={"host": FORGED}).status_code == 400
        response = client.get("/a=b c", headers={"host": 'x" y', "user-agent": 'say "hi" =)'})
        assert response.status_code == 400
    first, second = mismatch_lines(caplog)
    assert fields_of(first) == (
        "refused malformed_host",
        {
            "host": FORGED,
            "port": "-",
            "scheme": "http",
            "deployment": "local",
            "tenant": "-",
            "method": "GET",
            "path": "/api/whoami",
            "remote_addr": "127.0.0.1",
            "user_agent": "-",
        },
    )
    assert f'host="{FORGED}" port=- ' in first.getMessage()
    _, fields = fields_of(second)
    assert (fields["host"], fields["path"], fields["user_agent"]) == ('x" y', "/a=b c", 'say "hi" =)')
    # The record's own fields are the values themselves, unquoted.
    assert (first.host, first.port, first.tenant) == (FORGED, None, "")  # type: ignore[attr-defined]


def test_one_more_mismatch_is_summarised_in_the_singular(caplog: pytest.LogCaptureFixture) -> None:
    now = (time.time() // 60) * 60 - 120
    recorder.record("local", "unknown_host", "evil.example", 80, "http", now=now)
    recorder.record("local", "unknown_host", "evil.example", 80, "http", now=now + 1)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        recorder.flush(final=True)
    (summary,) = mismatch_lines(caplog)
    assert summary.suppressed == 1  # type: ignore[attr-defined]
    assert summary.getMessage().startswith("1 more mismatch in the 60 s window from ")
    assert "was not logged on its own" in summary.getMessage()
    assert "most frequent: evil.example unknown_host ×1" in summary.getMessage()


@pytest.fixture
def sites() -> None:
    deployment = Deployment.objects.create(name="local")
    for slug in ("acme", "globex"):
        tenant = Tenant.objects.create(name=slug.title(), slug=slug, deployment=deployment)
        Authority.objects.create(tenant=tenant, host=f"{slug}.example")


@pytest.mark.usefixtures("sites")
@override_settings(HOSTGUARD_SNI_HEADER="X-Forwarded-SNI", HOSTGUARD_TRUSTED_PROXIES=["127.0.0.1"])
def test_an_sni_mismatch_keeps_the_first_sni_name_in_its_row_and_line(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        for path, sni in (("/first", "globex.example"), ("/second", "other.example")):
            response = client.get(path, headers={"host": "acme.example", "x-forwarded-sni": sni})
            assert response.status_code == 421
    (line,) = mismatch_lines(caplog)
    _, fields = fields_of(line)
    assert (fields["host"], fields["tenant"], fields["sni"]) == ("acme.example", "acme", "globex.example")
    assert line.sni == "globex.example"  # type: ignore[attr-defined]
    assert audit.flush() == 2
    row = MismatchLog.objects.get()
    assert (row.reason, row.count, row.path, row.sni) == ("sni_mismatch", 2, "/first", "globex.example")


@pytest.mark.usefixtures("sites")
@override_settings(HOSTGUARD_SNI_HEADER="X-Forwarded-SNI", HOSTGUARD_TRUSTED_PROXIES=["127.0.0.1"])
def test_a_hostile_sni_name_is_escaped_and_bounded(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    hostile = "a\x1b b=" + "x" * 400
    with caplog.at_level(logging.WARNING):
        response = client.get("/", headers={"host": "acme.example", "x-forwarded-sni": hostile})
        assert response.status_code == 421
    (line,) = mismatch_lines(caplog)
    _, fields = fields_of(line)
    assert fields["sni"].startswith("a\\x1b b=xxx")
    assert len(fields["sni"]) == audit.MAX_SNI
    audit.flush()
    assert MismatchLog.objects.get().sni == fields["sni"]


def test_other_refusals_have_no_sni_field(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        client.get("/", headers={"host": "a..b"})
    (line,) = mismatch_lines(caplog)
    assert "sni" not in fields_of(line)[1]
    audit.flush()
    assert MismatchLog.objects.get().sni == ""
