"""Support for end-to-end tests: real gunicorn processes and real databases (raw HTTP: tests.rawhttp).

Not a test module. A test builds a :class:`Site` (a fresh database plus the
environment every process of the demo site reads), loads data into it, and starts
one or more :class:`Server` processes against it::

    with Site(tmp_path, deployment="eu-1") as site:
        site.load(DATA)
        with site.server(workers=2) as server:
            response = raw_request(server.port, http_request("GET", "/", host="acme.example"))

or, once per test module, through :func:`server_fixture`. Everything talks to
127.0.0.1 only, every wait is bounded, and every process started here runs in its
own process group that :meth:`Server.stop` terminates (SIGTERM, then SIGKILL).

The database is a SQLite file in a temporary directory by default; pass a
``database_url`` (``postgres://…``, see :func:`postgres_database`) to share one
PostgreSQL database between several servers, e.g. one per deployment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tests.rawhttp import LOOPBACK, Response, concurrent_requests, free_port, http_request, raw_request

BASE_DIR = Path(__file__).resolve().parent.parent

#: The access log line :class:`Server` asks gunicorn for: worker pid, status, request line.
ACCESS_LOG_FORMAT = 'hostguard-e2e %(p)s %(s)s "%(r)s"'
_ACCESS_LINE = re.compile(r'^hostguard-e2e <(\d+)> (\d{3}) "(.*)"$')

#: Environment variables of the calling process that must not leak into the site's.
_SCRUBBED_PREFIXES = ("DJANGO_", "HOSTGUARD_", "GUNICORN_")
_SCRUBBED = {"DATABASE_URL", "CACHE_URL", "DEBUG", "SECRET_KEY", "BIND", "PORT", "WEB_CONCURRENCY"}


class E2EError(RuntimeError):
    """A helper process failed; the message carries its output."""


class _PortTaken(E2EError):
    """Someone bound the port between :func:`free_port` and gunicorn (gunicorn would retry for 5 s)."""


_PORT_TAKEN = "Connection in use"


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:]


@dataclass
class Site:
    """A fresh database and the environment the demo site's processes read.

    ``directory`` holds the SQLite file (unless ``database_url`` is given), the
    data files and the servers' logs. ``migrate()`` runs on entering the context
    manager (or call it yourself).
    """

    directory: Path
    database_url: str | None = None
    deployment: str = "eu-1"
    refresh_seconds: float = 2.0
    always_allow: Sequence[str] = ("localhost", "127.0.0.1")
    extra_env: Mapping[str, str] = field(default_factory=dict)
    servers: list[Server] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.directory / 'db.sqlite3'}"

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment for a process of this site; ``overrides`` win."""
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in _SCRUBBED and not key.startswith(_SCRUBBED_PREFIXES)
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "project.settings",
                "DATABASE_URL": str(self.database_url),
                "HOSTGUARD_DEPLOYMENT": self.deployment,
                "HOSTGUARD_REFRESH_SECONDS": str(self.refresh_seconds),
                "HOSTGUARD_ALWAYS_ALLOW": ",".join(self.always_allow),
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def run(self, args: Sequence[str], *, timeout: float = 60, env: Mapping[str, str] | None = None) -> str:
        """Run ``python *args`` in the project directory; return stdout, raise with stderr."""
        command = [sys.executable, *args]
        try:
            done = subprocess.run(
                command,
                cwd=BASE_DIR,
                env=dict(env) if env is not None else self.env(),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise E2EError(f"{command[1:3]} did not finish within {timeout} s: {exc.stderr!r}") from None
        if done.returncode != 0:
            raise E2EError(
                f"{' '.join(command[1:3])}… exited with {done.returncode}\n"
                f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
            )
        return done.stdout

    def manage(self, *args: str, timeout: float = 60) -> str:
        """``manage.py *args`` against this site's database; returns stdout."""
        return self.run(["manage.py", *args], timeout=timeout)

    def python(self, code: str, *args: str, timeout: float = 60) -> str:
        """Run ``code`` in a new process after ``django.setup()``; ``sys.argv[1:]`` is ``args``."""
        return self.run(["-c", "import django\ndjango.setup()\n" + code, *args], timeout=timeout)

    def migrate(self) -> None:
        self.manage("migrate", "--noinput", "-v", "0")

    def load(self, data: Mapping[str, Any], *, prune: bool = False) -> str:
        """Create or update tenants and authorities with ``hostguard_import`` (its JSON format)."""
        path = self.directory / f"data-{time.monotonic_ns()}.json"
        path.write_text(json.dumps(data, indent=2))
        return self.manage("hostguard_import", str(path), *(["--prune"] if prune else []))

    def server(self, **kwargs: Any) -> Server:
        """A :class:`Server` for this site, stopped when the site is."""
        server = Server(self, **kwargs)
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            server.stop()

    def __enter__(self) -> Site:
        self.migrate()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def change_in_other_process(site: Site, code: str, *args: str) -> str:
    """Run ORM ``code`` in a separate Python process against ``site``'s database.

    This is the write a server's workers did not make themselves: they can only
    learn of it through the database, as from another host or the admin.
    ``Authority``, ``Deployment``, ``Tenant`` and ``policy`` are already imported.
    """
    preamble = "from hostguard.models import Authority, Deployment, Tenant\nfrom hostguard.policy import policy\n"
    return site.python(preamble + code, *args)


class Server:
    """``gunicorn -c project/gunicorn.conf.py project.wsgi`` on a free loopback port.

    Runs in its own process group; stdout (the access log) and stderr (gunicorn's
    error log and hostguard's logs) go to files in the site's directory.
    """

    def __init__(
        self,
        site: Site,
        *,
        workers: int = 2,
        threads: int = 1,
        deployment: str | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 20.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.site = site
        self.workers = workers
        self.threads = threads
        self.deployment = deployment or site.deployment
        self.extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.stdout_path = self.stderr_path = Path()

    def start(self) -> Server:
        """Start gunicorn and return once every worker has answered a request."""
        for attempt in range(3):
            self.port = free_port()
            try:
                self._spawn(attempt)
                self._wait_until_answering()
                self.wait_for_workers()
                return self
            except _PortTaken:
                # Still retrying its bind, so nothing to drain.
                self.stop(graceful=False)
            except BaseException:
                self.stop()
                raise
        raise E2EError("another process took the free port three times in a row")

    #: The server program, in log file names.
    program = "gunicorn"

    def command(self) -> list[str]:
        """The server's command line (run from the repository's top folder)."""
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "project/gunicorn.conf.py",
            "--access-logformat",
            ACCESS_LOG_FORMAT,
            # The default control socket is one path per user: parallel servers (and a
            # developer's `make run`) would fight over it.
            "--no-control-socket",
            "project.wsgi",
        ]

    def environment(self) -> dict[str, str]:
        """The server's environment: the site's, this server's settings, then ``env``."""
        return self.site.env(
            HOSTGUARD_DEPLOYMENT=self.deployment,
            BIND=f"{LOOPBACK}:{self.port}",
            WEB_CONCURRENCY=str(self.workers),
            GUNICORN_THREADS=str(self.threads),
            GRACEFUL_TIMEOUT="2",
            **self.extra_env,
        )

    def _spawn(self, attempt: int) -> None:
        name = f"{self.program}-{self.deployment}-{self.port}-{attempt}"
        self.stdout_path = self.site.directory / f"{name}.out"
        self.stderr_path = self.site.directory / f"{name}.err"
        command, env = self.command(), self.environment()
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                command,
                cwd=BASE_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )

    def _fail(self, message: str) -> E2EError:
        return E2EError(f"{message}\n--- gunicorn stderr (tail)\n{self.stderr()}")

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        probe = http_request("GET", "/healthz")
        while True:
            assert self.process is not None
            if _PORT_TAKEN in self.stderr():
                raise _PortTaken(self.port)
            if self.process.poll() is not None:
                raise self._fail(f"gunicorn exited with {self.process.returncode} while starting")
            with suppress(OSError):
                if raw_request(self.port, probe, timeout=1).status == 200:
                    return
            if time.monotonic() > deadline:
                raise self._fail(f"gunicorn did not answer /healthz within {self.startup_timeout} s")
            time.sleep(0.05)

    def wait_for_workers(self, timeout: float | None = None) -> set[int]:
        """Return once every worker has answered a request; the pids that did."""
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        probe = http_request("GET", "/healthz")
        while True:
            # Sync workers are reached one connection each; threaded ones only likely so.
            concurrent_requests(self.port, [probe] * (self.workers * self.threads))
            pids = {entry.pid for entry in self.access_log()}
            if len(pids) >= self.workers:
                return pids
            if time.monotonic() > deadline:
                raise self._fail(f"only {len(pids)} of {self.workers} workers answered")

    def request(self, data: bytes, timeout: float = 5.0) -> Response:
        """:func:`raw_request` to this server."""
        return raw_request(self.port, data, timeout)

    def access_log(self) -> list[AccessEntry]:
        """Every request gunicorn logged so far, with the pid of the worker that answered."""
        entries = []
        for line in _tail(self.stdout_path, limit=10_000_000).splitlines():
            match = _ACCESS_LINE.match(line)
            if match:
                entries.append(AccessEntry(int(match.group(1)), int(match.group(2)), match.group(3)))
        return entries

    def stderr(self, limit: int = 4000) -> str:
        """The tail of what the server wrote to stderr (error log, tracebacks)."""
        return _tail(self.stderr_path, limit)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, graceful: bool = True) -> None:
        """SIGTERM the process group, wait, then SIGKILL whatever is left. Idempotent."""
        process = self.process
        if process is None:
            return
        self.process = None
        stop_group(process, signal.SIGTERM if graceful else signal.SIGKILL, self.stop_timeout)

    def __enter__(self) -> Server:
        if self.process is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class AccessEntry:
    pid: int
    status: int
    request_line: str


@contextmanager
def serve(
    directory: Path,
    data: Mapping[str, Any] | None = None,
    *,
    database_url: str | None = None,
    site_options: Mapping[str, Any] | None = None,
    **server_options: Any,
) -> Iterator[Server]:
    """A migrated :class:`Site` with ``data`` loaded and one running :class:`Server`."""
    with Site(directory, database_url=database_url, **dict(site_options or {})) as site:
        if data:
            site.load(data)
        with site.server(**server_options) as server:
            yield server


def server_fixture(
    data: Mapping[str, Any] | None = None,
    *,
    scope: str = "module",
    name: str | None = None,
    site_options: Mapping[str, Any] | None = None,
    **server_options: Any,
) -> Any:
    """A pytest fixture yielding a running :class:`Server`; assign it in a test module::

    server = e2e.server_fixture(DATA, site_options={"deployment": "eu-1"}, workers=2)
    """

    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
        directory = tmp_path_factory.mktemp("e2e")
        try:
            with serve(directory, data, site_options=site_options, **server_options) as server:
                yield server
        finally:
            with suppress(OSError):
                shutil.rmtree(directory)

    return pytest.fixture(scope=scope, name=name)(fixture)  # type: ignore[call-overload]


@contextmanager
def postgres_database(
    base_url: str = "postgres://postgres@127.0.0.1:5432/postgres", prefix: str = "hostguard_e2e"
) -> Iterator[str]:
    """Create an empty PostgreSQL database, yield its URL, drop it afterwards.

    ``base_url`` names a database to connect to for CREATE/DROP DATABASE.
    """
    import psycopg

    name = f"{prefix}_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    with psycopg.connect(base_url.replace("postgres://", "postgresql://", 1), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(base_url.replace("postgres://", "postgresql://", 1), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def require_postgres(base_url: str = "postgres://postgres@127.0.0.1:5432/postgres") -> None:
    """Skip the calling test if PostgreSQL is unreachable; under ``CI=true`` fail instead.

    CI promises PostgreSQL at 127.0.0.1:5432, so there a missing server is an error,
    never a quietly skipped test; on a developer's machine it is a reason to skip.
    """
    import psycopg

    try:
        psycopg.connect(base_url.replace("postgres://", "postgresql://", 1), connect_timeout=3).close()
    except psycopg.Error as exc:
        message = f"PostgreSQL is not reachable ({str(exc).strip().splitlines()[0]})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true requires it", pytrace=False)
        pytest.skip(message)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> float | None:
    """Poll ``predicate`` until it holds; the seconds it took, or ``None`` at ``timeout``."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        time.sleep(interval)


def stop_group(process: subprocess.Popen[bytes], first: int = signal.SIGTERM, timeout: float = 5.0) -> None:
    """Stop a process started with ``start_new_session=True``: ``first`` to its whole
    group, a wait, then SIGKILL to whatever is left (children orphaned by a parent that
    died first are still in the group)."""
    for sig in (first, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
            break
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
