"""Installing hostguard as a user does: the package, a fresh virtualenv, a new site, the README.

The end-to-end test reads the numbered list between the ``install-steps`` markers of
README.md and follows it to the letter: ``# settings.py`` code blocks are appended
to the new site's settings, ``json`` blocks are the files the next command names,
and every ``$ command`` is run (``pip install dist/hostguard-….whl`` installs the wheel just
built, ``gunicorn`` serves on a free loopback port, ``curl`` is sent as raw HTTP),
with the lines under a command being output it must print. A README step this test
cannot follow fails it, so the README and the test cannot drift apart.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.parser import Parser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.test import Client, override_settings

BASE_DIR = Path(__file__).resolve().parent.parent
README = BASE_DIR / "README.md"
LOOPBACK = "127.0.0.1"

# Left out of the copy the wheel is built from: what git ignores, and the venv.
_NOT_SOURCES = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".env",
    "__pycache__",
    "*.pyc",
    ".*_cache",
    "build",
    "_build",
    "dist",
    "*.egg-info",
    "db.sqlite3*",
    "node_modules",
    "screenshots",
    "staticfiles",
)
# Variables of the calling process (pytest-django sets DJANGO_SETTINGS_MODULE) that a
# new site must not inherit.
_SCRUBBED_PREFIXES = ("DJANGO_", "HOSTGUARD_", "PYTHON", "VIRTUAL_ENV", "GUNICORN_")
_SCRUBBED = {"DATABASE_URL", "CACHE_URL", "DEBUG", "SECRET_KEY", "PORT", "BIND", "WEB_CONCURRENCY"}


# --- the README -----------------------------------------------------------------------


@dataclass
class Block:
    language: str
    text: str


@dataclass
class Command:
    argv: list[str]
    expected: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return shlex.join(self.argv)


_FENCE = re.compile(r"^(?P<indent> *)```(?P<language>[\w-]*)\n(?P<body>.*?)^(?P=indent)```$", re.MULTILINE | re.DOTALL)


def install_steps() -> list[Block]:
    """The fenced blocks of the README's "Install into your site" list, in order."""
    return marked_blocks(README, "install-steps")


def marked_blocks(path: Path, marker: str) -> list[Block]:
    """The fenced blocks between ``<!-- marker:start -->`` and ``<!-- marker:end -->`` of ``path``."""
    text = path.read_text()
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    assert text.count(start) == 1, f"{path.name} lost its {marker}:start marker"
    assert text.count(end) == 1, f"{path.name} lost its {marker}:end marker"
    section = text[text.index(start) : text.index(end)]
    blocks = []
    for match in _FENCE.finditer(section):
        indent = len(match["indent"])
        body = "".join(line[indent:] for line in match["body"].splitlines(keepends=True))
        blocks.append(Block(match["language"], body))
    return blocks


def commands(block: Block) -> list[Command]:
    """``$ command`` lines of a console block, each with the output lines under it."""
    found: list[Command] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            found.append(Command(shlex.split(line[2:])))
        elif line.strip():
            assert found, f"output before any command in a console block: {line!r}"
            found[-1].expected.append(line.strip())
    return found


def test_the_readme_steps_are_shaped_as_the_install_test_reads_them() -> None:
    blocks = install_steps()
    languages = {block.language for block in blocks}
    assert languages <= {"console", "python", "json"}, languages
    settings = [block for block in blocks if block.language == "python" and block.text.startswith("# settings.py")]
    assert len(settings) == 1
    assert 'MIDDLEWARE.insert(0, "hostguard.middleware.HostGuardMiddleware")' in settings[0].text
    programs = [command.argv[0] for block in blocks if block.language == "console" for command in commands(block)]
    assert programs[0] == "pip"
    assert {"python", "gunicorn", "curl"} <= set(programs)


# --- the Django test client, as step 7 describes it -------------------------------------


@pytest.mark.django_db
def test_the_test_client_sends_no_host_and_gets_400() -> None:
    with override_settings(HOSTGUARD_ALWAYS_ALLOW=["testserver"]):
        response = Client().get("/api/whoami")
    assert "HTTP_HOST" not in response.wsgi_request.META
    assert response.wsgi_request.META["SERVER_NAME"] == "testserver"
    assert response.status_code == 400


@pytest.mark.django_db
def test_the_test_client_with_an_always_allowed_host() -> None:
    with override_settings(HOSTGUARD_ALWAYS_ALLOW=["testserver"]):
        response = Client(headers={"host": "testserver"}).get("/api/whoami")
        other = Client().get("/api/whoami", headers={"host": "elsewhere.example"})
    assert response.status_code == 200
    assert response.json()["tenant"] is None
    assert other.status_code == 421


@pytest.mark.django_db
def test_the_pytest_client_fixture_with_a_default_host(client: Client) -> None:
    client.defaults["HTTP_HOST"] = "testserver"
    with override_settings(HOSTGUARD_ALWAYS_ALLOW=["testserver"]):
        assert client.get("/api/whoami").status_code == 200


# --- the package ----------------------------------------------------------------------


def build_distributions(out: Path) -> tuple[Path, Path]:
    """Build the sdist, then the wheel from the sdist, as `python -m build` does."""
    source = out / "source"
    shutil.copytree(BASE_DIR, source, ignore=_NOT_SOURCES)
    dist = out / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(source)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = dist.glob("hostguard-*.whl")
    (sdist,) = dist.glob("hostguard-*.tar.gz")
    return sdist, wheel


def check_contents(sdist: Path, wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packaged = {name.split("/")[0] for name in names}
    assert packaged == {"hostguard", wheel.name.split("-py3")[0] + ".dist-info"}, packaged
    for expected in (
        "hostguard/py.typed",
        "hostguard/templates/hostguard/421.html",
        "hostguard/templates/hostguard/400.html",
        "hostguard/templates/hostguard/503.html",
        "hostguard/migrations/0001_initial.py",
        "hostguard/management/commands/hostguard_import.py",
    ):
        assert expected in names
    for catalogue in (BASE_DIR / "hostguard" / "locale").glob("*/LC_MESSAGES/*.[mp]o"):
        assert catalogue.relative_to(BASE_DIR).as_posix() in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]

    metadata_name = next(name for name in names if name.endswith(".dist-info/METADATA"))
    metadata = Parser().parsestr(zipfile.ZipFile(wheel).read(metadata_name).decode())
    requires = metadata.get_all("Requires-Dist")
    always = [requirement for requirement in requires if "extra ==" not in requirement]
    requirements = sorted(re.split(r"[<>=!~; ]", requirement, maxsplit=1)[0].lower() for requirement in always)
    assert requirements == ["django", "idna"]
    # The one optional extra: hostguard[prometheus] (docs/metrics.md).
    assert metadata.get_all("Provides-Extra") == ["prometheus"]
    assert [r for r in requires if "extra ==" in r] == ["prometheus-client>=0.19; extra == 'prometheus'"]
    classifiers = metadata.get_all("Classifier")
    assert "Framework :: Django :: 5.2" in classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert metadata["Requires-Python"] == ">=3.11"

    # Ready to publish: the license travels with the package, and the long description
    # reads correctly on an index (no images, no links relative to this repository).
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert metadata["License-Expression"] == "BSD-3-Clause"
    assert metadata.get_all("License-File") == ["LICENSE"]
    description = metadata.get_payload()
    assert "hostguard" in description
    assert metadata["Description-Content-Type"].startswith("text/markdown")
    assert "![" not in description
    for link in re.findall(r"\]\(([^)\s]+)\)", description):
        assert urlsplit(link).scheme in ("http", "https"), link

    with tarfile.open(sdist) as archive:
        members = [member.split("/", 1)[1] for member in archive.getnames() if "/" in member]
    for document in ("LICENSE", "CHANGELOG.md", "README.md"):
        assert document in members, document
    for folder in ("project/", "tests/", "benchmarks/", "templates/"):
        assert not [member for member in members if member.startswith(folder)], folder
    assert "hostguard/templates/hostguard/421.html" in members


# --- processes ------------------------------------------------------------------------


def new_venv(venv: Path) -> tuple[str, dict[str, str], list[str]]:
    """A fresh virtualenv: its python, the environment to run its programs in, and a pip
    command that installs into it (pip runs from here: the venv holds only what it is given)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = str(venv / "bin" / "python")
    return (
        python,
        clean_environment(venv),
        [sys.executable, "-m", "pip", "--python", python, "--disable-pip-version-check"],
    )


def clean_environment(venv: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_SCRUBBED_PREFIXES) and key not in _SCRUBBED
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    returncode, output = outcome(argv, cwd, env, timeout)
    assert returncode == 0, f"{shlex.join(argv)} failed:\n{output[-4000:]}"
    return output


def outcome(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """The exit status of a program and what it printed (stdout, then stderr)."""
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout + result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(argv: list[str], cwd: Path, env: dict[str, str], port: int, log: Path) -> Iterator[None]:
    """Run a server in its own process group until the block ends; wait until it listens."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, f"{shlex.join(argv)} exited:\n{log.read_text()[-4000:]}"
            with suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.5):
                break
            assert time.monotonic() < deadline, f"{shlex.join(argv)} did not listen:\n{log.read_text()[-4000:]}"
            time.sleep(0.05)
        yield
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def status_of(port: int, target: str, headers: list[tuple[str, str]]) -> int:
    """The status a raw HTTP/1.1 request gets; headers are sent byte for byte as given."""
    return response_of(port, target, headers)[0]


def response_of(port: int, target: str, headers: list[tuple[str, str]]) -> tuple[int, bytes]:
    """The status and body a raw HTTP/1.1 request gets (the server closes the connection)."""
    lines = [f"GET {target} HTTP/1.1", *(f"{name}: {value}" for name, value in headers), "Connection: close", "", ""]
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall("\r\n".join(lines).encode("latin-1"))
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    assert status_line.startswith("HTTP/1.1 "), status_line
    return int(status_line.split()[1]), body


def curl(command: Command, port: int) -> str:
    """What ``curl -s -o /dev/null -w '%{http_code}\\n' -H … URL`` prints (or, without ``-o``
    and ``-w``, ``curl -s -H … URL``: the body), without curl."""
    argv = command.argv[1:]
    headers: list[tuple[str, str]] = []
    url = None
    status_only = False
    while argv:
        option = argv.pop(0)
        if option == "-H":
            name, _, value = argv.pop(0).partition(":")
            headers.append((name.strip(), value.strip()))
        elif option in ("-o", "-w"):
            assert (option, argv.pop(0)) in (("-o", "/dev/null"), ("-w", "%{http_code}\\n")), command
            status_only = True
        elif option == "-s":
            continue
        else:
            assert url is None, f"the test cannot follow {command}"
            assert not option.startswith("-"), f"the test cannot follow {command}"
            url = option
    assert url is not None, command
    parts = urlsplit(url)
    assert parts.scheme == "http", command
    assert parts.hostname == LOOPBACK, command
    if not any(name.lower() == "host" for name, _ in headers):
        headers.insert(0, ("Host", f"{LOOPBACK}:{port}"))
    status, body = response_of(port, parts.path or "/", headers)
    return str(status) if status_only else body.decode()


# --- the end-to-end test --------------------------------------------------------------


@pytest.mark.e2e
def test_install_into_a_new_site_following_the_readme(tmp_path: Path) -> None:
    timings: dict[str, float] = {}
    started = time.monotonic()

    sdist, wheel = build_distributions(tmp_path / "build")
    check_contents(sdist, wheel)
    timings["build"] = time.monotonic() - started

    venv = tmp_path / "venv"
    python, env, pip = new_venv(venv)

    workdir = tmp_path / "work"
    workdir.mkdir()
    site = workdir / "mysite"
    settings_file = site / "mysite" / "settings.py"
    files: dict[str, str] = {}
    pending_json: str | None = None
    server_argv: list[str] | None = None
    port = free_port()
    probes: list[Command] = []

    for block in install_steps():
        if block.language == "python":
            if block.text.startswith("# settings.py"):
                with settings_file.open("a") as settings:
                    settings.write("\n" + block.text)
            continue
        if block.language == "json":
            pending_json = block.text
            continue
        for command in commands(block):
            program, *args = command.argv
            if pending_json is not None:
                # The file the README just showed is the one this command reads.
                (name,) = [arg for arg in args if arg.endswith(".json")]
                files[name] = pending_json
                (site / name).write_text(pending_json)
                pending_json = None
            if program == "pip":
                assert args[:1] == ["install"], f"the test cannot follow {command}"
                # The README names the wheel that `python -m build` writes: the one just built.
                named = [arg for arg in args if Path(arg).name == wheel.name]
                assert named, f"the README installs {args}, not the wheel built here ({wheel.name})"
                packages = [str(wheel) if arg in named else arg for arg in args[1:]]
                run([*pip, "install", "--quiet", *packages, "gunicorn"], workdir, env, timeout=300)
                timings["install"] = time.monotonic() - started
                # The site the user already has: a brand-new one, made with the Django just installed.
                run([str(venv / "bin" / "django-admin"), "startproject", "mysite"], workdir, env)
                assert settings_file.exists()
            elif program == "python":
                output = run([python, *args], site, env)
                for line in command.expected:
                    assert line in output, f"{command} did not print {line!r}:\n{output}"
            elif program == "gunicorn":
                server_argv = [str(venv / "bin" / "gunicorn"), *args, "--bind", f"{LOOPBACK}:{port}"]
            elif program == "curl":
                probes.append(command)
            else:
                pytest.fail(f"the test cannot follow the README step {command}")
    timings["site"] = time.monotonic() - started

    assert server_argv is not None, "the README never serves the site"
    assert probes, "the README never asks the site for a page"
    statuses = sorted({probe.expected[0] for probe in probes})
    assert statuses == ["200", "400", "421"], statuses
    log = tmp_path / "gunicorn.log"
    with serving(server_argv, site, env, port, log):
        for probe in probes:
            assert curl(probe, port) == probe.expected[0], f"{probe}\n{log.read_text()[-3000:]}"
        # A bootstrap host from HOSTGUARD_ALWAYS_ALLOW reaches the admin too.
        assert status_of(port, "/admin/login/", [("Host", f"localhost:{port}")]) == 200
    timings["serve"] = time.monotonic() - started
    server_log = log.read_text()
    assert "Traceback" not in server_log, server_log
    print("install e2e timings (cumulative seconds):", {key: round(value, 1) for key, value in timings.items()})
