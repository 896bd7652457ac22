"""pytest fixtures for a site that uses hostguard, registered through the ``pytest11`` entry
point as soon as hostguard is installed (pytest-django provides the database).

* every test starts and ends with hostguard's policy read afresh, on the test's thread
  (``policy.background = False``), so rows a test writes in its transaction are served;
* ``served_tenant``: a tenant this deployment serves, at ``tenant.test`` (:func:`hostguard.test.serve_tenant`);
* ``tenant_client``: a test client that sends its host with every request.

A suite whose tests use pytest-django's ``client`` fixture gets a client that sends a
served host with one line in its ``conftest.py``::

    from hostguard.test.pytest_plugin import tenant_client as client  # noqa: F401

Without Django settings, or without hostguard in ``INSTALLED_APPS``, the plugin does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


def _hostguard_in_use() -> bool:
    from django.conf import settings

    if not settings.configured:
        return False
    from django.apps import apps

    return apps.ready and apps.is_installed("hostguard")


@pytest.fixture(autouse=True)
def _hostguard_fresh_policy() -> Iterator[None]:
    """hostguard's policy read on the test's own thread, from nothing, in every test."""
    if not _hostguard_in_use():
        yield
        return
    from hostguard.test import prepare_policy

    prepare_policy()
    yield
    prepare_policy()


@pytest.fixture
def served_tenant(db: Any) -> Any:
    """The tenant ``tenant`` (of the tenant model), served by this deployment at ``tenant.test``."""
    from hostguard.test import serve_tenant

    return serve_tenant()


@pytest.fixture
def tenant_client(served_tenant: Any) -> Any:
    """A test client whose every request carries a host of ``served_tenant``."""
    from hostguard.test import TenantClient

    return TenantClient(served_tenant)
