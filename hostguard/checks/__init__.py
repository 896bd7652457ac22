"""System checks: the misconfigurations that would make hostguard gate wrongly.

Each problem has its own id and a hint that says how to fix it (docs/checks.md lists
them all): :mod:`~hostguard.checks.site` for how the site is put together,
:mod:`~hostguard.checks.settings` for the ``HOSTGUARD_*`` values,
:mod:`~hostguard.checks.tenant` for the tenant model, :mod:`~hostguard.checks.database`
for what only the database can tell.
"""

from __future__ import annotations

from django.core import checks

from hostguard.checks.database import check_deployment_exists, check_migrations
from hostguard.checks.settings import check_setting_names, check_setting_types
from hostguard.checks.site import (
    MIDDLEWARE_PATH,
    MUST_PRECEDE,
    SHOULD_PRECEDE,
    check_allowed_hosts,
    check_deployment,
    check_middleware,
    check_report_mode,
    check_sni_proxies,
    check_templates,
)
from hostguard.checks.tenant import (
    check_tenant_fields,
    check_tenant_migrations,
    check_tenant_model,
    check_tenant_tables,
)

__all__ = ["MIDDLEWARE_PATH", "MUST_PRECEDE", "SHOULD_PRECEDE", "register"]


def register() -> None:
    """Register every check (from ``HostGuardConfig.ready()``)."""
    for check in (
        check_deployment,
        check_middleware,
        check_allowed_hosts,
        check_templates,
        check_setting_names,
        check_setting_types,
        check_report_mode,
        check_sni_proxies,
        check_tenant_model,
        check_tenant_fields,
        check_tenant_migrations,
    ):
        checks.register(check, "hostguard")
    # Run by `manage.py check --database default`: they query the database.
    checks.register(check_migrations, "hostguard", checks.Tags.database)
    checks.register(check_deployment_exists, "hostguard", checks.Tags.database)
    checks.register(check_tenant_tables, "hostguard", checks.Tags.database)
