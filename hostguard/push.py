"""Changes pushed by PostgreSQL: each process listens for the writers' ``NOTIFY``.

Every write sends ``NOTIFY hostguard_policy`` in its transaction (delivered at commit;
see :mod:`hostguard.store`). Each process keeps one connection of its own — not one
of Django's — with ``LISTEN hostguard_policy``, and wakes its refresher when a
notification arrives, so a change reaches every process within milliseconds.

Polling stays as the fallback: a lost notification or a lost connection only delays
a change to the next ``HOSTGUARD_REFRESH_SECONDS``. A dropped connection is
re-established with backoff; the outage and the recovery are logged once each, not
per attempt. ``HOSTGUARD_PUSH = False`` turns listening off (polling alone); on
other databases, or with psycopg 2, there is nothing to listen to.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any, Protocol

from django.db import connections

from hostguard.conf import conf
from hostguard.store import CHANNEL

logger = logging.getLogger("hostguard.push")

#: The longest wait between two attempts to reconnect.
MAX_BACKOFF = 30.0
#: How often an idle listening connection proves it is alive, and how long it may take.
KEEPALIVE = 15.0
PING_TIMEOUT = 10.0
#: The ``application_name`` of the listening connections.
APPLICATION_NAME = "hostguard-listen"
#: A connection counts as back (logged, backoff reset) once it has stayed up this long:
#: one that keeps dropping right after connecting is still an outage, logged once.
STABLE = 5.0


class Wakeable(Protocol):
    def wake(self) -> None: ...


def listen(policy: Wakeable) -> Listener | None:
    """Start listening for ``policy``, if the database can push; return the listener."""
    if not conf.PUSH:
        return None
    alias = conf.DATABASE
    try:
        connection = connections[alias]
    except Exception:
        return None
    if connection.vendor != "postgresql":
        return None
    try:
        import psycopg
    except ImportError:  # psycopg 2: Django works with it, but it has no notifies() generator
        logger.info("hostguard listens for changes only with psycopg 3; polling every HOSTGUARD_REFRESH_SECONDS")
        return None
    listener = Listener(policy, connection.get_connection_params(), psycopg)
    listener.start()
    return listener


class Listener(threading.Thread):
    """A daemon thread holding one ``LISTEN`` connection and waking the policy on each notification."""

    def __init__(self, policy: Wakeable, params: dict[str, Any], psycopg: Any) -> None:
        super().__init__(name="hostguard-listen", daemon=True)
        self.policy = policy
        # Named, so operators can tell it apart in pg_stat_activity (and count it).
        self.params = {**params, "autocommit": True, "application_name": APPLICATION_NAME}
        self.psycopg = psycopg
        self.connected = False
        self.failing = False
        self.backoff = 1.0
        self.stopping = threading.Event()

    def stop(self) -> None:
        """End the thread at its next wake-up (tests; a process's own ends with it)."""
        self.stopping.set()

    def run(self) -> None:
        self.backoff = 1.0
        while not self.stopping.is_set():
            try:
                with self.psycopg.connect(**self.params) as connection:
                    connection.execute("LISTEN %s" % CHANNEL)
                    self.connected = True
                    # Notifications sent while nobody listened are lost: catch up now.
                    self.policy.wake()
                    self._listen(connection, time.monotonic())
            except Exception as exc:
                self._lost(exc)
            self.connected = False
            self.stopping.wait(self.backoff)
            self.backoff = min(self.backoff * 2, MAX_BACKOFF)

    def _listen(self, connection: Any, since: float) -> None:
        while not self.stopping.is_set():
            timeout = KEEPALIVE if not self.failing else min(KEEPALIVE, STABLE)
            for _notify in connection.notifies(timeout=timeout):
                self.policy.wake()
                self._stable(since)
            # Quiet for a while: prove the connection is still there (a cut one raises).
            _ping(connection)
            self._stable(since)

    def _stable(self, since: float) -> None:
        if self.failing and time.monotonic() - since >= STABLE:
            self.failing = False
            self.backoff = 1.0
            logger.info("hostguard is listening for policy changes again")

    def _lost(self, exc: BaseException) -> None:
        if self.failing:
            return  # still the same outage: said once already
        self.failing = True
        self.backoff = 1.0
        logger.warning(
            "hostguard lost its connection for policy changes (%s); polling every HOSTGUARD_REFRESH_SECONDS "
            "meanwhile, and reconnecting with backoff up to %d s",
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
            MAX_BACKOFF,
        )


def _ping(connection: Any) -> None:
    """``SELECT 1``, within :data:`PING_TIMEOUT`: a stalled network would hold it for ever
    (no server-side timeout can fire), so the socket is shut down when time is up, which
    makes the query fail and the listener reconnect."""
    timer = threading.Timer(PING_TIMEOUT, _shut_down, args=(connection,))
    timer.daemon = True
    timer.start()
    try:
        connection.execute("SELECT 1")
    finally:
        timer.cancel()


def _shut_down(connection: Any) -> None:
    try:
        # A duplicate of psycopg's descriptor: shutting it down ends the connection
        # for both, and closing it leaves psycopg's own to psycopg.
        with socket.socket(fileno=os.dup(connection.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        logger.debug("could not shut down a stalled listening connection", exc_info=True)
