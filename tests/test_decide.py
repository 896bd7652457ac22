"""One pipeline: the middleware, the "Check a host" page and hostguard_check agree by construction.

The same described request — a Host or URL, a scheme, a path, a TLS server name — gets
the same verdict from all three, with the same defaults; and the pure pipeline follows
DESIGN.md's decision order step by step.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings
from django.urls import reverse

from hostguard.conf import conf
from hostguard.decide import DEFAULT_SCHEME, ProbeError, RequestFacts, decide, probe
from hostguard.models import Authority, Deployment, Tenant
from hostguard.snapshot import Snapshot
from hostguard.sni import ENVIRON_KEY

SETTINGS = {
    "HOSTGUARD_DEPLOYMENT": "eu-1",
    "HOSTGUARD_ALWAYS_ALLOW": ["localhost"],
    "HOSTGUARD_EXEMPT_PATHS": ["/healthz"],
    "HOSTGUARD_ADMIN_HOSTS": {"/admin/": ["localhost"]},
}


def rows() -> list[tuple[Any, ...]]:
    # (id, host, port, scheme, active, tenant id, slug, tenant active, deployment)
    return [
        (1, "acme.example", None, "", True, 1, "acme", True, "eu-1"),
        (2, "*.acme.example", None, "", True, 1, "acme", True, "eu-1"),
        (3, "secure.acme.example", None, "https", True, 1, "acme", True, "eu-1"),
        (4, "shop.acme.example", 8443, "", True, 1, "acme", True, "eu-1"),
        (5, "umbrella.example", None, "", True, 2, "umbrella", True, "eu-1"),
        (6, "globex.example", None, "", True, 3, "globex", True, "us-1"),
        (7, "paused.example", None, "", False, 2, "umbrella", True, "eu-1"),
    ]


@pytest.mark.parametrize(
    ("facts", "verdict", "reason"),
    [
        (RequestFacts("evil.example", "http", "/healthz"), "exempt", ""),  # step 1 before everything
        (RequestFacts("a..b", "http", "/healthz"), "exempt", ""),
        (RequestFacts("a..b", "http"), "malformed", "malformed_host"),  # step 2
        (RequestFacts(None, "http", target="http://acme.example/"), "malformed", "malformed_host"),
        (RequestFacts("localhost:8000", "http"), "allow", ""),  # step 3
        (RequestFacts("evil.example", "http"), "misdirected", "unknown_host"),  # step 4
        (RequestFacts("shop.acme.example:9000", "http"), "allow", ""),  # the wildcard admits it
        (RequestFacts("secure.acme.example", "http"), "allow", ""),  # ...and any scheme
        (RequestFacts("paused.example", "https"), "misdirected", "inactive"),  # step 6
        (RequestFacts("globex.example", "https"), "misdirected", "other_deployment"),  # step 7
        # Step 7 comes before step 8: another deployment's tenant is never sni_mismatch.
        (RequestFacts("globex.example", "https", sni="acme.example"), "misdirected", "other_deployment"),
        (RequestFacts("acme.example", "https", sni="umbrella.example"), "misdirected", "sni_mismatch"),
        (RequestFacts("acme.example", "https", sni="www.acme.example"), "allow", ""),
        (RequestFacts("acme.example", "https", sni=""), "allow", ""),  # no SNI sent: nothing to check
        (RequestFacts("acme.example", "https", "/admin/"), "hidden", ""),
        (RequestFacts("localhost", "https", "/admin/"), "allow", ""),
    ],
)
def test_the_pipeline_follows_the_decision_order(facts: RequestFacts, verdict: str, reason: str) -> None:
    with override_settings(**SETTINGS):
        decision = decide(facts, Snapshot.from_rows(1, rows()), conf.gate)
    assert (decision.verdict, decision.reason) == (verdict, reason)


def test_with_no_snapshot_only_what_needs_one_is_unavailable() -> None:
    with override_settings(**SETTINGS):
        gate = conf.gate
        assert decide(RequestFacts("acme.example", "http"), None, gate).verdict == "unavailable"
        assert decide(RequestFacts("localhost", "http"), None, gate).verdict == "allow"
        assert decide(RequestFacts("a..b", "http"), None, gate).verdict == "malformed"
        assert decide(RequestFacts("acme.example", "http", "/healthz"), None, gate).verdict == "exempt"


def test_an_sni_mismatch_names_the_server_name() -> None:
    with override_settings(**SETTINGS):
        decision = decide(
            RequestFacts("acme.example", "https", sni="umbrella.example"), Snapshot.from_rows(1, rows()), conf.gate
        )
    assert decision.sni == "umbrella.example"


# --- a described request -----------------------------------------------------------------


def test_a_described_request_without_a_scheme_is_https() -> None:
    assert DEFAULT_SCHEME == "https"
    assert probe("acme.example").facts == RequestFacts("acme.example", "https", "/")
    assert probe("http://acme.example:8080/cart?x=1").facts == RequestFacts("acme.example:8080", "http", "/cart")
    assert probe("acme.example/healthz", "http", 8080).facts == RequestFacts("acme.example:8080", "http", "/healthz")
    described = probe("Bücher.example", sni="bücher.example")
    assert described.facts.host == "xn--bcher-kva.example"
    assert described.facts.sni == "xn--bcher-kva.example"
    assert described.converted_from == "Bücher.example"


@pytest.mark.parametrize(
    ("text", "scheme", "port", "field"),
    [
        ("https://acme.example/", "http", None, "scheme"),
        ("acme.example:8080", None, 9090, "port"),
        ("ftp://acme.example/", None, None, "host"),
    ],
)
def test_a_described_request_that_contradicts_itself_says_which_part(
    text: str, scheme: str | None, port: int | None, field: str
) -> None:
    with pytest.raises(ProbeError) as raised:
        probe(text, scheme, port)
    assert raised.value.field == field


# --- the three callers agree ---------------------------------------------------------------

CASES = [
    # (what staff type, scheme, SNI)
    ("acme.example", None, None),
    ("secure.acme.example", "http", None),
    ("secure.acme.example", None, None),
    ("shop.acme.example:8443", None, None),
    ("https://acme.example/healthz", None, None),
    ("https://evil.example/healthz", None, None),
    ("https://acme.example/admin/", None, None),
    ("http://localhost/admin/", None, None),
    ("acme.example", None, "umbrella.example"),
    ("acme.example", None, "www.acme.example"),
    ("globex.example", None, "acme.example"),
    ("paused.example", None, None),
    ("nobody.example", None, None),
    ("a..b", None, None),
]


@pytest.fixture
def policy_rows(db: None) -> None:
    eu, us = Deployment.objects.create(name="eu-1"), Deployment.objects.create(name="us-1")
    acme = Tenant.objects.create(slug="acme", name="Acme", deployment=eu)
    umbrella = Tenant.objects.create(slug="umbrella", name="Umbrella", deployment=eu)
    globex = Tenant.objects.create(slug="globex", name="Globex", deployment=us)
    for host, port, scheme, tenant, active in [
        ("acme.example", None, "", acme, True),
        ("*.acme.example", None, "", acme, True),
        ("secure.acme.example", None, "https", acme, True),
        ("shop.acme.example", 8443, "", acme, True),
        ("umbrella.example", None, "", umbrella, True),
        ("globex.example", None, "", globex, True),
        ("paused.example", None, "", umbrella, False),
    ]:
        Authority.objects.create(host=host, port=port, scheme=scheme, tenant=tenant, is_active=active)


def middleware_status(client: Client, text: str, scheme: str | None, sni: str | None) -> int:
    facts = probe(text, scheme, sni=sni).facts
    extra: dict[str, Any] = {ENVIRON_KEY: sni} if sni else {}
    response = client.get(facts.path, headers={"host": facts.host or ""}, secure=facts.scheme == "https", **extra)
    # Served means whatever the site answers (the admin redirects to its login page).
    return 200 if response.status_code < 400 else response.status_code


def command_status(text: str, scheme: str | None, sni: str | None) -> int:
    args = [text, *(["--scheme", scheme] if scheme else []), *(["--sni", sni] if sni else [])]
    try:
        call_command("hostguard_check", *args, stdout=io.StringIO(), stderr=io.StringIO())
    except CommandError as error:
        return {1: 421, 2: 400, 4: 404}[error.returncode]
    return 200


def page_status(staff: Client, text: str, scheme: str | None, sni: str | None) -> int:
    query = {"host": text, "scheme": scheme or "", "sni": sni or ""}
    response = staff.get(reverse("admin:hostguard_authority_check"), query, headers={"host": "localhost"})
    assert response.status_code == 200
    result = response.context["result"]
    assert result is not None, response.context["form"].errors
    status: int = result.status
    return status


@override_settings(**SETTINGS)
@pytest.mark.usefixtures("policy_rows")
def test_the_page_the_command_and_the_middleware_agree(client: Client) -> None:
    staff_user = User.objects.create_superuser("staff", "staff@example.com", "secret")
    staff = Client()
    staff.force_login(staff_user)
    seen = set()
    for text, scheme, sni in CASES:
        expected = middleware_status(client, text, scheme, sni)
        assert command_status(text, scheme, sni) == expected, (text, scheme, sni)
        assert page_status(staff, text, scheme, sni) == expected, (text, scheme, sni)
        seen.add(expected)
    # The cases reach every answer a client can get.
    assert seen >= {200, 400, 404, 421}
