"""The listening connection on PostgreSQL: a stalled network is noticed, and it reconnects."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from hostguard import push
from tests import e2e
from tests.relay import Relay

pytestmark = pytest.mark.postgresql


class Counter:
    def __init__(self) -> None:
        self.woken = 0

    def wake(self) -> None:
        self.woken += 1


def test_a_stalled_listening_connection_is_dropped_and_taken_up_again(
    db: None,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    # No server-side timeout fires on a stalled network: the ping's own deadline must.
    monkeypatch.setattr(push, "KEEPALIVE", 0.3)
    monkeypatch.setattr(push, "PING_TIMEOUT", 0.5)
    monkeypatch.setattr(push, "STABLE", 0.5)
    params: dict[str, Any] = connection.get_connection_params()
    with Relay((str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))) as relay:
        params.update(host="127.0.0.1", port=relay.port, connect_timeout=2)
        import psycopg

        policy = Counter()
        listener = push.Listener(policy, params, psycopg)
        listener.start()
        request.addfinalizer(listener.stop)
        assert e2e.wait_until(lambda: listener.connected, timeout=5) is not None
        woken = policy.woken
        relay.stall()
        # Within the keepalive and the ping deadline (not minutes), it knows.
        assert e2e.wait_until(lambda: not listener.connected, timeout=5) is not None
        assert listener.failing
        relay.restore()
        assert e2e.wait_until(lambda: listener.connected and not listener.failing, timeout=15) is not None
        # Taking the connection up again wakes the policy: changes made meanwhile are caught up.
        assert policy.woken > woken
