"""Checks that read the database; run by ``manage.py check --database default``."""

from __future__ import annotations

import difflib
import sys
from typing import Any

from django.core.checks import CheckMessage, Warning
from django.db import DEFAULT_DB_ALIAS, connections, router

from hostguard.conf import conf


def _running_migrate() -> bool:
    # Django passes checks no hint of the command running them, and `migrate` runs the
    # database checks before it migrates: "run migrate" would only confuse there.
    return sys.argv[1:2] == ["migrate"]


def _unapplied_migrations(alias: str) -> list[str]:
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(connections[alias], ignore_no_migrations=True)
    unapplied: list[str] = []
    for leaf in loader.graph.leaf_nodes("hostguard"):
        for key in loader.graph.forwards_plan(leaf):
            if key[0] == "hostguard" and key not in loader.applied_migrations and key[1] not in unapplied:
                unapplied.append(key[1])
    return unapplied


def check_migrations(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not databases or _running_migrate():
        return []
    warnings: list[CheckMessage] = []
    for alias in databases:
        if alias not in connections or not router.allow_migrate(alias, "hostguard"):
            continue
        try:
            unapplied = _unapplied_migrations(alias)
        except Exception:  # an unreachable database is reported by Django's own checks
            continue
        if unapplied:
            warnings.append(
                Warning(
                    "hostguard's migrations %s are not applied to the database %r: every gated request "
                    "is answered 503 until they are." % (", ".join(unapplied), alias),
                    hint="Run `python manage.py migrate`."
                    if alias == DEFAULT_DB_ALIAS
                    else "Run `python manage.py migrate --database %s`." % alias,
                    id="hostguard.W005",
                )
            )
    return warnings


def check_deployment_exists(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    deployment = conf.DEPLOYMENT
    alias = conf.DATABASE
    if not databases or alias not in databases or not isinstance(deployment, str) or _running_migrate():
        return []
    from hostguard.models import Deployment

    try:
        if Deployment.objects.using(alias).filter(name=deployment).exists():
            return []
        names = list(Deployment.objects.using(alias).order_by("name").values_list("name", flat=True)[:50])
    except Exception:  # tables missing (W005) or database unreachable (Django's checks)
        return []
    close = difflib.get_close_matches(deployment, names, n=1, cutoff=0.6)
    if close:
        hint = "Did you mean %r? Set HOSTGUARD_DEPLOYMENT to the name the database uses." % close[0]
    elif names:
        hint = (
            "The database knows %s. Set HOSTGUARD_DEPLOYMENT to one of them, or import this deployment's "
            "tenants with `python manage.py hostguard_import FILE`." % ", ".join(repr(name) for name in names[:10])
        )
    else:
        hint = "Import your tenants and hosts with `python manage.py hostguard_import FILE`, or add them in the admin."
    return [
        Warning(
            "The database has no deployment named %r: every tenant host is answered 421 until it does." % deployment,
            hint=hint,
            id="hostguard.W006",
        )
    ]
