from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings

from hostguard.policy import policy


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out PostgreSQL-only tests when the suite runs on another database.

    They are deselected, not skipped: on SQLite they do not apply, and .ci/run
    runs the whole suite again on PostgreSQL, where they do.
    """
    if "postgresql" in settings.DATABASES["default"]["ENGINE"]:
        return
    kept = [item for item in items if item.get_closest_marker("postgresql") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


@pytest.fixture(autouse=True)
def _fresh_policy() -> Iterator[None]:
    """Each test starts with no snapshot, as a freshly started process does."""
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
