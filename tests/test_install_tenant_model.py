"""Use your own tenant model: docs/tenant-model.md, followed to the letter.

As ``tests/test_install.py`` does for the README's install steps: the package is built
and installed into a fresh virtualenv, ``django-admin startproject mysite`` makes a
site, and the fenced blocks between the page's markers are done in order —
``# path`` python blocks are written to that file (``# settings.py`` is appended to
the site's settings; ``# path: the dependencies`` replaces that migration's
dependencies), ``json`` blocks are the files the next command names, every
``$ command`` is run and the lines under it are output it must print; ``gunicorn``
serves on a free loopback port and each ``curl`` must get what the page shows.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_install import (
    BASE_DIR,
    LOOPBACK,
    Block,
    Command,
    build_distributions,
    commands,
    curl,
    free_port,
    marked_blocks,
    new_venv,
    outcome,
    run,
    serving,
    status_of,
)

DOC = BASE_DIR / "docs" / "tenant-model.md"

pytestmark = pytest.mark.e2e


@dataclass
class Installed:
    """A virtualenv with the hostguard wheel and gunicorn."""

    root: Path
    python: str
    env: dict[str, str]

    def program(self, name: str) -> str:
        return str(Path(self.python).parent / name)

    def new_site(self, name: str) -> Path:
        """``django-admin startproject mysite`` in a new folder; returns the site's folder."""
        workdir = self.root / name
        workdir.mkdir()
        run([self.program("django-admin"), "startproject", "mysite"], workdir, self.env)
        return workdir / "mysite"

    def manage(self, site: Path, *args: str, timeout: float = 120) -> str:
        return run([self.python, "manage.py", *args], site, self.env, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("tenant-model")
    _sdist, wheel = build_distributions(root / "build")
    python, env, pip = new_venv(root / "venv")
    run([*pip, "install", "--quiet", str(wheel), "gunicorn"], root, env, timeout=300)
    return Installed(root, python, env)


def failing(installed: Installed, site: Path, *args: str) -> str:
    """``manage.py *args``, which must fail; what it printed."""
    returncode, output = outcome([installed.python, "manage.py", *args], site, installed.env)
    assert returncode != 0, f"{shlex.join(args)} did not fail:\n{output}"
    return output


def follow(blocks: list[Block], site: Path, installed: Installed, tmp: Path) -> None:
    """Do what the blocks say, in order, in ``site``."""
    pending_json: str | None = None
    server: list[str] | None = None
    probes: list[Command] = []
    port = free_port()
    for block in blocks:
        if block.language == "python":
            first, _, body = block.text.partition("\n")
            assert first.startswith("# "), f"a python block names no file: {first!r}"
            target = first[2:]
            if target == "settings.py":
                with (site / "mysite" / "settings.py").open("a") as settings:
                    settings.write("\n" + block.text)
            elif target.endswith(": the dependencies"):
                replace_dependencies(site / target.removesuffix(": the dependencies"), body, installed, site)
            else:
                (site / target).write_text(body)
            continue
        if block.language == "json":
            pending_json = block.text
            continue
        assert block.language == "console", f"the test cannot follow a {block.language} block"
        for command in commands(block):
            program, *args = command.argv
            if pending_json is not None:
                (name,) = [arg for arg in args if arg.endswith(".json")]
                (site / name).write_text(pending_json)
                pending_json = None
            if program == "python":
                output = run([installed.python, *args], site, installed.env, timeout=180)
                for line in command.expected:
                    assert line in output, f"{command} did not print {line!r}:\n{output}"
            elif program == "gunicorn":
                server = [installed.program("gunicorn"), *args, "--bind", f"{LOOPBACK}:{port}"]
            elif program == "curl":
                probes.append(command)
            else:
                pytest.fail(f"the test cannot follow the step {command}")
    if server is None:
        assert not probes, "the page asks for pages without serving the site"
        return
    log = tmp / f"gunicorn-{site.parent.name}.log"
    with serving(server, site, installed.env, port, log):
        for probe in probes:
            assert curl(probe, port).strip() == probe.expected[0], f"{probe}\n{log.read_text()[-3000:]}"
    assert "Traceback" not in log.read_text(), log.read_text()


def replace_dependencies(migration: Path, dependencies: str, installed: Installed, site: Path) -> None:
    """Replace the ``dependencies`` list of ``migration`` by the page's, once the page's word
    that ``migrate`` stops without the edit (hostguard.E020, naming the line) is seen true."""
    stopped = failing(installed, site, "migrate")
    assert "hostguard.E020" in stopped, stopped
    assert str(migration) in stopped, stopped
    text = migration.read_text()
    edited, count = re.subn(r"^    dependencies = \[\n.*?^    \]\n", dependencies, text, flags=re.M | re.S)
    assert count == 1, text
    migration.write_text(edited)


def test_a_new_site_with_its_own_tenant_model(installed: Installed, tmp_path: Path) -> None:
    site = installed.new_site("new")
    follow(marked_blocks(DOC, "tenant-model-steps"), site, installed, tmp_path)
    # hostguard's tenants are the site's organizations; nothing of hostguard.Tenant was made.
    shown = installed.manage(
        site,
        "shell",
        "-v",
        "0",
        "-c",
        "from django.db import connection; from hostguard.models import get_tenant_model; "
        "print(get_tenant_model()._meta.label, 'hostguard_tenant' in connection.introspection.table_names())",
    )
    assert shown.split() == ["accounts.Organization", "False"]


ROWS = (
    "from accounts.models import Organization\n"
    "Organization.objects.create(name='ACME Corp', slug='acme', billing_email='ap@acme.example')\n"
    "Organization.objects.create(name='Initech', slug='initech', billing_email='billing@initech.example')\n"
)
SHOW = (
    "from accounts.models import Organization\n"
    "for o in Organization.objects.order_by('slug'):\n"
    "    hosts = sorted(o.authorities.values_list('host', flat=True))\n"
    "    print(o.slug, o.name, o.deployment.name, o.billing_email, hosts)\n"
)


def test_a_site_with_tenant_rows_adopts_them(installed: Installed, tmp_path: Path) -> None:
    blocks = marked_blocks(DOC, "tenant-model-adopt")
    existing, steps = blocks[0], blocks[1:]
    assert existing.text.startswith("# accounts/models.py, as it is\n")
    # The site the page starts from: an accounts app, its first migration, two organizations.
    site = installed.new_site("adopt")
    installed.manage(site, "startapp", "accounts")
    with (site / "mysite" / "settings.py").open("a") as settings:
        settings.write('\nINSTALLED_APPS += ["accounts"]\n')
    (site / "accounts" / "models.py").write_text(existing.text.partition("\n")[2])
    installed.manage(site, "makemigrations", "accounts")
    installed.manage(site, "migrate")
    installed.manage(site, "shell", "-v", "0", "-c", ROWS)

    follow(steps, site, installed, tmp_path)

    assert installed.manage(site, "shell", "-v", "0", "-c", SHOW).splitlines() == [
        "acme Acme eu-1 ap@acme.example ['*.acme.example', 'acme.example']",
        "initech Initech eu-1 billing@initech.example []",
    ]
    # A file that names an organization the database lacks: one clear line for it, nothing written.
    (site / "more.json").write_text(
        '{"deployments": [{"name": "eu-1"}], "tenants": ['
        '{"slug": "acme", "name": "Acme Renamed", "deployment": "eu-1"},'
        '{"slug": "globex", "name": "Globex", "deployment": "eu-1"},'
        '{"slug": "hooli", "name": "Hooli", "deployment": "eu-1"}]}'
    )
    refused = failing(installed, site, "hostguard_import", "more.json")
    for slug in ("globex", "hooli"):
        assert f"tenant “{slug}”: a new accounts.Organization needs “billing email” (This field cannot be blank.)" in (
            refused
        ), refused
    assert "acme" not in refused.replace("acme.example", "")
    assert installed.manage(site, "shell", "-v", "0", "-c", SHOW).splitlines()[0].startswith("acme Acme eu-1")
    # The adopted organizations are served.
    port = free_port()
    server = [installed.program("gunicorn"), "mysite.wsgi", "--bind", f"{LOOPBACK}:{port}"]
    with serving(server, site, installed.env, port, tmp_path / "gunicorn-adopt.log"):
        assert status_of(port, "/admin/login/", [("Host", "www.acme.example")]) == 200
        assert status_of(port, "/admin/login/", [("Host", "initech.example")]) == 421
