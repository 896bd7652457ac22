"""The demo's first minutes: the superuser's password, and the block `make run` prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from project.bootstrap import ensure_superuser, new_password, site_url, summary

BASE_DIR = Path(__file__).resolve().parent.parent
User = get_user_model()


@pytest.mark.django_db
def test_a_new_superuser_gets_a_generated_password_shown_in_the_block() -> None:
    outcome = ensure_superuser(environ={})
    assert outcome.created
    assert outcome.password
    assert User.objects.get(username="admin").check_password(outcome.password)
    block = summary(outcome, environ={})
    assert f"Password:   {outcome.password}" in block
    assert "http://localhost:8000/admin/" in block
    assert "User name:  admin" in block


@pytest.mark.django_db
def test_a_rerun_keeps_the_password_and_says_how_to_get_a_new_one() -> None:
    first = ensure_superuser(environ={})
    again = ensure_superuser(environ={})
    assert not again.created
    assert again.password is None
    assert User.objects.get(username="admin").check_password(first.password)
    assert "make password" in summary(again, environ={})


@pytest.mark.django_db
def test_django_superuser_password_applies_to_an_existing_user() -> None:
    first = ensure_superuser(environ={})
    outcome = ensure_superuser(environ={"DJANGO_SUPERUSER_PASSWORD": "chosen-by-me-42"})
    user = User.objects.get(username="admin")
    assert user.check_password("chosen-by-me-42")
    assert not user.check_password(first.password)
    assert "DJANGO_SUPERUSER_PASSWORD" in summary(outcome, environ={})
    assert "chosen-by-me-42" not in summary(outcome, environ={})


@pytest.mark.django_db
def test_django_superuser_password_chooses_a_new_users_password() -> None:
    outcome = ensure_superuser(environ={"DJANGO_SUPERUSER_PASSWORD": "chosen-by-me-42"})
    assert outcome.created
    assert outcome.password is None
    assert User.objects.get(username="admin").check_password("chosen-by-me-42")


@pytest.mark.django_db
def test_a_new_password_replaces_a_forgotten_one_and_lets_the_user_in() -> None:
    first = ensure_superuser(environ={})
    User.objects.filter(username="admin").update(is_active=False, is_staff=False)
    outcome = new_password()
    user = User.objects.get(username="admin")
    assert outcome.password
    assert outcome.password != first.password
    assert user.check_password(outcome.password)
    assert user.is_active
    assert user.is_staff
    assert user.is_superuser


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({}, "http://localhost:8000"),
        ({"BIND": "127.0.0.1:8001"}, "http://localhost:8001"),
        ({"BIND": "0.0.0.0:9000, unix:/tmp/x.sock"}, "http://localhost:9000"),
        ({"BIND": "[::1]:8002"}, "http://[::1]:8002"),
        ({"BIND": "192.0.2.7:8003"}, "http://192.0.2.7:8003"),
        ({"PORT": "5000"}, "http://localhost:5000"),
        ({"BIND": "127.0.0.1:8004", "PORT": "5000"}, "http://localhost:8004"),
        ({"BIND": "unix:/run/site.sock"}, None),
    ],
)
def test_the_admin_url_follows_bind_as_gunicorn_does(environ: dict[str, str], url: str | None) -> None:
    assert site_url(environ) == url


def test_the_block_names_the_bound_port() -> None:
    from project.bootstrap import Outcome

    block = summary(Outcome("admin", created=False), environ={"BIND": "127.0.0.1:8123"})
    assert "http://localhost:8123/admin/" in block
    assert "BIND=" in block
    # Framed, so it stands out above gunicorn's log.
    first, *_, last = block.splitlines()
    assert set(first) == set(last) == {"="}


@pytest.mark.e2e
def test_make_password_prints_a_password_that_signs_in(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "MAKE"))}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    printed = []
    for _ in range(2):
        result = subprocess.run(
            ["make", "--no-print-directory", "-s", "password"],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        (password,) = re.findall(r"Password:   (\S+)   \(new", result.stdout)
        assert "User name:  admin" in result.stdout
        assert "a new password for admin" in result.stdout
        printed.append(password)
    assert printed[0] != printed[1]
    check = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "import os; from django.contrib.auth import authenticate; "
            "print(authenticate(username='admin', password=os.environ['PRINTED']) is not None)",
        ],
        cwd=BASE_DIR,
        env={**env, "PRINTED": printed[1]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.stdout.splitlines()[-1] == "True", check.stdout + check.stderr
