"""The audit log's lines read back to the right fields, whatever a client sends."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace

import pytest
from django.test import Client, RequestFactory

from hostguard import audit
from hostguard.audit import recorder
from hostguard.decision import MISDIRECTED, SNI_MISMATCH, Decision
from hostguard.models import MismatchLog

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


def test_an_sni_mismatch_keeps_the_first_sni_name_in_its_row_and_line(
    rf: RequestFactory, caplog: pytest.LogCaptureFixture
) -> None:
    decision = Decision(
        MISDIRECTED, SNI_MISMATCH, "acme.example", 443, "https", tenant_slug="acme", sni="globex.example"
    )
    with caplog.at_level(logging.WARNING):
        audit.mismatch(rf.get("/first", HTTP_HOST="acme.example", secure=True), decision)
        audit.mismatch(rf.get("/second", HTTP_HOST="acme.example", secure=True), replace(decision, sni="other.example"))
    (line,) = mismatch_lines(caplog)
    _, fields = fields_of(line)
    assert (fields["host"], fields["tenant"], fields["sni"]) == ("acme.example", "acme", "globex.example")
    assert line.sni == "globex.example"  # type: ignore[attr-defined]
    assert audit.flush() == 2
    row = MismatchLog.objects.get()
    assert (row.reason, row.count, row.path, row.sni) == ("sni_mismatch", 2, "/first", "globex.example")


def test_a_hostile_sni_name_is_escaped_and_bounded(rf: RequestFactory, caplog: pytest.LogCaptureFixture) -> None:
    hostile = "a\x1b b=" + "x" * 400
    decision = Decision(MISDIRECTED, SNI_MISMATCH, "acme.example", 443, "https", sni=hostile)
    with caplog.at_level(logging.WARNING):
        audit.mismatch(rf.get("/", HTTP_HOST="acme.example", secure=True), decision)
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
