"""``request.tenant``: an instance of the tenant model made from the snapshot, with no query.

The snapshot carries each tenant's pk, slug, name, deployment and active flag, and
the fields ``HOSTGUARD_TENANT_FIELDS`` lists. :func:`tenant_from_snapshot` makes an
instance from those values the way Django makes one from an ``only()`` queryset:
reading them costs nothing, every other field is deferred and loads on first access,
and ``deployment`` is already there (a Deployment made from the snapshot's names,
its ``description`` deferred). Every call makes new instances, so a view that changes
its tenant object changes nobody else's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from django.core.signals import setting_changed
from django.db import router
from django.db.models import Model
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

from hostguard.snapshot import Snapshot


class Layout(NamedTuple):
    """Where a snapshot's tenant values go, for the configured tenant model."""

    model: type[Model]
    #: The database deferred fields load from, as a queryset of the model would read.
    db: str
    #: Attribute names of the values a :class:`~hostguard.snapshot.TenantRecord` carries,
    #: pk first, then slug, name, deployment, active and ``HOSTGUARD_TENANT_FIELDS``.
    attnames: tuple[str, ...]
    #: Where the ``deployment`` relation keeps its cached instance.
    deployment_cache: str
    deployment_model: type[Model]
    deployment_db: str


_layout: Layout | None = None


def layout() -> Layout:
    """The :class:`Layout` of the configured tenant model (cached until a setting changes)."""
    global _layout
    if _layout is None:
        from hostguard.models import Deployment, get_tenant_model
        from hostguard.store import tenant_fields

        model = get_tenant_model()
        opts = model._meta
        names = ("slug", "name", "deployment", "is_active", *tenant_fields())
        relation = opts.get_field("deployment")
        _layout = Layout(
            model,
            router.db_for_read(model),
            (opts.pk.attname, *(opts.get_field(name).attname for name in names)),  # type: ignore[union-attr]
            relation.cache_name,
            Deployment,
            router.db_for_read(Deployment),
        )
    return _layout


def tenant_from_snapshot(snapshot: Snapshot | None, tenant_id: int) -> Any:
    """A new instance of the tenant model for ``tenant_id``, from ``snapshot``'s values.

    A tenant the snapshot lacks (a report-mode request for a row deleted meanwhile)
    is read from the database, as it was before snapshots carried tenants.
    """
    record = None if snapshot is None else snapshot.tenant(tenant_id)
    shape = layout()
    if record is None:
        return shape.model._default_manager.select_related("deployment").get(pk=tenant_id)
    values = (tenant_id, record.slug, record.name, record.deployment_id, record.active, *record.extra)
    if len(values) != len(shape.attnames):
        # HOSTGUARD_TENANT_FIELDS changed after this snapshot was read: its extra values
        # would land on the wrong fields, so leave them deferred.
        values = values[:5]
    tenant = instance(shape.model, shape.db, dict(zip(shape.attnames, values, strict=False)))
    name = snapshot.deployments.get(record.deployment_id)  # type: ignore[union-attr]
    if name is not None:
        deployment = instance(shape.deployment_model, shape.deployment_db, {"id": record.deployment_id, "name": name})
        tenant._state.fields_cache = {shape.deployment_cache: deployment}
    return tenant


def instance(model: type[Model], db: str, values: dict[str, Any]) -> Any:
    """``model.from_db(db, …)`` with only ``values`` (attribute name → value) loaded.

    Django's own ``from_db()`` goes through ``Model.__init__``, which costs as much as
    the rest of an allowed request; without ``pre_init``/``post_init`` receivers for
    the model it does no more than this: a new object, its state (not adding, read
    from ``db``) and the loaded values, every other field deferred. With receivers,
    ``from_db()`` itself runs, so they see every instance. (Pinned by
    tests/test_request_tenant.py against ``from_db()``.)
    """
    if pre_init.has_listeners(model) or post_init.has_listeners(model):
        fields = [field.attname for field in model._meta.concrete_fields if field.attname in values]
        return model.from_db(db, fields, [values[name] for name in fields])
    obj = model.__new__(model)
    state = ModelState()
    state.adding = False
    state.db = db
    obj.__dict__.update(values)
    obj._state = state
    return obj


def _clear(*, setting: str, **kwargs: Any) -> None:
    global _layout
    if setting.startswith("HOSTGUARD_") or setting == "DATABASE_ROUTERS":
        _layout = None


setting_changed.connect(_clear, dispatch_uid="hostguard.tenants.layout")
