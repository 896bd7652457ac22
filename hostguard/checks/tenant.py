"""Checks of the tenant model: ``HOSTGUARD_TENANT_MODEL``, ``HOSTGUARD_TENANT_FIELDS``, and
whether hostguard's tables and migrations fit the model they name."""

from __future__ import annotations

import difflib
import sys
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, models, router

from hostguard.conf import InvalidSetting
from hostguard.tenant_fields import parse_tenant_fields

DOCS = "docs/tenant-model.md"
SETTING = "HOSTGUARD_TENANT_MODEL"


def _tenant_model() -> Any:
    from hostguard.models import get_tenant_model

    try:
        return get_tenant_model()
    except ImproperlyConfigured:
        return None


def check_tenant_model(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    value = getattr(settings, SETTING, None)
    if value is not None and not isinstance(value, str):
        return []  # E005: the wrong type
    model = _tenant_model()
    if model is None:
        return [not_a_model(str(value))]
    return tenant_model_problems(model)


def tenant_model_problems(model: type[models.Model]) -> list[CheckMessage]:
    """What stops ``model`` from being hostguard's tenant model (E016, E017, W008)."""
    from hostguard.models import AbstractTenant, PolicyQuerySet

    label = model._meta.label
    if not issubclass(model, AbstractTenant):
        return [
            Error(
                "%s = %r names a model not derived from hostguard.models.AbstractTenant: hostguard needs its "
                "slug, name, deployment and is_active fields, and records every write to it." % (SETTING, label),
                hint="Declare it as `class %s(AbstractTenant)` (`from hostguard.models import AbstractTenant`; it "
                "may keep fields of its own), then run `python manage.py makemigrations`. See %s."
                % (model.__name__, DOCS),
                obj=label,
                id="hostguard.E016",
            )
        ]
    errors: list[CheckMessage] = []
    pk = model._meta.pk
    if not isinstance(pk, models.AutoField | models.BigAutoField | models.SmallAutoField | models.IntegerField):
        errors.append(
            Error(
                "The primary key of %s is a %s: hostguard's snapshot and change log name tenants by integer ids."
                % (label, pk.get_internal_type()),
                hint="Give %s an integer primary key (the default BigAutoField) and keep any other identifier in a "
                "field of its own." % label,
                obj=label,
                id="hostguard.E017",
            )
        )
    queryset = getattr(model._default_manager, "_queryset_class", None)
    if not (isinstance(queryset, type) and issubclass(queryset, PolicyQuerySet)):
        errors.append(
            Warning(
                "%s's default manager (%s) makes querysets that do not record bulk writes: update(), "
                "bulk_create() and bulk_update() of tenants would not reach any process's policy."
                % (label, model._default_manager.name),
                hint="Derive the manager from hostguard.models.TenantManager, or make it with "
                "`Manager.from_queryset()` of a subclass of hostguard.models.PolicyQuerySet.",
                obj=label,
                id="hostguard.W008",
            )
        )
    return errors


def not_a_model(value: str) -> CheckMessage:
    """``hostguard.E015`` for a ``HOSTGUARD_TENANT_MODEL`` that names no installed model."""
    if value.count(".") != 1 or not all(value.split(".")):
        hint = "Write it as 'app_label.ModelName', e.g. 'accounts.Organization', or remove it to use hostguard.Tenant."
        return Error(
            "%s = %r is not of the form 'app_label.ModelName'." % (SETTING, value), hint=hint, id="hostguard.E015"
        )
    from hostguard.models import AbstractTenant

    candidates = [m._meta.label for m in apps.get_models() if issubclass(m, AbstractTenant)]
    close = difflib.get_close_matches(value, candidates or [m._meta.label for m in apps.get_models()], n=1)
    app_label = value.split(".")[0]
    if app_label not in {config.label for config in apps.get_app_configs()}:
        hint = "Add the app %r to INSTALLED_APPS, or correct the name." % app_label
    else:
        hint = "Name a model derived from hostguard.models.AbstractTenant, or remove the setting (hostguard.Tenant)."
    if close:
        hint = "Did you mean %r? %s" % (close[0], hint)
    return Error(
        "%s = %r names no installed model." % (SETTING, value),
        hint=hint + " See %s." % DOCS,
        id="hostguard.E015",
    )


def check_tenant_fields(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from hostguard.models import AbstractTenant

    model = _tenant_model()
    if model is None or not issubclass(model, AbstractTenant) or not hasattr(settings, "HOSTGUARD_TENANT_FIELDS"):
        return []
    try:
        parse_tenant_fields(model, getattr(settings, "HOSTGUARD_TENANT_FIELDS", []))
    except InvalidSetting as exc:
        return [
            Error(
                "HOSTGUARD_TENANT_FIELDS: %s" % exc.message,
                hint="List fields of %s itself that hold small values (text up to 255 characters, numbers, "
                "dates, booleans, UUIDs): every process keeps them for every tenant. Other fields load from the "
                "database when a view first reads them." % model._meta.label,
                id="hostguard.E018",
            )
        ]
    return []


def check_tenant_migrations(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The site's tenant app and hostguard must not wait for each other's migrations."""
    from django.db.migrations.exceptions import CircularDependencyError
    from django.db.migrations.loader import MigrationLoader

    from hostguard.models import Tenant

    model = _tenant_model()
    if model is None or model is Tenant:
        return []
    try:
        MigrationLoader(None, ignore_no_migrations=True)
    except CircularDependencyError:
        pass
    except Exception:  # a broken migration of some app: Django's own error says which
        return []
    else:
        return []
    app_label = model._meta.app_label
    loader = MigrationLoader(None, load=False)
    loader.load_disk()
    edits = [
        (name, dependency[1])
        for (label, name), migration in sorted(loader.disk_migrations.items())
        if label == app_label and migration.initial
        for dependency in migration.dependencies
        if dependency[0] == "hostguard" and dependency[1] != "0001_initial"
    ]
    where = "; ".join(
        'in %s, replace ("hostguard", "%s") by ("hostguard", "0001_initial")' % (_path(app_label, name), old)
        for name, old in edits
    )
    return [
        Error(
            "The migrations of %s and hostguard wait for each other: the migration that creates the tenant "
            "model depends on hostguard's newest migration, which adds hostguard's relations to that model."
            % app_label,
            hint="The tenant model needs only hostguard's first migration (its deployments): %s. See %s."
            % (
                where
                or 'make the migration that creates %s depend on ("hostguard", "0001_initial")' % model._meta.label,
                DOCS,
            ),
            obj=model._meta.label,
            id="hostguard.E020",
        )
    ]


def _path(app_label: str, name: str) -> str:
    config = apps.get_app_config(app_label)
    module = sys.modules.get("%s.migrations.%s" % (config.name, name))
    return str(getattr(module, "__file__", None) or "%s/migrations/%s.py" % (app_label, name))


def check_tenant_tables(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """hostguard's tables refer to the tenant model they were created for; run with ``--database``
    (and by ``migrate``, which it stops before anything is written)."""
    from hostguard.models import Authority

    model = _tenant_model()
    if not databases or model is None:
        return []
    errors: list[CheckMessage] = []
    for alias in databases:
        if alias not in connections or not router.allow_migrate_model(alias, Authority):
            continue
        table = _tenant_table(alias)
        if table is None or table == model._meta.db_table:
            continue
        built_for = next(
            (m._meta.label for m in apps.get_models(include_swapped=True) if m._meta.db_table == table), table
        )
        errors.append(
            Error(
                "%s is %s, but hostguard's tables in the database %r were created for %s: the setting changed "
                "after hostguard's tables were created." % (SETTING, model._meta.label, alias, built_for),
                hint="As with Django's AUTH_USER_MODEL, this change cannot be made automatically: hostguard's "
                "authorities and audit log refer to %s's rows. Nothing has been changed. Set %s back to %r, or "
                "move the hosts over as “A site already running hostguard” in %s describes."
                % (built_for, SETTING, built_for, DOCS),
                id="hostguard.E019",
            )
        )
    return errors


def _tenant_table(alias: str) -> str | None:
    """The table hostguard's authorities refer to, or ``None`` when the database cannot say."""
    from hostguard.models import Authority

    connection = connections[alias]
    table = Authority._meta.db_table
    try:
        with connection.cursor() as cursor:
            if table not in connection.introspection.table_names(cursor):
                return None  # not migrated: hostguard.W005
            relations = connection.introspection.get_relations(cursor, table)
    except Exception:  # an unreachable database is reported by Django's own checks
        return None
    target = relations.get(Authority._meta.get_field("tenant").column)
    return None if target is None else str(target[1])
