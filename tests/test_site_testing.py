"""Testing a site that uses hostguard: ``hostguard.test`` and docs/testing.md.

The end-to-end test makes the site of docs/testing.md — ``django-admin startproject``,
hostguard installed from its wheel as the README's first two install steps say, pytest
and pytest-django — and follows the page's steps to the letter: the site's existing
tests fail once hostguard gates them, and pass again with the one-line change. The
others use the test API the way a site's tests would.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from hostguard.models import Authority, Deployment, get_tenant_model
from hostguard.test import DEFAULT_SLUG, TenantClient, TenantTestCase, serve_tenant, tenant_host
from hostguard.test.pytest_plugin import served_tenant, tenant_client  # noqa: F401  (the plugin's fixtures)
from tests.test_install import (
    BASE_DIR,
    build_distributions,
    clean_environment,
    commands,
    install_steps,
    marked_blocks,
    new_venv,
    outcome,
    run,
)

DOC = BASE_DIR / "docs" / "testing.md"
Tenant = get_tenant_model()


# --- the test API, as a site's tests use it ------------------------------------------------


@pytest.mark.django_db
def test_serve_tenant_makes_what_the_policy_needs_once() -> None:
    acme = serve_tenant("acme", name="Acme Inc")
    assert serve_tenant("acme", name="Acme Inc") == acme
    assert (acme.slug, acme.name, acme.deployment.name, acme.is_active) == ("acme", "Acme Inc", "local", True)
    assert list(Authority.objects.values_list("host", "port", "scheme", "tenant")) == [("acme.test", None, "", acme.pk)]
    response = TenantClient(acme).get("/api/tenant")
    assert response.status_code == 200
    assert response.json()["tenant"]["name"] == "Acme Inc"


@pytest.mark.django_db
def test_serve_tenant_serves_an_existing_tenant_here() -> None:
    elsewhere = Deployment.objects.create(name="remote")
    Tenant.objects.create(slug="acme", name="Acme", deployment=elsewhere, is_active=False)
    acme = serve_tenant("acme", host="shop.acme.example")
    assert (acme.deployment.name, acme.is_active) == ("local", True)
    assert TenantClient(acme).get("/api/tenant").json()["tenant"]["slug"] == "acme"


@pytest.mark.django_db
def test_serve_tenant_refuses_a_host_another_tenant_has() -> None:
    serve_tenant("acme", host="shared.example")
    with pytest.raises(ValueError, match="already claimed by another tenant"):
        serve_tenant("globex", host="shared.example")


@pytest.mark.django_db
@override_settings(HOSTGUARD_DEPLOYMENT=None)
def test_serve_tenant_needs_the_deployment_setting() -> None:
    with pytest.raises(ImproperlyConfigured, match="HOSTGUARD_DEPLOYMENT"):
        serve_tenant()


@pytest.mark.django_db
def test_a_client_without_a_tenant_serves_the_default_one() -> None:
    client = TenantClient()
    response = client.get("/api/tenant")
    assert response.status_code == 200
    assert response.json()["tenant"]["slug"] == DEFAULT_SLUG
    assert response.wsgi_request.get_host() == "tenant.test"
    # A request that names its own host keeps it.
    assert client.get("/api/tenant", headers={"host": "unknown.example"}).status_code == 421


@pytest.mark.django_db
def test_the_host_a_client_sends() -> None:
    shop = serve_tenant("shop", host="*.shop.example")
    assert tenant_host(shop) == "www.shop.example"
    Authority.objects.create(tenant=shop, host="shop.example", port=8080)
    assert tenant_host(shop) == "shop.example:8080"  # an exact host before a wildcard
    assert TenantClient(shop).get("/api/tenant").status_code == 200
    Authority.objects.filter(tenant=shop).update(scheme="https")
    with pytest.raises(ValueError, match="no active host served over http"):
        tenant_host(shop)


def test_the_fixtures_serve_a_tenant(tenant_client: Any, served_tenant: Any) -> None:  # noqa: F811
    response = tenant_client.get("/api/tenant")
    assert response.json()["tenant"]["id"] == served_tenant.pk
    assert response.wsgi_request.tenant == served_tenant


class TestTheTestCase(TenantTestCase):
    def test_its_client_sends_a_served_host(self) -> None:
        response = self.client.get("/api/tenant")
        assert response.status_code == 200
        assert response.json()["tenant"]["slug"] == DEFAULT_SLUG

    def test_each_test_serves_its_own_rows(self) -> None:
        acme = serve_tenant("acme")
        assert TenantClient(acme).get("/api/tenant").json()["tenant"]["id"] == acme.pk


# --- docs/testing.md, followed to the letter ------------------------------------------------


def _pinned(*names: str) -> list[str]:
    """``name==version`` of each name as requirements.txt pins it."""
    text = (BASE_DIR / "requirements.txt").read_text()
    return [re.search(rf"^{re.escape(name)}==\S+", text, re.MULTILINE)[0] for name in names]  # type: ignore[index]


@pytest.mark.e2e
def test_a_site_s_tests_pass_again_with_one_line(tmp_path: Path) -> None:
    _sdist, wheel = build_distributions(tmp_path / "build")
    python, env, pip = new_venv(tmp_path / "venv")
    run([*pip, "install", "--quiet", str(wheel), *_pinned("pytest", "pytest-django")], tmp_path, env, timeout=300)
    run([str(Path(python).parent / "django-admin"), "startproject", "mysite"], tmp_path, env)
    site = tmp_path / "mysite"
    # hostguard installed as the README says: its settings block, appended.
    (settings_block,) = [block for block in install_steps() if block.text.startswith("# settings.py")]
    with (site / "mysite" / "settings.py").open("a") as settings:
        settings.write("\n" + settings_block.text)

    pytest_program = str(Path(python).parent / "pytest")
    runs = 0
    for block in marked_blocks(DOC, "site-tests"):
        if block.language in ("python", "ini"):
            first, _, body = block.text.partition("\n")
            assert first.startswith("# "), first
            (site / first[2:]).write_text(body)
            continue
        assert block.language == "console", block.language
        for command in commands(block):
            assert command.argv[0] == "pytest", f"the test cannot follow {command}"
            returncode, output = outcome([pytest_program, *command.argv[1:], "-p", "no:cacheprovider"], site, env, 180)
            for line in command.expected:
                assert line in output, f"{command} did not print {line!r}:\n{output[-4000:]}"
            failed = any("failed" in line for line in command.expected)
            assert (returncode != 0) is failed, output[-4000:]
            if failed:
                assert "assert 400 == 200" in output, output[-4000:]  # the reason: no Host, so 400
            runs += 1
    assert runs == 2, "the page shows the suite failing, then passing"

    # Without Django settings the plugin does nothing: a plain suite is not disturbed.
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "test_plain.py").write_text("def test_sum():\n    assert sum([1, 2]) == 3\n")
    output = run([pytest_program, "-q", "-p", "no:cacheprovider"], plain, clean_environment(tmp_path / "venv"))
    assert "1 passed" in output
