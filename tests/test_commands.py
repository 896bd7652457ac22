"""hostguard_import, hostguard_export, hostguard_check and hostguard_demo, run as a user would."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings

from hostguard.models import Authority, Deployment, PolicyStamp, get_tenant_model
from hostguard.transfer import export_policy

# hostguard.Tenant, or the site's own model (tests/settings_swapped.py runs these tests with one).
Tenant = get_tenant_model()


def sample() -> dict[str, Any]:
    return {
        "deployments": [{"name": "eu-1", "description": "Frankfurt"}, {"name": "us-1"}],
        "tenants": [
            {
                "slug": "acme",
                "name": "Acme",
                "deployment": "eu-1",
                "active": True,
                "authorities": ["acme.example", "*.acme.example", "https://shop.acme.example:8443", "Bücher.example"],
            },
            {"slug": "globex", "name": "Globex", "deployment": "us-1", "authorities": ["globex.example"]},
        ],
    }


def write(tmp_path: Path, data: Any, name: str = "policy.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return str(path)


def run(*args: str, **options: Any) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def failure(*args: str, **options: Any) -> tuple[CommandError, str]:
    """The CommandError a command raises, and what it printed before."""
    out = io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return info.value, out.getvalue()


def import_file(tmp_path: Path, data: Any, *flags: str) -> str:
    return run("hostguard_import", write(tmp_path, data), *flags)


def stamp() -> int:
    return PolicyStamp.objects.get(pk=1).version


def owners() -> dict[str, str]:
    """Every stored authority and the slug of the tenant holding it."""
    return {str(a): a.tenant.slug for a in Authority.objects.select_related("tenant")}


def nothing_stored() -> bool:
    return not (Deployment.objects.exists() or Tenant.objects.exists() or Authority.objects.exists())


# --- hostguard_import ------------------------------------------------------------------


def test_import_creates_deployments_tenants_and_normalised_authorities(db: None, tmp_path: Path) -> None:
    output = import_file(tmp_path, sample())

    assert "Deployments: 2 created, 0 updated, 0 deleted, 0 unchanged." in output
    assert "Tenants: 2 created, 0 updated, 0 deleted, 0 unchanged." in output
    assert "Authorities: 5 created, 0 updated, 0 deleted, 0 unchanged." in output
    assert owners() == {
        "acme.example": "acme",
        "*.acme.example": "acme",
        "https://shop.acme.example:8443": "acme",
        "xn--bcher-kva.example": "acme",
        "globex.example": "globex",
    }
    shop = Authority.objects.get(host="shop.acme.example")
    assert (shop.scheme, shop.port, shop.is_active) == ("https", 8443, True)
    globex = Tenant.objects.get(slug="globex")
    assert (globex.name, globex.deployment.name, globex.is_active) == ("Globex", "us-1", True)
    assert Deployment.objects.get(name="eu-1").description == "Frankfurt"


def test_import_is_idempotent(db: None, tmp_path: Path) -> None:
    import_file(tmp_path, sample())
    version = stamp()
    before = export_policy()

    output = import_file(tmp_path, sample())

    assert "No changes: the database already matches the file." in output
    assert "Authorities: 0 created, 0 updated, 0 deleted, 5 unchanged." in output
    assert "Tenants: 0 created, 0 updated, 0 deleted, 2 unchanged." in output
    assert export_policy() == before
    assert stamp() == version


def test_import_updates_what_changed(db: None, tmp_path: Path) -> None:
    import_file(tmp_path, sample())
    shop_id = Authority.objects.get(host="shop.acme.example").pk
    data = sample()
    acme = data["tenants"][0]
    acme["name"] = "Acme Corporation"
    acme["deployment"] = "us-1"
    acme["authorities"][2] = {"authority": "https://shop.acme.example:8443", "active": False, "note": "migrating"}
    data["tenants"][1]["active"] = False
    data["deployments"][0]["description"] = "Frankfurt, DE"

    output = import_file(tmp_path, data, "-v", "2")

    assert "Deployments: 0 created, 1 updated, 0 deleted, 1 unchanged." in output
    assert "Tenants: 0 created, 2 updated, 0 deleted, 0 unchanged." in output
    assert "Authorities: 0 created, 1 updated, 0 deleted, 4 unchanged." in output
    assert "update tenant acme: name, moved eu-1 → us-1" in output
    assert "update tenant globex: suspended" in output
    tenant = Tenant.objects.get(slug="acme")
    assert (tenant.name, tenant.deployment.name) == ("Acme Corporation", "us-1")
    assert not Tenant.objects.get(slug="globex").is_active
    shop = Authority.objects.get(pk=shop_id)
    assert (shop.is_active, shop.note) == (False, "migrating")
    assert Deployment.objects.get(name="eu-1").description == "Frankfurt, DE"


def test_policy_stamp_moves_once_per_import_that_changes_something(db: None, tmp_path: Path) -> None:
    start = stamp()
    import_file(tmp_path, sample())  # 2 deployments, 2 tenants, 5 authorities: one bump
    assert stamp() == start + 1

    import_file(tmp_path, sample())
    assert stamp() == start + 1

    changed = sample()
    changed["tenants"][1]["authorities"].append("www.globex.example")
    import_file(tmp_path, changed, "--dry-run")
    assert stamp() == start + 1

    import_file(tmp_path, changed)
    assert stamp() == start + 2


def test_a_bad_host_in_the_last_tenant_writes_nothing(db: None, tmp_path: Path) -> None:
    import_file(tmp_path, sample())
    before, version = export_policy(), stamp()
    data = sample()
    data["tenants"][0]["name"] = "Renamed"
    data["tenants"].append({"slug": "initech", "name": "Initech", "deployment": "eu-1", "authorities": ["ok.example"]})
    data["tenants"].append(
        {"slug": "umbrella", "name": "Umbrella", "deployment": "eu-1", "authorities": ["good.example", "bad..example"]}
    )

    error, _output = failure("hostguard_import", write(tmp_path, data))

    assert error.returncode != 0
    assert "Nothing was imported" in str(error)
    assert "tenant “umbrella”" in str(error)
    assert "bad..example" in str(error)
    assert export_policy() == before
    assert stamp() == version


def test_an_unknown_deployment_is_refused_naming_the_tenant(db: None, tmp_path: Path) -> None:
    data = sample()
    data["tenants"][1]["deployment"] = "ap-9"

    error, _output = failure("hostguard_import", write(tmp_path, data))

    assert "tenant “globex”" in str(error)
    assert "“ap-9”" in str(error)
    assert nothing_stored()


def test_a_deployment_already_in_the_database_need_not_be_declared(db: None, tmp_path: Path) -> None:
    Deployment.objects.create(name="ap-1")
    data = {"tenants": [{"slug": "wayne", "name": "Wayne", "deployment": "ap-1", "authorities": ["wayne.example"]}]}

    import_file(tmp_path, data)

    assert owners() == {"wayne.example": "wayne"}


def test_dry_run_lists_the_changes_and_writes_nothing(db: None, tmp_path: Path) -> None:
    version = stamp()

    output = import_file(tmp_path, sample(), "--dry-run")

    assert "create tenant acme on eu-1" in output
    assert "create authority xn--bcher-kva.example for acme" in output
    assert "Tenants: 2 created" in output
    assert "Dry run: nothing was written." in output
    assert nothing_stored()
    assert stamp() == version


def test_prune_deletes_what_the_file_does_not_list(db: None, tmp_path: Path) -> None:
    import_file(tmp_path, sample())
    data = sample()
    data["deployments"] = [{"name": "eu-1", "description": "Frankfurt"}]
    data["tenants"] = [
        {"slug": "acme", "name": "Acme", "deployment": "eu-1", "authorities": ["acme.example", "Bücher.example"]}
    ]

    unpruned = import_file(tmp_path, data)
    assert "0 deleted" in unpruned
    assert Tenant.objects.filter(slug="globex").exists()
    assert len(owners()) == 5

    output = import_file(tmp_path, data, "--prune")

    assert "Deployments: 0 created, 0 updated, 1 deleted, 1 unchanged." in output
    assert "Tenants: 0 created, 0 updated, 1 deleted, 1 unchanged." in output
    assert "Authorities: 0 created, 0 updated, 3 deleted, 2 unchanged." in output
    assert owners() == {"acme.example": "acme", "xn--bcher-kva.example": "acme"}
    assert list(Deployment.objects.values_list("name", flat=True)) == ["eu-1"]


def test_prune_keeps_a_deployment_a_listed_tenant_still_needs(db: None, tmp_path: Path) -> None:
    import_file(tmp_path, sample())
    data = {"tenants": [{"slug": "globex", "name": "Globex", "deployment": "us-1", "authorities": ["globex.example"]}]}

    import_file(tmp_path, data, "--prune")

    assert list(Deployment.objects.values_list("name", flat=True)) == ["us-1"]
    assert owners() == {"globex.example": "globex"}


def test_prune_refuses_a_file_without_a_tenants_list(db: None, tmp_path: Path) -> None:
    import_file(tmp_path, sample())

    error, _output = failure("hostguard_import", write(tmp_path, {"deployments": []}), "--prune")

    assert "“tenants”" in str(error)
    assert Tenant.objects.count() == 2


def test_a_host_claimed_twice_in_the_file_names_both_tenants(db: None, tmp_path: Path) -> None:
    data = sample()
    data["tenants"][1]["authorities"].append("ACME.example.")

    error, _output = failure("hostguard_import", write(tmp_path, data))

    assert "claimed twice" in str(error)
    assert "tenant “acme”" in str(error)
    assert "tenant “globex”" in str(error)
    assert nothing_stored()


def test_a_tenant_listing_the_same_authority_twice_is_refused(db: None, tmp_path: Path) -> None:
    data = sample()
    data["tenants"][0]["authorities"].append("xn--bcher-kva.example")

    error, _output = failure("hostguard_import", write(tmp_path, data))

    assert "tenant “acme”: lists the authority “Bücher.example = xn--bcher-kva.example” twice" in str(error)


def test_a_host_held_by_a_tenant_the_file_does_not_list_names_both(db: None, tmp_path: Path) -> None:
    import_file(tmp_path, sample())
    data = {"tenants": [{"slug": "acme", "name": "Acme", "deployment": "eu-1", "authorities": ["globex.example"]}]}

    error, _output = failure("hostguard_import", write(tmp_path, data))

    assert "tenant “acme”" in str(error)
    assert "tenant “globex”" in str(error)
    assert owners()["globex.example"] == "globex"

    # With --prune globex goes, so its host may move.
    import_file(tmp_path, data, "--prune")
    assert owners() == {"globex.example": "acme"}


def test_an_authority_moves_between_listed_tenants_keeping_its_row(db: None, tmp_path: Path) -> None:
    import_file(tmp_path, sample())
    row = Authority.objects.get(host="globex.example").pk
    data = sample()
    data["tenants"][1]["authorities"] = []
    data["tenants"][0]["authorities"].append("globex.example")

    output = import_file(tmp_path, data, "-v", "2")

    assert "update authority globex.example: moved globex → acme" in output
    assert "Authorities: 0 created, 1 updated, 0 deleted, 4 unchanged." in output
    assert Authority.objects.get(pk=row).tenant.slug == "acme"


# --- a host name belongs to one tenant -------------------------------------------------


def globex_holds_names(tmp_path: Path) -> None:
    import_file(
        tmp_path,
        {
            "deployments": [{"name": "eu-1"}],
            "tenants": [
                {
                    "slug": "globex",
                    "name": "Globex",
                    "deployment": "eu-1",
                    "authorities": ["globex.example", "*.globex.example"],
                }
            ],
        },
        "--prune",
    )


def acme_claiming(*authorities: str) -> dict[str, Any]:
    return {"tenants": [{"slug": "acme", "name": "Acme", "deployment": "eu-1", "authorities": list(authorities)}]}


def test_import_refuses_claims_on_names_another_tenant_holds(db: None, tmp_path: Path) -> None:
    globex_holds_names(tmp_path)
    before = owners()
    data = acme_claiming(
        "acme.example", "https://globex.example", "x.globex.example", "*.example", "globex.example:8443"
    )

    error, _output = failure("hostguard_import", write(tmp_path, data))

    message = str(error)
    assert "Nothing was imported: 4 problems." in message
    for line in (
        "tenant “acme”, authority 2: https://globex.example shares host names with the tenant “globex” "
        "(globex.example).",
        "tenant “acme”, authority 3: x.globex.example shares host names with the tenant “globex” (*.globex.example).",
        "tenant “acme”, authority 4: *.example shares host names with the tenant “globex” "
        "(*.globex.example, globex.example).",
        "tenant “acme”, authority 5: globex.example:8443 shares host names with the tenant “globex” (globex.example).",
    ):
        assert line in message
    assert "run again with --allow-shared-names" in message
    assert owners() == before  # nothing half-written: not even the tenant or its own host
    assert not Tenant.objects.filter(slug="acme").exists()


def test_allow_shared_names_imports_them_and_says_so(db: None, tmp_path: Path) -> None:
    globex_holds_names(tmp_path)
    data = acme_claiming("acme.example", "x.globex.example")

    output = import_file(tmp_path, data, "--allow-shared-names")

    assert "Shared host names (allowed): tenant “acme”, authority 2: x.globex.example shares host names" in output
    assert owners()["x.globex.example"] == "acme"
    # Stored once, a claim is no longer new: the same file imports cleanly without the flag.
    assert "No changes" in import_file(tmp_path, data)


def test_a_tenants_own_names_on_other_ports_and_schemes_import_freely(db: None, tmp_path: Path) -> None:
    globex_holds_names(tmp_path)
    data = {
        "tenants": [
            {
                "slug": "globex",
                "name": "Globex",
                "deployment": "eu-1",
                "authorities": [
                    "globex.example",
                    "*.globex.example",
                    "https://globex.example:8443",
                    "www.globex.example",
                ],
            }
        ]
    }
    assert "Authorities: 2 created" in import_file(tmp_path, data)


def test_two_new_tenants_sharing_names_in_one_file_are_one_error(db: None, tmp_path: Path) -> None:
    data = {
        "deployments": [{"name": "eu-1"}],
        "tenants": [
            {"slug": "acme", "name": "Acme", "deployment": "eu-1", "authorities": ["*.shared.example"]},
            {"slug": "globex", "name": "Globex", "deployment": "eu-1", "authorities": ["www.shared.example"]},
        ],
    }

    error, _output = failure("hostguard_import", write(tmp_path, data))

    assert error.args[0].count("shares host names") == 1
    assert (
        "tenant “acme”, authority 1: *.shared.example shares host names with the tenant “globex” (www.shared.example)."
        in str(error)
    )
    assert nothing_stored()


def test_moving_a_host_away_from_a_tenant_that_keeps_its_other_ports_is_a_shared_name(db: None, tmp_path: Path) -> None:
    data = sample()
    data["tenants"][1]["authorities"] = ["globex.example", "globex.example:8443"]
    import_file(tmp_path, data)
    data["tenants"][1]["authorities"] = ["globex.example:8443"]
    data["tenants"][0]["authorities"].append("globex.example")

    error, _output = failure("hostguard_import", write(tmp_path, data))

    assert "tenant “acme”, authority 5: globex.example shares host names with the tenant “globex”" in str(error)
    assert owners()["globex.example"] == "globex"


def test_shared_names_are_checked_in_memory_not_per_entry(db: None, tmp_path: Path) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    held = Tenant.objects.create(slug="held", name="Held", deployment=Deployment.objects.create(name="eu-1"))
    Authority.objects.bulk_create(Authority(tenant=held, host=f"h{n}.held.example") for n in range(300))
    Authority.objects.create(tenant=held, host="*.held.example")

    def reads_to_import(count: int, name: str) -> int:
        hosts = [f"h{n}.{name}.example" for n in range(count)] + [f"*.{name}.example", f"x{name}.held.example"]
        data = {"tenants": [{"slug": name, "name": name, "deployment": "eu-1", "authorities": hosts}]}
        with CaptureQueriesContext(connection) as queries:
            import_file(tmp_path, data, "--allow-shared-names")
        return sum(query["sql"].lstrip().upper().startswith("SELECT") for query in queries)

    # Reading the state is a fixed number of queries, however many entries are checked.
    assert reads_to_import(10, "small") == reads_to_import(400, "large")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"tenants": [\n  {"slug": "acme",\n   "name": "Acme" "deployment": "eu-1"}\n]}', "line 3, column 19"),
        ('{"tenants": []', "line 1, column 15"),
        ("", "line 1, column 1"),
    ],
)
def test_invalid_json_names_line_and_column(db: None, tmp_path: Path, content: str, expected: str) -> None:
    error, _output = failure("hostguard_import", write(tmp_path, content))

    assert "Invalid JSON" in str(error)
    assert expected in str(error)
    assert error.returncode != 0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "must hold a JSON object"),
        ({"tenants": [], "tennants": []}, "Unknown top-level key “tennants”"),
        ({"tenants": {}}, "“tenants” must be a list, not an object"),
        ({"tenants": ["acme"]}, "Entry 1 of “tenants” must be an object, not a string"),
        ({"tenants": [{"slug": "acme", "name": "Acme", "deployment": "eu-1", "active": "yes"}]}, "“active” must be"),
        ({"tenants": [{"slug": "acme", "name": "Acme"}]}, "tenant “acme”: “deployment” is required"),
        ({"tenants": [{"slug": "a b", "name": "A", "deployment": "eu-1"}]}, "“a b” is not a valid tenant slug"),
        ({"deployments": [{"name": "eu-1", "region": "x"}]}, "unknown key “region”"),
        (
            {"tenants": [{"slug": "acme", "name": "Acme", "deployment": "eu-1", "authorities": [{"host": "x"}]}]},
            "“authority” is required",
        ),
        (
            {
                "tenants": [
                    {"slug": "acme", "name": "Acme", "deployment": "eu-1", "authorities": ["ftp://acme.example"]}
                ]
            },
            "“ftp” is not served",
        ),
    ],
)
def test_wrong_structure_or_types_are_refused_clearly(db: None, tmp_path: Path, data: Any, expected: str) -> None:
    error, _output = failure("hostguard_import", write(tmp_path, data))

    assert expected in str(error)
    assert nothing_stored()


def test_duplicate_json_keys_are_refused(db: None, tmp_path: Path) -> None:
    error, _output = failure("hostguard_import", write(tmp_path, '{"tenants": [], "tenants": []}'))

    assert "“tenants” appears twice" in str(error)


def test_every_problem_is_reported_at_once(db: None, tmp_path: Path) -> None:
    data = sample()
    data["tenants"][0]["authorities"] += ["a..b", "user@acme.example"]
    data["tenants"][1]["authorities"] += ["globex.example:0"]

    error, _output = failure("hostguard_import", write(tmp_path, data))

    assert "3 problems" in str(error)
    for text in ("a..b", "user@", "globex.example:0"):
        assert text in str(error)


def test_a_missing_file_is_a_clear_error(db: None, tmp_path: Path) -> None:
    error, _output = failure("hostguard_import", str(tmp_path / "missing.json"))

    assert "Cannot read" in str(error)
    assert "missing.json" in str(error)


def test_import_reads_standard_input(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(json.dumps(sample()).encode())))

    output = run("hostguard_import", "-")

    assert "Tenants: 2 created" in output
    assert owners()["globex.example"] == "globex"


@override_settings(HOSTGUARD_DEPLOYMENT="eu-1")
def test_the_middleware_serves_imported_hosts_at_once(db: None, tmp_path: Path, client: Client) -> None:
    assert client.get("/api/whoami", headers={"host": "acme.example"}).status_code == 421

    import_file(tmp_path, sample())

    response = client.get("/api/whoami", headers={"host": "acme.example"})
    assert response.status_code == 200
    assert response.json()["tenant"] == "acme"
    assert client.get("/api/whoami", headers={"host": "xn--bcher-kva.example"}).status_code == 200
    assert client.get("/api/whoami", headers={"host": "globex.example"}).status_code == 421

    data = sample()
    data["tenants"][1]["deployment"] = "eu-1"
    import_file(tmp_path, data)

    assert client.get("/api/whoami", headers={"host": "globex.example"}).json()["tenant"] == "globex"


# --- hostguard_export ------------------------------------------------------------------


def round_trip_sample() -> dict[str, Any]:
    data = sample()
    data["deployments"].append({"name": "idle", "description": "Zürich — spare"})
    data["tenants"][0]["authorities"] += [
        {"authority": "old.acme.example", "active": False, "note": ""},
        {"authority": "[2001:db8::1]:8080", "note": "office"},
        "http://192.0.2.7",
    ]
    data["tenants"].append(
        {"slug": "initech", "name": "Initech Bücherei", "deployment": "eu-1", "active": False, "authorities": []}
    )
    return data


def test_export_round_trips_exactly(db: None, tmp_path: Path) -> None:
    import_file(tmp_path, round_trip_sample())
    first = tmp_path / "first.json"
    run("hostguard_export", "--output", str(first))

    again = import_file(tmp_path, json.loads(first.read_text(encoding="utf-8")))
    assert "No changes" in again
    assert "Authorities: 0 created, 0 updated, 0 deleted, 8 unchanged." in again

    Tenant.objects.all().delete()
    Deployment.objects.all().delete()
    assert nothing_stored()
    run("hostguard_import", str(first))
    second = tmp_path / "second.json"
    run("hostguard_export", "--output", str(second))

    assert second.read_bytes() == first.read_bytes()


def test_export_format(db: None, tmp_path: Path) -> None:
    import_file(tmp_path, round_trip_sample())

    text = run("hostguard_export")

    assert text.startswith('{\n  "deployments": [\n    {\n      "name": "eu-1",')
    assert "Initech Bücherei" in text  # UTF-8, not \u escapes
    data = json.loads(text)
    assert [d["name"] for d in data["deployments"]] == ["eu-1", "idle", "us-1"]
    assert [t["slug"] for t in data["tenants"]] == ["acme", "globex", "initech"]
    assert data["tenants"][0]["authorities"] == [
        "*.acme.example",
        "http://192.0.2.7",
        {"authority": "[2001:db8::1]:8080", "active": True, "note": "office"},
        "acme.example",
        {"authority": "old.acme.example", "active": False, "note": ""},
        "https://shop.acme.example:8443",
        "xn--bcher-kva.example",
    ]
    assert data["tenants"][2] == {
        "slug": "initech",
        "name": "Initech Bücherei",
        "deployment": "eu-1",
        "active": False,
        "authorities": [],
    }


def test_export_to_a_file_reports_counts(db: None, tmp_path: Path) -> None:
    import_file(tmp_path, sample())
    target = tmp_path / "out.json"

    output = run("hostguard_export", "-o", str(target))

    assert "Exported 2 deployments, 2 tenants and 5 authorities" in output
    assert json.loads(target.read_text(encoding="utf-8")) == export_policy()


# --- hostguard_check -------------------------------------------------------------------


def check_policy() -> dict[str, Any]:
    data = sample()
    data["tenants"] += [
        {
            "slug": "portly",
            "name": "Portly",
            "deployment": "eu-1",
            "authorities": [
                "ports.example:8443",
                "https://secure.example",
                {"authority": "paused.example", "active": False},
            ],
        },
        {
            "slug": "initech",
            "name": "Initech",
            "deployment": "eu-1",
            "active": False,
            "authorities": ["initech.example"],
        },
    ]
    return data


def check(target: str, *flags: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("hostguard_check", target, *flags, stdout=out, stderr=io.StringIO())
    except CommandError as error:
        return error.returncode, out.getvalue()
    return 0, out.getvalue()


CHECK_SETTINGS = {"HOSTGUARD_DEPLOYMENT": "eu-1", "HOSTGUARD_ALWAYS_ALLOW": ["admin.example"]}


@override_settings(**CHECK_SETTINGS)
def test_check_explains_an_allowed_host(db: None, tmp_path: Path) -> None:
    import_file(tmp_path, check_policy())

    code, output = check("https://shop.acme.example:8443/cart")

    assert code == 0
    assert "Allowed: tenant acme." in output
    assert "Authority:    https://shop.acme.example:8443" in output
    assert "Tenant:       acme (Acme)" in output
    assert "Deployment:   eu-1" in output


@pytest.mark.parametrize(
    ("target", "flags", "reason", "detail"),
    [
        ("nobody.example", (), "unknown_host", "no authority claims this host"),
        ("ports.example:9000", (), "port_mismatch", "Claimed as:   ports.example:8443 (tenant portly)"),
        ("secure.example", ("--scheme", "http"), "scheme_mismatch", "not over http"),
        ("paused.example", (), "inactive", "the authority is inactive"),
        ("initech.example", (), "inactive", "the tenant is suspended"),
        ("globex.example", (), "other_deployment", "served by the deployment “us-1”, not by this one (“eu-1”)"),
        ("acme.example", ("--sni", "ports.example"), "sni_mismatch", "opened for “ports.example”"),
    ],
)
@override_settings(**CHECK_SETTINGS)
def test_check_explains_each_misdirected_reason(
    db: None, tmp_path: Path, target: str, flags: tuple[str, ...], reason: str, detail: str
) -> None:
    import_file(tmp_path, check_policy())

    code, output = check(target, *flags)

    assert code == 1
    assert "421 Misdirected Request (%s)" % reason in output
    assert detail in output


@override_settings(**CHECK_SETTINGS)
def test_check_accepts_an_sni_name_of_the_same_tenant(db: None, tmp_path: Path) -> None:
    import_file(tmp_path, check_policy())

    code, output = check("acme.example", "--sni", "www.acme.example")

    assert code == 0
    assert "Allowed: tenant acme." in output


@override_settings(HOSTGUARD_MODE="report", **CHECK_SETTINGS)
def test_check_says_when_report_mode_would_serve_a_refused_host(db: None, tmp_path: Path) -> None:
    import_file(tmp_path, check_policy())

    code, output = check("globex.example")

    assert code == 1
    assert "421 Misdirected Request (other_deployment)" in output
    assert "“report”" in output


@pytest.mark.parametrize("target", ["a..b", "host:abc", "acme.example:0", "user@acme.example", "ftp://acme.example"])
@override_settings(**CHECK_SETTINGS)
def test_check_reports_malformed_hosts(db: None, target: str) -> None:
    code, output = check(target)

    assert code == 2
    assert "400 Bad Request (malformed_host)" in output


@override_settings(**CHECK_SETTINGS)
def test_check_accepts_unicode_and_always_allowed_hosts(db: None, tmp_path: Path) -> None:
    import_file(tmp_path, check_policy())

    code, output = check("bücher.example")
    assert code == 0
    assert "xn--bcher-kva.example" in output

    code, output = check("admin.example:8000")
    assert code == 0
    assert "HOSTGUARD_ALWAYS_ALLOW" in output


@override_settings(**CHECK_SETTINGS)
def test_check_refuses_a_scheme_that_contradicts_the_url(db: None) -> None:
    code, output = check("https://acme.example/", "--scheme", "http")

    assert code == 2
    assert "contradicts" in output


@pytest.mark.parametrize(
    ("host", "secure"),
    [
        ("acme.example", False),
        ("www.acme.example:8080", False),
        ("shop.acme.example:8443", True),
        ("nobody.example", False),
        ("ports.example:9000", False),
        ("ports.example:8443", False),
        ("secure.example", False),
        ("secure.example", True),
        ("paused.example", True),
        ("initech.example", False),
        ("globex.example", False),
        ("admin.example", False),
        ("a..b", False),
        ("host:", False),
    ],
)
@override_settings(**CHECK_SETTINGS)
def test_check_agrees_with_the_middleware(db: None, tmp_path: Path, client: Client, host: str, secure: bool) -> None:
    import_file(tmp_path, check_policy())
    status = {0: 200, 1: 421, 2: 400}

    code, _output = check(host, "--scheme", "https" if secure else "http")
    response = client.get("/api/whoami", headers={"host": host}, secure=secure)

    assert response.status_code == status[code]


# --- hostguard_demo --------------------------------------------------------------------


@override_settings(HOSTGUARD_DEPLOYMENT="local")
def test_demo_loads_once_and_then_changes_nothing(db: None, client: Client) -> None:
    first = run("hostguard_demo")
    version = stamp()
    second = run("hostguard_demo")

    assert "Demo data loaded for deployment local: 2 deployments, 3 tenants and 6 authorities created." in first
    assert "Demo data already present: nothing changed." in second
    assert stamp() == version
    assert owners() == {
        "acme.localhost": "acme",
        "*.acme.localhost": "acme",
        "xn--bcher-kva.localhost": "acme",
        "https://shop.acme.localhost:8443": "acme",
        "globex.localhost": "globex",
        "initech.localhost": "initech",
    }
    assert Tenant.objects.get(slug="acme").name == "Acme Corp"
    assert Tenant.objects.get(slug="globex").deployment.name == "remote"
    assert not Tenant.objects.get(slug="initech").is_active
    assert client.get("/api/whoami", headers={"host": "acme.localhost"}).json()["tenant"] == "acme"
    assert client.get("/api/whoami", headers={"host": "globex.localhost"}).status_code == 421
    assert client.get("/api/whoami", headers={"host": "initech.localhost"}).status_code == 421


@override_settings(HOSTGUARD_DEPLOYMENT="eu-7")
def test_demo_uses_this_deployment_and_keeps_admin_edits(db: None) -> None:
    run("hostguard_demo")
    assert Tenant.objects.get(slug="acme").deployment.name == "eu-7"

    Tenant.objects.filter(slug="acme").update(is_active=False)
    Authority.objects.filter(host="globex.localhost").delete()
    output = run("hostguard_demo")

    assert "1 authorities created" in output
    assert not Tenant.objects.get(slug="acme").is_active
    assert owners()["globex.localhost"] == "globex"
