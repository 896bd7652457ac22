"""``request.tenant``: an instance of the tenant model made from the snapshot, with no query.

The snapshot carries each tenant's pk, slug, name, deployment and active flag, and
the fields ``HOSTGUARD_TENANT_FIELDS`` lists. An instance is made from those values
the way Django makes one from an ``only()`` queryset: reading them costs nothing,
every other field is deferred and loads on first access, and ``deployment`` is made
from the snapshot's deployment names when first read (its ``description`` deferred;
:class:`hostguard.models.DeploymentForeignKey`). ``request.tenant`` is a
:class:`LazyTenant`, which becomes such an instance when a view first uses it; each
request gets its own, so a view that changes its tenant object changes nobody else's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from django.apps import apps
from django.core.signals import setting_changed
from django.db import router
from django.db.models import DEFERRED, Model
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


_layout: Layout | None = None


def layout() -> Layout:
    """The :class:`Layout` of the configured tenant model (cached until a setting changes)."""
    global _layout
    if _layout is None:
        from hostguard.models import get_tenant_model
        from hostguard.store import tenant_fields

        model = get_tenant_model()
        opts = model._meta
        names = ("slug", "name", "deployment", "is_active", *tenant_fields())
        _layout = Layout(
            model,
            router.db_for_read(model),
            (opts.pk.attname, *(opts.get_field(name).attname for name in names)),  # type: ignore[union-attr]
        )
    return _layout


class LazyTenant:
    """``request.tenant`` until a view first uses it; then it *becomes* the tenant.

    Making the instance costs about as much as a fiftieth of an allowed request, so it
    is made only when a view uses the tenant. From then on this very object is an
    instance of the tenant model (its class and attributes are the instance's), so
    reading a field costs what it costs on any instance: no proxy in between. Before
    that, everything a view can do with it (read or set an attribute, compare, hash,
    print, copy, pickle) makes the instance first; ``isinstance()`` answers for the
    class it will become.
    """

    def __init__(self, snapshot: Snapshot | None, tenant_id: int) -> None:
        self.__dict__["_hostguard_source"] = (snapshot, tenant_id)

    def __getattribute__(self, name: str) -> Any:
        # Only until the object has become the instance: from then on its class is the model.
        if name == "__dict__":
            return _DICT(self, name)
        if name == "__class__":
            return layout().model
        _become(self)
        return getattr(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        _become(self)
        setattr(self, name, value)

    def __delattr__(self, name: str) -> None:
        _become(self)
        delattr(self, name)

    def __eq__(self, other: object) -> bool:
        _become(self)
        return bool(self == other)

    def __hash__(self) -> int:
        _become(self)
        return hash(self)

    def __str__(self) -> str:
        _become(self)
        return str(self)

    def __repr__(self) -> str:
        _become(self)
        return repr(self)

    def __dir__(self) -> list[str]:
        _become(self)
        return dir(self)

    def __reduce_ex__(self, protocol: Any) -> Any:
        _become(self)
        return self.__reduce_ex__(protocol)


def _become(pending: LazyTenant) -> None:
    namespace = _DICT(pending, "__dict__")
    snapshot, tenant_id = namespace["_hostguard_source"]
    shape = layout()
    template = _template(snapshot, tenant_id, shape)
    if template is None:
        # A tenant the snapshot lacks (a report-mode request for a row deleted meanwhile):
        # read from the database, as before snapshots carried tenants.
        loaded = shape.model._default_manager.select_related("deployment").get(pk=tenant_id)
        del namespace["_hostguard_source"]
        namespace.update(loaded.__dict__)
        _CLASS.__set__(pending, type(loaded))
    else:
        del namespace["_hostguard_source"]
        _make(pending, shape, template)


# object's own __class__ setter and attribute lookup, which LazyTenant's hide.
_CLASS: Any = object.__dict__["__class__"]
_DICT = object.__getattribute__


def tenant_from_snapshot(snapshot: Snapshot | None, tenant_id: int) -> Any:
    """A new instance of the tenant model for ``tenant_id``, from ``snapshot``'s values
    (from the database when the snapshot lacks it)."""
    shape = layout()
    template = _template(snapshot, tenant_id, shape)
    if template is None:
        return shape.model._default_manager.select_related("deployment").get(pk=tenant_id)
    return _make(shape.model.__new__(shape.model), shape, template)


class _Template(NamedTuple):
    """A tenant's attribute values as its instances start, and the deployment names its
    ``deployment`` is made from."""

    tenant: dict[str, Any]
    deployments: dict[int, str]


# The templates of the snapshot requests last asked for: snapshots are immutable, so a
# tenant's values are worked out once per snapshot, not once per request.
_templates: tuple[Snapshot | None, dict[int, _Template | None]] = (None, {})
_TEMPLATES_SIZE = 4096


def _template(snapshot: Snapshot | None, tenant_id: int, shape: Layout) -> _Template | None:
    global _templates
    seen_for, templates = _templates
    if seen_for is not snapshot or len(templates) >= _TEMPLATES_SIZE:
        templates = {}
        _templates = (snapshot, templates)
    if tenant_id in templates:
        return templates[tenant_id]
    template = templates[tenant_id] = _new_template(snapshot, tenant_id, shape)
    return template


def _new_template(snapshot: Snapshot | None, tenant_id: int, shape: Layout) -> _Template | None:
    record = None if snapshot is None else snapshot.tenant(tenant_id)
    if record is None:
        return None
    values = (tenant_id, record.slug, record.name, record.deployment_id, record.active, *record.extra)
    if len(values) != len(shape.attnames):
        # HOSTGUARD_TENANT_FIELDS changed after this snapshot was read: its extra values
        # would land on the wrong fields, so leave them deferred.
        values = values[:5]
    return _Template(dict(zip(shape.attnames, values, strict=False)), snapshot.deployments)  # type: ignore[union-attr]


def _make(obj: Any, shape: Layout, template: _Template) -> Any:
    return fill(obj, shape.model, shape.db, template.tenant, template.deployments)


def fill(
    obj: Any, model: type[Model], db: str, values: dict[str, Any], deployments: dict[int, str] | None = None
) -> Any:
    """Make ``obj`` what ``model.from_db(db, …)`` makes with only ``values`` loaded
    (attribute name → value; every other field deferred), and return it.

    Django's ``from_db()`` goes through ``Model.__init__``, which costs as much as the
    rest of an allowed request; this does what it does for a model's own fields —
    ``pre_init``, the state (not adding, read from ``db``), the values, ``post_init`` —
    without the work for arguments it never gets. ``obj`` is a bare ``model.__new__()``
    or a :class:`LazyTenant`, which becomes an instance of ``model`` here. A tenant
    gets the snapshot's ``deployments`` names too, which its ``deployment`` is made
    from when first read. (Pinned by tests/test_request_tenant.py against ``from_db()``.)
    """
    signals = bool(pre_init.receivers or post_init.receivers)
    if signals and pre_init.has_listeners(model):
        args = [values.get(field.attname, DEFERRED) for field in model._meta.concrete_fields]
        pre_init.send(sender=model, args=args, kwargs={})
    state = ModelState()
    # from_db() marks the state after post_init; with no receiver, nobody sees the order.
    state.__dict__ = {} if signals else {"adding": False, "db": db}
    if deployments is not None:
        state.hostguard_deployments = deployments  # type: ignore[attr-defined]
    namespace = obj.__dict__
    namespace["_state"] = state
    namespace.update(values)
    if type(obj) is not model:
        _CLASS.__set__(obj, model)
    if signals:
        if post_init.has_listeners(model):
            post_init.send(sender=model, instance=obj)
        state.adding = False
        state.db = db
    return obj


def _clear(*, setting: str, **kwargs: Any) -> None:
    global _layout, _templates
    if setting.startswith("HOSTGUARD_") or setting == "DATABASE_ROUTERS":
        _layout = None
        _templates = (None, {})
    if setting == "HOSTGUARD_TENANT_MODEL":
        # Which model is swapped out decides the relations Django caches (reverse
        # accessors, cascades): forget them, as Django does when AUTH_USER_MODEL changes.
        apps.clear_cache()


setting_changed.connect(_clear, dispatch_uid="hostguard.tenants.layout")
