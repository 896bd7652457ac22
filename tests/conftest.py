from __future__ import annotations

from collections.abc import Iterator

import pytest

from hostguard.policy import policy


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
