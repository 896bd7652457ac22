from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from hostguard.policy import policy


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out PostgreSQL-only tests when the suite runs on another database, and tests
    of a site's own tenant model when it runs with hostguard's.

    They are deselected, not skipped: on SQLite they do not apply, and .ci/run runs the
    whole suite again on PostgreSQL, where they do; `make test` runs the tenant model's
    tests with tests/settings_swapped.py.
    """
    postgresql = "postgresql" in settings.DATABASES["default"]["ENGINE"]
    swapped = getattr(settings, "HOSTGUARD_TENANT_MODEL", "hostguard.Tenant") != "hostguard.Tenant"
    kept = [
        item
        for item in items
        if (postgresql or item.get_closest_marker("postgresql") is None)
        and (swapped or item.get_closest_marker("swapped") is None)
    ]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


@pytest.fixture(autouse=True)
def _fresh_policy() -> Iterator[None]:
    """Each test starts with no snapshot, as a freshly started process does.

    Unit tests run inside a transaction that other threads cannot see, so the policy
    reads the database on the test's own thread (``background = False``); the
    background refresher, the push and the propagation between processes are tested
    with committed data (transactional tests) and against real gunicorn workers.
    """
    policy.background = False
    policy.reset()
    yield
    policy.reset()


@pytest.fixture(autouse=True)
def _fresh_audit_buffer() -> Iterator[None]:
    """Each test starts with an empty mismatch buffer; nothing is left to flush at exit."""
    from hostguard.audit import recorder

    recorder.reset()
    yield
    recorder.reset()


@pytest.fixture(scope="session", autouse=True)
def _end_background_sessions(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """End database sessions hostguard's background threads may still hold at the end.

    The policy poller and the audit writer each use a connection of their own thread;
    on PostgreSQL one still open would keep the test database from being dropped.
    """
    yield
    # Only a test database pytest-django made (it makes none when no test of the run
    # needs one, and connecting would then name the site's own database).
    if connection.vendor != "postgresql" or not str(connection.settings_dict["NAME"]).startswith("test_"):
        return
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
