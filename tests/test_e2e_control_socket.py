"""End to end: two gunicorn instances started from the shipped config on one host, as two
deployments behind one proxy are, each keep their own control socket.

gunicorn's default control socket is one path per user (``~/.gunicorn/gunicorn.ctl``):
the second instance took it over from the first, and stopping either deleted it for
both. ``project/gunicorn.conf.py`` names each instance's socket after its bind address.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import e2e
from tests.e2e import Server, Site

pytestmark = pytest.mark.e2e

GUNICORNC = Path(sys.executable).with_name("gunicornc")


class ShippedConfigServer(Server):
    """A :class:`Server` that keeps the control socket the shipped config asks for."""

    def command(self) -> list[str]:
        return [part for part in super().command() if part != "--no-control-socket"]


def arbiter_pid(socket_path: Path) -> int:
    """The pid of the gunicorn master answering ``gunicornc`` on ``socket_path``."""
    done = subprocess.run(
        [str(GUNICORNC), "-s", str(socket_path), "-c", "show stats", "-j"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 0, f"gunicornc -s {socket_path}: {done.stdout}{done.stderr}"
    return int(json.loads(done.stdout)["pid"])


def test_two_instances_on_one_home_keep_their_own_control_sockets(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # No XDG_RUNTIME_DIR: gunicorn (and the config) then use ~/.gunicorn/, the shared place.
    one_host = {"HOME": str(home), "XDG_RUNTIME_DIR": ""}
    sockets = home / ".gunicorn"
    with Site(tmp_path / "site", deployment="eu-1") as site:
        eu = ShippedConfigServer(site, deployment="eu-1", workers=1, env=one_host)
        us = ShippedConfigServer(site, deployment="us-1", workers=1, env=one_host)
        site.servers += [eu, us]
        eu.start()
        us.start()
        eu_socket = sockets / f"gunicorn-127.0.0.1-{eu.port}.ctl"
        us_socket = sockets / f"gunicorn-127.0.0.1-{us.port}.ctl"
        # The control server starts once the workers run: give it a moment.
        assert e2e.wait_until(lambda: eu_socket.exists() and us_socket.exists(), timeout=10) is not None, (
            f"control sockets in {sockets}: {sorted(p.name for p in sockets.glob('*'))}\n{eu.stderr()}"
        )
        assert not (sockets / "gunicorn.ctl").exists(), "an instance used gunicorn's shared default"
        assert eu.process is not None
        assert us.process is not None
        us_pid = us.process.pid
        assert arbiter_pid(eu_socket) == eu.process.pid
        assert arbiter_pid(us_socket) == us_pid

        eu.stop()
        # The stopped instance removed its own socket and only its own.
        assert not eu_socket.exists()
        assert us_socket.exists()
        assert arbiter_pid(us_socket) == us_pid


def test_the_control_socket_can_be_named_or_switched_off(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    named = tmp_path / "eu-1.ctl"
    with Site(tmp_path / "site", deployment="eu-1") as site:
        env = {"HOME": str(home), "XDG_RUNTIME_DIR": ""}
        chosen = ShippedConfigServer(site, workers=1, env={**env, "GUNICORN_CONTROL_SOCKET": str(named)})
        off = ShippedConfigServer(site, workers=1, env={**env, "GUNICORN_CONTROL_SOCKET": "off"})
        site.servers += [chosen, off]
        # `off` first: by the time the other's socket appears, its own would have too.
        off.start()
        chosen.start()
        assert e2e.wait_until(named.exists, timeout=10) is not None, chosen.stderr()
        assert chosen.process is not None
        assert arbiter_pid(named) == chosen.process.pid
        # `off` made none, neither under its bind address nor at gunicorn's default.
        assert not (home / ".gunicorn").exists() or not any((home / ".gunicorn").iterdir())
