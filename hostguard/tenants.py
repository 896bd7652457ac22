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


class LazyTenant:
    """``request.tenant`` until a view first uses it; then it *becomes* the tenant.

    Making the instance costs about as much as a fiftieth of an allowed request, so it
    is made only when a view reads the tenant. From then on this very object is an
    instance of the tenant model (its class and attributes are the instance's), so
    reading a field costs what it costs on any instance: no proxy in between. Before
    that, everything a view can do with it (read or set an attribute, compare, hash,
    print, copy, pickle, ``isinstance``) makes the instance first.
    """

    def __init__(self, snapshot: Snapshot | None, tenant_id: int) -> None:
        # Past __setattr__, which would make the instance.
        self.__dict__["_hostguard_source"] = (snapshot, tenant_id)

    def _become(self) -> None:
        snapshot, tenant_id = self.__dict__["_hostguard_source"]
        shape = layout()
        template = _template(snapshot, tenant_id, shape)
        if template is None:
            # A tenant the snapshot lacks (a report-mode request for a row deleted
            # meanwhile): read from the database, as before snapshots carried tenants.
            loaded = shape.model._default_manager.select_related("deployment").get(pk=tenant_id)
            del self.__dict__["_hostguard_source"]
            self.__dict__.update(loaded.__dict__)
            _CLASS.__set__(self, type(loaded))
            return
        del self.__dict__["_hostguard_source"]
        _make(self, shape, template)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        # What isinstance() asks when type() does not answer: the class it will become.
        return layout().model

    def __getattr__(self, name: str) -> Any:
        if name == "_hostguard_source":
            raise AttributeError(name)  # copy and pickle probe for it on a bare object
        self._become()
        return getattr(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._become()
        setattr(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._become()
        delattr(self, name)

    def __eq__(self, other: object) -> bool:
        self._become()
        return bool(self == other)

    def __hash__(self) -> int:
        self._become()
        return hash(self)

    def __str__(self) -> str:
        self._become()
        return str(self)

    def __repr__(self) -> str:
        self._become()
        return repr(self)

    def __dir__(self) -> list[str]:
        self._become()
        return dir(self)

    def __reduce_ex__(self, protocol: Any) -> Any:
        self._become()
        return self.__reduce_ex__(protocol)


# object's own __class__ setter: LazyTenant's __class__ property hides it.
_CLASS: Any = object.__dict__["__class__"]


def tenant_from_snapshot(snapshot: Snapshot | None, tenant_id: int) -> Any:
    """A new instance of the tenant model for ``tenant_id``, from ``snapshot``'s values
    (from the database when the snapshot lacks it)."""
    shape = layout()
    template = _template(snapshot, tenant_id, shape)
    if template is None:
        return shape.model._default_manager.select_related("deployment").get(pk=tenant_id)
    return _make(shape.model.__new__(shape.model), shape, template)


class _Template(NamedTuple):
    """A tenant's attribute values as its instances start, and its deployment's."""

    tenant: dict[str, Any]
    deployment: dict[str, Any] | None


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
    name = snapshot.deployments.get(record.deployment_id)  # type: ignore[union-attr]
    deployment = None if name is None else {"id": record.deployment_id, "name": name}
    return _Template(dict(zip(shape.attnames, values, strict=False)), deployment)


def _make(obj: Any, shape: Layout, template: _Template) -> Any:
    fields_cache = None
    if template.deployment is not None:
        model = shape.deployment_model
        deployment = fill(model.__new__(model), model, shape.deployment_db, template.deployment)
        fields_cache = {shape.deployment_cache: deployment}
    return fill(obj, shape.model, shape.db, template.tenant, fields_cache)


def fill(
    obj: Any, model: type[Model], db: str, values: dict[str, Any], fields_cache: dict[str, Any] | None = None
) -> Any:
    """Make ``obj`` what ``model.from_db(db, …)`` makes with only ``values`` loaded
    (attribute name → value; every other field deferred), and return it.

    Django's ``from_db()`` goes through ``Model.__init__``, which costs as much as the
    rest of an allowed request; this does what it does for a model's own fields —
    ``pre_init``, the state (not adding, read from ``db``), the values, ``post_init`` —
    without the work for arguments it never gets. ``obj`` is a bare ``model.__new__()``
    or a :class:`LazyTenant`, which becomes an instance of ``model`` here;
    ``fields_cache`` holds related instances already made. (Pinned by
    tests/test_request_tenant.py against ``from_db()``.)
    """
    signals = bool(pre_init.receivers or post_init.receivers)
    if signals and pre_init.has_listeners(model):
        args = [values.get(field.attname, DEFERRED) for field in model._meta.concrete_fields]
        pre_init.send(sender=model, args=args, kwargs={})
    state = ModelState()
    if fields_cache is not None:
        state.fields_cache = fields_cache
    namespace = obj.__dict__
    namespace["_state"] = state
    namespace.update(values)
    if type(obj) is not model:
        _CLASS.__set__(obj, model)
    if signals and post_init.has_listeners(model):
        post_init.send(sender=model, instance=obj)
    state.adding = False
    state.db = db
    return obj


def _clear(*, setting: str, **kwargs: Any) -> None:
    global _layout, _templates
    if setting.startswith("HOSTGUARD_") or setting == "DATABASE_ROUTERS":
        _layout = None
        _templates = (None, {})


setting_changed.connect(_clear, dispatch_uid="hostguard.tenants.layout")
