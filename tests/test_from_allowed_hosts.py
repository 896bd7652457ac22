"""`hostguard_import --from-allowed-hosts TENANT`: a site's ALLOWED_HOSTS becomes a tenant's authorities."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings

from hostguard.models import Authority, Deployment, get_tenant_model

# hostguard.Tenant, or the site's own model (tests/settings_swapped.py runs these tests with one).
Tenant = get_tenant_model()

pytestmark = pytest.mark.django_db

HERE = "local"  # HOSTGUARD_DEPLOYMENT of the test settings


def adopt(*args: str) -> str:
    out = StringIO()
    call_command("hostguard_import", "--from-allowed-hosts", *args, stdout=out)
    return out.getvalue()


def refused(*args: str) -> str:
    with pytest.raises(CommandError) as excinfo:
        adopt(*args)
    return str(excinfo.value)


def hosts(slug: str) -> set[str]:
    return {str(authority) for authority in Authority.objects.filter(tenant__slug=slug)}


def snapshot() -> list[tuple[str, str, str, bool, str]]:
    return sorted(
        (str(a), a.tenant.slug, a.tenant.deployment.name, a.is_active, a.note)
        for a in Authority.objects.select_related("tenant__deployment")
    )


@override_settings(ALLOWED_HOSTS=[".example.com", "shop.example.net", "localhost", "127.0.0.1", "[::1]"])
def test_adopts_allowed_hosts_as_a_new_tenant_of_this_deployment() -> None:
    output = adopt("mysite")
    tenant = Tenant.objects.select_related("deployment").get(slug="mysite")
    assert tenant.deployment.name == HERE
    assert tenant.is_active
    assert hosts("mysite") == {"example.com", "*.example.com", "shop.example.net", "localhost", "127.0.0.1", "[::1]"}
    assert "ALLOWED_HOSTS = ['*']" in output
    assert "HOSTGUARD_ALWAYS_ALLOW" in output  # localhost-style entries: a word on where they may belong


@override_settings(ALLOWED_HOSTS=[".example.com", "shop.example.net"])
def test_the_adopted_hosts_are_served_once_allowed_hosts_is_star() -> None:
    adopt("mysite")
    with override_settings(ALLOWED_HOSTS=["*"], HOSTGUARD_ALWAYS_ALLOW=[]):
        client = Client()
        for host in ("example.com", "www.example.com", "a.b.example.com", "shop.example.net"):
            response = client.get("/api/whoami", headers={"host": host})
            assert response.status_code == 200, host
            assert response.json()["tenant"] == "mysite"
        assert client.get("/api/whoami", headers={"host": "www.example.net"}).status_code == 421


@override_settings(ALLOWED_HOSTS=["Bücher.Example.", ".example.com", "example.com"])
def test_entries_are_normalised_and_duplicates_merged() -> None:
    adopt("mysite")
    assert hosts("mysite") == {"xn--bcher-kva.example", "example.com", "*.example.com"}


@override_settings(ALLOWED_HOSTS=[".example.com", "localhost"])
def test_running_it_again_changes_nothing() -> None:
    adopt("mysite")
    before = snapshot()
    output = adopt("mysite")
    assert "No changes" in output
    assert snapshot() == before


@override_settings(ALLOWED_HOSTS=["*"])
def test_a_lone_star_is_refused() -> None:
    message = refused("mysite")
    assert "'*'" in message
    assert "names no host" in message
    assert not Tenant.objects.exists()


@override_settings(ALLOWED_HOSTS=[])
def test_an_empty_list_is_refused() -> None:
    assert "ALLOWED_HOSTS is empty" in refused("mysite")
    assert not Deployment.objects.exists()


@override_settings(ALLOWED_HOSTS=["*", "example.com"])
def test_a_star_beside_hosts_is_skipped_with_a_word() -> None:
    output = adopt("mysite")
    assert hosts("mysite") == {"example.com"}
    assert "Skipped '*'" in output


@override_settings(ALLOWED_HOSTS=["example.com", "exa mple.com", ".", "user@example.org"])
def test_invalid_entries_are_named_and_nothing_is_written() -> None:
    message = refused("mysite")
    assert "Nothing was imported" in message
    for entry in ("exa mple.com", "'.'", "user@example.org"):
        assert entry in message
    assert not Tenant.objects.exists()
    assert not Deployment.objects.exists()


@override_settings(ALLOWED_HOSTS=["example.com", "shop.example.com"])
def test_a_host_another_tenant_claims_is_refused_not_taken() -> None:
    other = Tenant.objects.create(slug="globex", name="Globex", deployment=Deployment.objects.create(name="us-1"))
    Authority.objects.create(host="shop.example.com", tenant=other)
    before = snapshot()
    message = refused("mysite")
    assert "shop.example.com" in message
    assert "“Globex”" in message
    assert snapshot() == before
    assert not Tenant.objects.filter(slug="mysite").exists()


@override_settings(ALLOWED_HOSTS=["example.com", "new.example.com"])
def test_an_existing_tenant_keeps_its_record_hosts_and_notes() -> None:
    elsewhere = Deployment.objects.create(name="eu-2", description="Frankfurt")
    tenant = Tenant.objects.create(slug="acme", name="Acme Corp", deployment=elsewhere, is_active=False)
    Authority.objects.create(host="example.com", tenant=tenant, note="primary", is_active=False)
    Authority.objects.create(host="acme.example", tenant=tenant)
    output = adopt("acme")
    tenant.refresh_from_db()
    assert (tenant.name, tenant.deployment.name, tenant.is_active) == ("Acme Corp", "eu-2", False)
    assert Deployment.objects.get(name="eu-2").description == "Frankfurt"
    assert hosts("acme") == {"example.com", "new.example.com", "acme.example"}
    kept = Authority.objects.get(host="example.com")
    assert (kept.note, kept.is_active) == ("primary", False)
    assert "eu-2" in output  # told that this tenant is not served here


@override_settings(ALLOWED_HOSTS=["example.com"])
def test_an_existing_deployment_keeps_its_description() -> None:
    Deployment.objects.create(name=HERE, description="Laptop")
    adopt("mysite")
    assert Deployment.objects.get(name=HERE).description == "Laptop"


@override_settings(ALLOWED_HOSTS=[".example.com"])
def test_dry_run_lists_the_changes_and_writes_nothing() -> None:
    output = adopt("mysite", "--dry-run")
    assert "*.example.com" in output
    assert "Dry run: nothing was written." in output
    assert not Tenant.objects.exists()
    assert not Deployment.objects.exists()


@override_settings(ALLOWED_HOSTS=["example.com"])
def test_an_invalid_tenant_slug_is_refused() -> None:
    assert "not a valid tenant slug" in refused("my site")
    assert not Tenant.objects.exists()


@override_settings(ALLOWED_HOSTS=["example.com"], HOSTGUARD_DEPLOYMENT=None)
def test_refused_without_a_deployment() -> None:
    assert "HOSTGUARD_DEPLOYMENT" in refused("mysite")


@override_settings(ALLOWED_HOSTS=["example.com"])
def test_file_and_from_allowed_hosts_are_exclusive(tmp_path: object) -> None:
    with pytest.raises(CommandError, match="either FILE or --from-allowed-hosts"):
        call_command("hostguard_import", "hosts.json", "--from-allowed-hosts", "mysite", stdout=StringIO())
    with pytest.raises(CommandError, match="either FILE or --from-allowed-hosts"):
        call_command("hostguard_import", stdout=StringIO())
    with pytest.raises(CommandError, match="--prune"):
        call_command("hostguard_import", "--from-allowed-hosts", "mysite", "--prune", stdout=StringIO())
    assert not Tenant.objects.exists()


@override_settings(ALLOWED_HOSTS=[".example.com"])
def test_a_wildcard_over_another_tenants_host_needs_allow_shared_names() -> None:
    other = Tenant.objects.create(slug="globex", name="Globex", deployment=Deployment.objects.create(name="us-1"))
    Authority.objects.create(host="shop.example.com", port=8443, tenant=other)
    before = snapshot()
    message = refused("mysite")
    assert "*.example.com shares host names with the tenant “globex” (shop.example.com:8443)." in message
    assert "--allow-shared-names" in message
    assert snapshot() == before
    output = adopt("mysite", "--allow-shared-names")
    assert "Shared host names (allowed)" in output
    assert hosts("mysite") == {"example.com", "*.example.com"}
    assert hosts("globex") == {"shop.example.com:8443"}
