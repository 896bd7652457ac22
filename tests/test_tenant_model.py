"""The tenant model: hostguard's ``Tenant`` or a site's own (``HOSTGUARD_TENANT_MODEL``).

Runs with hostguard's Tenant, and (``make test``) again with tests/orgs's Organization;
the tests marked ``swapped`` only with the site's own model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.core.checks import Error
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import models
from django.db.migrations.loader import MigrationLoader
from django.test import Client, override_settings
from django.test.utils import isolate_apps

from hostguard.checks.tenant import tenant_model_problems
from hostguard.models import AbstractTenant, Authority, Deployment, MismatchLog, Tenant, get_tenant_model
from hostguard.test import serve_tenant
from hostguard.transfer import validation
from hostguard.transfer.document import parse_document
from tests.e2e import BASE_DIR, E2EError, Site

TENANT = get_tenant_model()
SWAPPED = TENANT is not Tenant


def check_output(*args: str, **options: Any) -> str:
    """What ``manage.py check`` prints, errors included."""
    out = StringIO()
    try:
        call_command("check", *args, stdout=out, stderr=out, **options)
    except SystemCheckError as exc:
        return out.getvalue() + str(exc)
    return out.getvalue()


# --- the model hostguard follows ---------------------------------------------------------


def test_every_relation_to_a_tenant_follows_the_setting() -> None:
    assert Tenant._meta.swappable == "HOSTGUARD_TENANT_MODEL"
    assert issubclass(TENANT, AbstractTenant)
    assert Authority._meta.get_field("tenant").related_model is TENANT
    assert MismatchLog._meta.get_field("tenant").related_model is TENANT
    assert TENANT._meta.get_field("deployment").related_model is Deployment
    assert bool(Tenant._meta.swapped) is SWAPPED


@pytest.mark.django_db
def test_the_migrations_match_the_models() -> None:
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def test_the_relations_to_the_tenant_model_are_made_where_its_table_exists() -> None:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    first = loader.project_state(("hostguard", "0001_initial"), at_end=True)
    last = loader.project_state(("hostguard", "0007_tenant_model"), at_end=True)
    tenant_model_migration = loader.get_migration("hostguard", "0007_tenant_model")
    if not SWAPPED:
        # What 0001 and 0002 always did: existing databases already have them applied.
        assert first.models["hostguard", "authority"].fields["tenant"].remote_field.model == "hostguard.tenant"
        assert tenant_model_migration.operations == []
    else:
        assert "tenant" not in first.models["hostguard", "authority"].fields
        assert ("orgs", "0001_organization") in loader.graph.node_map["hostguard", "0007_tenant_model"].parents
        assert [operation.name for operation in tenant_model_migration.operations] == ["tenant", "tenant"]
    assert last.models["hostguard", "authority"].fields["tenant"].remote_field.model.lower() == (
        TENANT._meta.label_lower
    )


# --- system checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "says", "hint"),
    [
        ("orgs", "is not of the form 'app_label.ModelName'", "Write it as 'app_label.ModelName'"),
        ("orgs.models.Organization", "is not of the form 'app_label.ModelName'", "e.g. 'accounts.Organization'"),
        ("accounts.Organization", "names no installed model", "Add the app 'accounts' to INSTALLED_APPS"),
    ],
)
def test_a_setting_that_names_no_model_is_e015(value: str, says: str, hint: str) -> None:
    with override_settings(HOSTGUARD_TENANT_MODEL=value):
        output = check_output()
    assert "hostguard.E015" in output
    assert says in output
    assert hint in output


@pytest.mark.swapped
def test_a_misspelt_model_gets_a_suggestion() -> None:
    with override_settings(HOSTGUARD_TENANT_MODEL="orgs.Organisation"):
        output = check_output()
    assert "hostguard.E015" in output
    assert "Did you mean 'orgs.Organization'?" in output


def test_a_model_not_derived_from_abstract_tenant_is_e016() -> None:
    with override_settings(HOSTGUARD_TENANT_MODEL="auth.Group"):
        output = check_output()
    assert "hostguard.E016" in output
    assert "`class Group(AbstractTenant)`" in output


@isolate_apps("tests")
def test_a_tenant_model_needs_an_integer_key_and_a_manager_that_records_bulk_writes() -> None:
    class UuidTenant(AbstractTenant):
        id = models.UUIDField(primary_key=True)
        deployment = models.ForeignKey(Deployment, models.PROTECT, related_name="+")
        objects = models.Manager()

        class Meta:
            app_label = "tests"

    problems = tenant_model_problems(UuidTenant)
    assert [problem.id for problem in problems] == ["hostguard.E017", "hostguard.W008"]
    assert "UUIDField" in problems[0].msg
    assert "hostguard.models.TenantManager" in (problems[1].hint or "")
    assert tenant_model_problems(TENANT) == []


def test_tenant_fields_that_cannot_be_carried_are_e018() -> None:
    names = ["nope", "slug", "notes", "parent"] if SWAPPED else ["nope", "slug"]
    with override_settings(HOSTGUARD_TENANT_FIELDS=names):
        output = check_output()
    assert "hostguard.E018" in output
    assert "has no field 'nope'" in output
    assert "'slug' is carried anyway" in output
    if SWAPPED:
        assert "orgs.Organization.notes is a TextField, which can be large" in output
        assert "orgs.Organization.parent is a relation" in output
    with override_settings(HOSTGUARD_TENANT_FIELDS=["plan", "seats"] if SWAPPED else []):
        assert "hostguard.E018" not in check_output()


@pytest.mark.django_db
def test_tables_made_for_another_tenant_model_are_e019() -> None:
    with override_settings(HOSTGUARD_TENANT_MODEL="auth.Group"):
        output = check_output(databases=["default"])
    assert "hostguard.E019" in output
    assert "were created for %s" % TENANT._meta.label in output
    assert "Nothing has been changed" in output
    assert "hostguard.E019" not in check_output(databases=["default"])


def _schema(site: Site) -> str:
    return site.python(
        "from django.db import connection\n"
        "with connection.cursor() as cursor:\n"
        "    tables = sorted(t for t in connection.introspection.table_names(cursor) if t.startswith('hostguard'))\n"
        "    for table in tables:\n"
        "        print(table, sorted((c.name, c.type_code, c.null_ok) for c in\n"
        "              connection.introspection.get_table_description(cursor, table)),\n"
        "              sorted(connection.introspection.get_relations(cursor, table).items()))\n"
    )


@pytest.mark.e2e
def test_an_existing_database_upgrades_to_the_same_schema_as_a_new_one(tmp_path: Path) -> None:
    upgraded = Site(tmp_path / "upgraded")
    upgraded.manage("migrate", "hostguard", "0005", "--noinput", "-v", "0")
    upgraded.migrate()
    fresh = Site(tmp_path / "fresh")
    fresh.migrate()
    assert "hostguard_tenant" in _schema(fresh)
    assert _schema(upgraded) == _schema(fresh)


@pytest.mark.e2e
def test_changing_the_tenant_model_after_migrating_is_refused_and_loses_nothing(tmp_path: Path) -> None:
    site = Site(tmp_path / "site")
    site.migrate()
    site.load(
        {
            "deployments": [{"name": "eu-1"}],
            "tenants": [{"slug": "acme", "name": "Acme", "deployment": "eu-1", "authorities": ["acme.example"]}],
        }
    )
    swapped = {"DJANGO_SETTINGS_MODULE": "tests.settings_swapped"}
    with pytest.raises(E2EError) as refused:
        site.run(["manage.py", "migrate", "--noinput"], env=site.env(**swapped))
    assert "hostguard.E019" in str(refused.value)
    assert "were created for hostguard.Tenant" in str(refused.value)
    # Nothing was written: with the setting as it was, the site has all it had.
    export = json.loads(site.manage("hostguard_export"))
    assert [tenant["slug"] for tenant in export["tenants"]] == ["acme"]
    assert export["tenants"][0]["authorities"] == ["acme.example"]


# --- the import: what a site's own model needs ------------------------------------------


@isolate_apps("tests")
def test_an_import_names_every_new_tenant_whose_own_fields_it_cannot_fill() -> None:
    class Customer(AbstractTenant):
        deployment = models.ForeignKey(Deployment, models.PROTECT, related_name="+")
        billing_email = models.EmailField()
        seats = models.PositiveIntegerField()
        plan = models.CharField(max_length=10, default="free")

        class Meta:
            app_label = "tests"

    document = parse_document(
        {
            "deployments": [{"name": "eu-1"}],
            "tenants": [
                {"slug": "acme", "name": "Acme", "deployment": "eu-1"},
                {"slug": "globex", "name": "Globex", "deployment": "eu-1"},
                {"slug": "initech", "name": "Initech", "deployment": "eu-1"},
            ],
        }
    )
    plan = validation.Plan(document, {}, {}, prune=False, keep_existing=False)
    existing = {"initech": Customer(slug="initech")}
    problems = validation.unfillable_fields(plan, Customer, existing)
    assert len(problems) == 2  # one per new tenant; an existing row keeps its own fields
    assert problems[0].startswith("tenant “acme”: a new tests.Customer needs “billing email” (")
    assert "“seats” (This field cannot be null.)" in problems[0]
    assert "plan" not in problems[0]
    assert "create the tenant in the admin (an import then updates it by its slug)" in problems[0]


@pytest.mark.swapped
@pytest.mark.django_db
def test_an_import_updates_the_site_s_existing_tenants_by_slug(tmp_path: Path) -> None:
    eu = Deployment.objects.create(name="eu-1")
    acme = TENANT.objects.create(slug="acme", name="ACME", deployment=eu, billing_email="ap@acme.example")
    path = tmp_path / "hosts.json"
    path.write_text(
        json.dumps(
            {
                "deployments": [{"name": "local"}],
                "tenants": [
                    {"slug": "acme", "name": "Acme", "deployment": "local", "authorities": ["acme.example"]},
                    {"slug": "globex", "name": "Globex", "deployment": "local", "authorities": ["globex.example"]},
                ],
            }
        )
    )
    call_command("hostguard_import", str(path), stdout=StringIO())
    acme.refresh_from_db()
    assert (acme.name, acme.deployment.name, acme.billing_email) == ("Acme", "local", "ap@acme.example")
    assert list(acme.authorities.values_list("host", flat=True)) == ["acme.example"]
    assert TENANT.objects.get(slug="globex").plan == "free"
    exported = json.loads(call_command_output("hostguard_export"))
    assert [tenant["slug"] for tenant in exported["tenants"]] == ["acme", "globex"]
    assert Client().get("/api/tenant", headers={"host": "acme.example"}).json()["tenant"]["name"] == "Acme"


def call_command_output(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- the admin ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_serves_the_tenant_model_wherever_it_is_registered(admin_client: Client) -> None:
    acme = serve_tenant("acme", host="acme.example")
    admin_client.defaults["HTTP_HOST"] = "localhost"
    opts = TENANT._meta
    assert admin.site.is_registered(TENANT)
    assert admin.site.is_registered(Tenant) is not SWAPPED
    page = admin_client.get(f"/admin/{opts.app_label}/{opts.model_name}/{acme.pk}/change/")
    assert page.status_code == 200
    assert "authorities-0-host" in page.content.decode()  # the hosts inline
    if SWAPPED:
        assert 'name="billing_email"' in page.content.decode()  # the site's own field
    checked = admin_client.get("/admin/hostguard/authority/check/", {"host": "acme.example"}).content.decode()
    assert f'href="/admin/{opts.app_label}/{opts.model_name}/{acme.pk}/change/"' in checked
    deployments = admin_client.get("/admin/hostguard/deployment/").content.decode()
    assert f'href="/admin/{opts.app_label}/{opts.model_name}/?deployment__id__exact={acme.deployment_id}"' in (
        deployments
    )


@pytest.mark.swapped
@pytest.mark.django_db
def test_without_an_admin_for_the_site_s_model_hostguard_s_pages_still_work(admin_client: Client) -> None:
    acme = serve_tenant("acme", host="acme.example")
    admin_client.defaults["HTTP_HOST"] = "localhost"
    model_admin = admin.site.get_model_admin(TENANT)
    admin.site.unregister(TENANT)
    try:
        checked = admin_client.get("/admin/hostguard/authority/check/", {"host": "acme.example"})
        assert checked.status_code == 200
        assert acme.name in checked.content.decode()
        assert admin_client.get("/admin/hostguard/deployment/").status_code == 200
        form = admin_client.get(f"/admin/hostguard/authority/{acme.authorities.get().pk}/change/")
        assert form.status_code == 200  # a plain choice of tenant: no search box to ask
    finally:
        admin.site.register(TENANT, type(model_admin))


def test_an_unknown_tenant_model_does_not_stop_the_site_from_starting() -> None:
    with override_settings(HOSTGUARD_TENANT_MODEL="accounts.Nope"):
        errors = [message for message in _run_tenant_checks() if isinstance(message, Error)]
    assert [error.id for error in errors] == ["hostguard.E015"]


def _run_tenant_checks() -> list[Any]:
    from hostguard.checks.tenant import check_tenant_fields, check_tenant_migrations, check_tenant_model

    return [*check_tenant_model(), *check_tenant_fields(), *check_tenant_migrations()]


def test_the_tenant_model_of_these_settings_passes_the_checks() -> None:
    assert _run_tenant_checks() == []


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (
            'HOSTGUARD_TENANT_MODEL = "accounts.Organization"',
            "(hostguard.E015) HOSTGUARD_TENANT_MODEL = 'accounts.Organization' names no installed model.\n"
            "\tHINT: Add the app 'accounts' to INSTALLED_APPS, or correct the name.",
        ),
        (
            'INSTALLED_APPS = [*INSTALLED_APPS, "tests.orgs"]\nHOSTGUARD_TENANT_MODEL = "orgs.Organisation"',
            "ImproperlyConfigured: HOSTGUARD_TENANT_MODEL = 'orgs.Organisation' names no installed model. "
            "Did you mean 'orgs.Organization'?",
        ),
    ],
)
def test_a_model_that_does_not_exist_is_said_clearly_in_a_fresh_process(
    tmp_path: Path, settings: str, says: str
) -> None:
    (tmp_path / "wrong_settings.py").write_text(f"from tests.settings import *  # noqa: F403\n{settings}\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "HOSTGUARD_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="wrong_settings",
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(BASE_DIR)]),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert says in result.stdout + result.stderr
