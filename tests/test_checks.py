"""System checks: each misconfiguration is reported, with its own id and a hint that fixes it."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.test import override_settings

from hostguard.checks import MIDDLEWARE_PATH, MUST_PRECEDE
from hostguard.conf import DEFAULTS
from hostguard.middleware import HostGuardMiddleware
from hostguard.models import Deployment

BASE_DIR = Path(__file__).resolve().parent.parent


class SiteGuard(HostGuardMiddleware):
    """A site's own subclass of the middleware, as MIDDLEWARE may name it."""


def hostguard_messages(databases: list[str] | None = None) -> list[checks.CheckMessage]:
    """What `manage.py check` reports for hostguard, through Django's check registry."""
    return checks.run_checks(tags=["hostguard"], databases=databases)


def ids(databases: list[str] | None = None) -> list[str]:
    return [message.id or "" for message in hostguard_messages(databases)]


def only(check_id: str, databases: list[str] | None = None) -> checks.CheckMessage:
    found = [message for message in hostguard_messages(databases) if message.id == check_id]
    assert len(found) == 1, [str(message) for message in hostguard_messages(databases)]
    return found[0]


def test_the_demo_settings_pass_every_check() -> None:
    assert ids() == []


# --- deployment ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, ""])
def test_deployment_unset(value: str | None) -> None:
    with override_settings(HOSTGUARD_DEPLOYMENT=value):
        message = only("hostguard.E001")
    assert message.level == checks.ERROR
    assert "HOSTGUARD_DEPLOYMENT" in message.hint


def test_deployment_missing_from_settings() -> None:
    with override_settings():
        from django.conf import settings

        del settings.HOSTGUARD_DEPLOYMENT
        assert "hostguard.E001" in ids()


@pytest.mark.parametrize("value", ["eu 1", "eu/1", "eu.1", "é-1", "x" * 65])
def test_deployment_not_a_slug(value: str) -> None:
    with override_settings(HOSTGUARD_DEPLOYMENT=value):
        message = only("hostguard.E004")
    assert repr(value) in message.msg
    assert "slug" in message.hint


@pytest.mark.parametrize("value", ["eu-1", "blue_green", "x" * 64])
def test_deployment_slugs_pass(value: str) -> None:
    with override_settings(HOSTGUARD_DEPLOYMENT=value):
        assert ids() == []


def test_deployment_of_the_wrong_type() -> None:
    with override_settings(HOSTGUARD_DEPLOYMENT=1):
        assert ids() == ["hostguard.E005"]


# --- middleware ---------------------------------------------------------------------


DJANGO_TAIL = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]


def test_middleware_missing() -> None:
    with override_settings(MIDDLEWARE=DJANGO_TAIL):
        message = only("hostguard.E002")
    assert MIDDLEWARE_PATH in message.hint
    assert "first" in message.hint


def test_a_subclass_of_the_middleware_counts() -> None:
    with override_settings(MIDDLEWARE=["tests.test_checks.SiteGuard", *DJANGO_TAIL]):
        assert ids() == []


def test_a_broken_middleware_entry_is_not_taken_for_hostguard() -> None:
    with override_settings(MIDDLEWARE=["no.such.Middleware", *DJANGO_TAIL]):
        assert ids() == ["hostguard.E002"]


@pytest.mark.parametrize("earlier", MUST_PRECEDE)
def test_middleware_after_one_with_side_effects(earlier: str) -> None:
    with override_settings(MIDDLEWARE=[earlier, MIDDLEWARE_PATH]):
        message = only("hostguard.E003")
    assert earlier in message.msg
    assert f"before {earlier}" in message.hint


def test_misplaced_middleware_names_every_offender_and_the_first_in_the_hint() -> None:
    with override_settings(MIDDLEWARE=[*DJANGO_TAIL[:4], MIDDLEWARE_PATH]):
        message = only("hostguard.E003")
    assert all(name in message.msg for name in DJANGO_TAIL[:4])
    assert message.hint.endswith(f"before {DJANGO_TAIL[0]}.")


@pytest.mark.parametrize(
    "earlier", ["whitenoise.middleware.WhiteNoiseMiddleware", "corsheaders.middleware.CorsMiddleware"]
)
def test_middleware_after_one_that_answers_requests_itself(earlier: str) -> None:
    with override_settings(MIDDLEWARE=[earlier, MIDDLEWARE_PATH, *DJANGO_TAIL]):
        message = only("hostguard.W002")
    assert message.level == checks.WARNING
    assert earlier in message.msg


@pytest.mark.parametrize(
    "earlier", ["django.middleware.cache.UpdateCacheMiddleware", "django.middleware.gzip.GZipMiddleware"]
)
def test_middleware_that_only_touch_the_response_may_come_first(earlier: str) -> None:
    # Django's docs ask for UpdateCacheMiddleware first; a 421 is never cached (no-store, not 200).
    with override_settings(MIDDLEWARE=[earlier, MIDDLEWARE_PATH, *DJANGO_TAIL]):
        assert ids() == []


# --- ALLOWED_HOSTS ------------------------------------------------------------------


def test_allowed_hosts_narrower_than_the_tenants() -> None:
    with override_settings(ALLOWED_HOSTS=["acme.example", "localhost"]):
        message = only("hostguard.W001")
    assert "ALLOWED_HOSTS = ['*']" in message.hint
    assert "HOSTGUARD_ALWAYS_ALLOW" in message.hint
    assert "--from-allowed-hosts" in message.hint


def test_allowed_hosts_is_not_reported_when_hostguard_is_not_gating() -> None:
    with override_settings(ALLOWED_HOSTS=["acme.example"], MIDDLEWARE=DJANGO_TAIL):
        assert ids() == ["hostguard.E002"]


# --- templates ----------------------------------------------------------------------


def test_templates_not_found_without_app_directories() -> None:
    templates = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [], "APP_DIRS": False}]
    with override_settings(TEMPLATES=templates):
        message = only("hostguard.E011")
    assert "hostguard/421.html" in message.msg
    assert "'APP_DIRS': True" in message.hint


def test_templates_not_found_without_any_template_engine() -> None:
    with override_settings(TEMPLATES=[]):
        assert "hostguard.E011" in ids()


def test_a_broken_template_override(tmp_path: Path) -> None:
    (tmp_path / "hostguard").mkdir()
    (tmp_path / "hostguard" / "421.html").write_text("{% if %}")
    templates = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [tmp_path], "APP_DIRS": True}]
    with override_settings(TEMPLATES=templates):
        message = only("hostguard.E012")
    assert "hostguard/421.html" in message.msg


def test_a_working_template_override_passes(tmp_path: Path) -> None:
    (tmp_path / "hostguard").mkdir()
    (tmp_path / "hostguard" / "421.html").write_text("<p>Wrong door.</p>")
    templates = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [tmp_path], "APP_DIRS": True}]
    with override_settings(TEMPLATES=templates):
        assert ids() == []


# --- setting names ------------------------------------------------------------------


def test_a_misspelt_setting_is_named_with_the_closest_known_one() -> None:
    with override_settings(HOSTGUARD_ALWAYS_ALOW=["admin.example.com"]):
        message = only("hostguard.W003")
    assert "HOSTGUARD_ALWAYS_ALOW" in message.msg
    assert "Did you mean HOSTGUARD_ALWAYS_ALLOW?" in message.hint


def test_an_unknown_setting_far_from_any_name_lists_the_known_ones() -> None:
    with override_settings(HOSTGUARD_COLOUR="blue"):
        message = only("hostguard.W003")
    assert "HOSTGUARD_DEPLOYMENT" in message.hint


def test_known_names_are_read_when_the_check_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    with override_settings(HOSTGUARD_BRAND_NEW=True):
        assert "hostguard.W003" in ids()
        monkeypatch.setitem(DEFAULTS, "HOSTGUARD_BRAND_NEW", False)
        assert "hostguard.W003" not in ids()


# --- setting types and values ---------------------------------------------------------


@pytest.fixture
def every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings whose rules these tests exercise, whatever conf.DEFAULTS holds today."""
    for name, default in {"HOSTGUARD_MODE": "enforce", "HOSTGUARD_TRUSTED_PROXIES": []}.items():
        if name not in DEFAULTS:
            monkeypatch.setitem(DEFAULTS, name, default)


@pytest.mark.parametrize(
    ("name", "value", "hint"),
    [
        ("HOSTGUARD_ALWAYS_ALLOW", "localhost", "HOSTGUARD_ALWAYS_ALLOW = ['localhost']"),
        ("HOSTGUARD_ALWAYS_ALLOW", "localhost, admin.example", "['localhost', 'admin.example']"),
        ("HOSTGUARD_EXEMPT_PATHS", "/healthz", "HOSTGUARD_EXEMPT_PATHS = ['/healthz']"),
        ("HOSTGUARD_JSON_PATHS", ["/api/", 3], "a list of strings"),
        ("HOSTGUARD_ALWAYS_ALLOW", None, "a list of strings"),
        ("HOSTGUARD_REFRESH_SECONDS", "2", "a number"),
        ("HOSTGUARD_REFRESH_SECONDS", True, "a number"),
        ("HOSTGUARD_DATABASE", ["default"], "a string"),
        ("HOSTGUARD_MODE", 1, "HOSTGUARD_MODE = 'enforce'"),
    ],
)
@pytest.mark.usefixtures("every_setting")
def test_settings_of_the_wrong_type(name: str, value: object, hint: str) -> None:
    with override_settings(**{name: value}):
        message = only("hostguard.E005")
    assert name in message.msg
    assert hint in message.hint


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf")])
def test_refresh_seconds_must_be_positive(value: float) -> None:
    with override_settings(HOSTGUARD_REFRESH_SECONDS=value):
        message = only("hostguard.E006")
    assert "HOSTGUARD_REFRESH_SECONDS = 2.0" in message.hint


@pytest.mark.parametrize("value", [0.5, 1, 30])
def test_refresh_seconds_positive_numbers_pass(value: float) -> None:
    with override_settings(HOSTGUARD_REFRESH_SECONDS=value):
        assert ids() == []


@pytest.mark.parametrize(
    ("name", "value", "fix"),
    [("HOSTGUARD_EXEMPT_PATHS", ["/ok", "healthz"], "'/healthz'"), ("HOSTGUARD_JSON_PATHS", ["api/"], "'/api/'")],
)
def test_path_prefixes_must_start_with_a_slash(name: str, value: list[str], fix: str) -> None:
    with override_settings(**{name: value}):
        message = only("hostguard.E007")
    assert name in message.msg
    assert fix in message.hint
    assert "'/ok'" not in message.msg


@pytest.mark.parametrize(
    ("pattern", "fix"),
    [
        ("localhost:8000", "'localhost'"),
        ("*.example.com", "'.example.com'"),
        ("https://admin.example.com", "only the host name"),
        ("::1", "'[::1]'"),
        ("Bücher.example", "'xn--bcher-kva.example'"),
        (".Bücher.example", "'.xn--bcher-kva.example'"),
        ("a..b", "a host name"),
    ],
)
def test_always_allow_entries_that_never_match(pattern: str, fix: str) -> None:
    with override_settings(HOSTGUARD_ALWAYS_ALLOW=["localhost", pattern]):
        message = only("hostguard.E008")
    assert repr(pattern) in message.msg
    assert fix in message.hint


def test_always_allow_accepts_allowed_hosts_syntax() -> None:
    patterns = ["localhost", "Admin.Example.COM", ".internal.example", "127.0.0.1", "[::1]", "example.com."]
    with override_settings(HOSTGUARD_ALWAYS_ALLOW=patterns):
        assert ids() == []


def test_always_allow_star_gates_nothing() -> None:
    with override_settings(HOSTGUARD_ALWAYS_ALLOW=["localhost", "*"]):
        message = only("hostguard.W004")
    assert message.level == checks.WARNING
    assert "tenant hosts belong in the database" in message.hint


@pytest.mark.usefixtures("every_setting")
@pytest.mark.parametrize("value", ["reprot", "off", ""])
def test_unknown_mode(value: str) -> None:
    with override_settings(HOSTGUARD_MODE=value):
        message = only("hostguard.E009")
    assert "'enforce'" in message.hint
    assert "'report'" in message.hint


@pytest.mark.usefixtures("every_setting")
@pytest.mark.parametrize("value", ["enforce", "report", " Report "])
def test_known_modes_pass(value: str) -> None:
    with override_settings(HOSTGUARD_MODE=value):
        # Report mode is no problem: it is only described (I001, tests/test_hardening.py).
        assert [check_id for check_id in ids() if check_id != "hostguard.I001"] == []


def test_database_alias_must_exist() -> None:
    with override_settings(HOSTGUARD_DATABASE="replica"):
        message = only("hostguard.E010")
    assert "'replica'" in message.msg
    assert "'default'" in message.hint


@pytest.mark.usefixtures("every_setting")
def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    with override_settings(HOSTGUARD_TRUSTED_PROXIES=["10.0.0.0/8", "::1", "[2001:db8::1]", "*", "proxy.local"]):
        message = only("hostguard.E013")
    assert "'proxy.local'" in message.msg
    assert "'10.0.0.0/8'" not in message.msg


@pytest.mark.usefixtures("every_setting")
def test_trusted_proxies_as_a_comma_separated_string() -> None:
    with override_settings(HOSTGUARD_TRUSTED_PROXIES="10.0.0.1, 192.0.2.0/24"):
        assert ids() == []


# --- the database: `manage.py check --database default` -------------------------------


@pytest.mark.django_db
def test_database_checks_run_only_when_asked() -> None:
    MigrationRecorder(connection).record_unapplied("hostguard", "0001_initial")
    assert ids() == []
    assert "hostguard.W005" in ids(["default"])


@pytest.mark.django_db
def test_unapplied_migrations() -> None:
    Deployment.objects.create(name="local")
    MigrationRecorder(connection).record_unapplied("hostguard", "0001_initial")
    message = only("hostguard.W005", ["default"])
    assert "0001_initial" in message.msg
    assert "503" in message.msg
    assert message.hint == "Run `python manage.py migrate`."


@pytest.mark.django_db
def test_unapplied_migrations_are_not_reported_to_migrate_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    Deployment.objects.create(name="local")
    MigrationRecorder(connection).record_unapplied("hostguard", "0001_initial")
    monkeypatch.setattr(sys, "argv", ["manage.py", "migrate"])
    assert ids(["default"]) == []


@pytest.mark.django_db
def test_a_migrated_database_with_this_deployment_passes() -> None:
    Deployment.objects.create(name="local")
    assert ids(["default"]) == []


@pytest.mark.django_db
def test_deployment_unknown_to_the_database_suggests_the_close_name() -> None:
    Deployment.objects.create(name="eu-1")
    Deployment.objects.create(name="us-1")
    with override_settings(HOSTGUARD_DEPLOYMENT="eu1"):
        message = only("hostguard.W006", ["default"])
    assert "'eu1'" in message.msg
    assert "421" in message.msg
    assert "Did you mean 'eu-1'?" in message.hint


@pytest.mark.django_db
def test_deployment_unknown_to_an_empty_database_says_to_import() -> None:
    message = only("hostguard.W006", ["default"])
    assert "hostguard_import" in message.hint


@pytest.mark.django_db
def test_deployment_unknown_lists_the_known_ones() -> None:
    Deployment.objects.create(name="ap-south")
    message = only("hostguard.W006", ["default"])
    assert "'ap-south'" in message.hint


# --- `manage.py check` runs them --------------------------------------------------------


def run_check(*args: str) -> str:
    out, err = StringIO(), StringIO()
    try:
        call_command("check", *args, stdout=out, stderr=err)
    except SystemCheckError as exc:
        return str(exc) + err.getvalue()
    return out.getvalue() + err.getvalue()


def test_call_command_check_reports_errors_and_warnings_with_hints() -> None:
    with override_settings(
        MIDDLEWARE=[DJANGO_TAIL[0], MIDDLEWARE_PATH],
        HOSTGUARD_DEPLOYMENT=None,
        HOSTGUARD_REFERSH_SECONDS=2,
        ALLOWED_HOSTS=["example.com"],
    ):
        output = run_check()
    for check_id in ("hostguard.E001", "hostguard.E003", "hostguard.W001", "hostguard.W003"):
        assert check_id in output
    assert "HINT: Did you mean HOSTGUARD_REFRESH_SECONDS?" in output


def test_call_command_check_is_quiet_when_all_is_well() -> None:
    assert "no issues" in run_check()


@pytest.mark.django_db
def test_call_command_check_database_runs_the_database_checks() -> None:
    with override_settings(HOSTGUARD_DEPLOYMENT="nowhere"):
        assert "hostguard.W006" in run_check("--database", "default")
        assert "hostguard.W006" not in run_check()


def site_environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The demo site's environment on an empty SQLite database in ``tmp_path``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "HOSTGUARD_")) and key not in {"DATABASE_URL", "CACHE_URL"}
    }
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    env.update(variables)
    return env


def test_manage_py_check_in_a_fresh_process(tmp_path: Path) -> None:
    env = site_environment(tmp_path, HOSTGUARD_DEPLOYMENT="")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--database", "default"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "(hostguard.E001) HOSTGUARD_DEPLOYMENT is not set" in output
    assert "(hostguard.W005) hostguard's migrations" in output
    assert "HINT: Run `python manage.py migrate`." in output


RUNTIME_PROBE = """
import django
django.setup()
from django.test import Client
response = Client().get("/", headers={"host": "acme.example"})
print(response.status_code, response.headers.get("Retry-After"))
"""


def test_an_unmigrated_database_answers_503_and_logs_how_to_fix_it(tmp_path: Path) -> None:
    env = site_environment(tmp_path, DJANGO_SETTINGS_MODULE="project.settings")
    result = subprocess.run(
        [sys.executable, "-c", RUNTIME_PROBE], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["503", "2"]
    assert "hostguard could not load its policy; its tables do not exist: run `python manage.py migrate`" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_middleware_without_the_app_installed_fails_at_startup_with_the_fix(tmp_path: Path) -> None:
    # Without "hostguard" in INSTALLED_APPS none of these checks runs: the middleware itself says so.
    (tmp_path / "no_app_settings.py").write_text(
        "from project.settings import *  # noqa\n"
        "INSTALLED_APPS = [app for app in INSTALLED_APPS if app != 'hostguard']\n"
    )
    env = site_environment(tmp_path, DJANGO_SETTINGS_MODULE="no_app_settings", PYTHONPATH=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", RUNTIME_PROBE], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: HostGuardMiddleware needs 'hostguard' in INSTALLED_APPS." in result.stderr
