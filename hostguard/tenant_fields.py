"""``HOSTGUARD_TENANT_FIELDS``: which of the tenant model's own fields the snapshot may
carry, checked — for the runtime (:func:`hostguard.store.tenant_fields`) and the
system checks alike."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hostguard.conf import InvalidSetting

#: Field types ``HOSTGUARD_TENANT_FIELDS`` may name: small values, each cheap to hold in
#: every process for every tenant (a ``CharField`` up to :data:`TENANT_FIELD_MAX_LENGTH`).
TENANT_FIELD_TYPES = frozenset(
    {
        "BigIntegerField",
        "BooleanField",
        "CharField",
        "DateField",
        "DateTimeField",
        "DecimalField",
        "DurationField",
        "FloatField",
        "GenericIPAddressField",
        "IntegerField",
        "PositiveBigIntegerField",
        "PositiveIntegerField",
        "PositiveSmallIntegerField",
        "SlugField",
        "SmallIntegerField",
        "TimeField",
        "UUIDField",
    }
)
TENANT_FIELD_MAX_LENGTH = 255
#: What the snapshot carries of every tenant anyway.
TENANT_BASE_FIELDS = ("slug", "name", "deployment", "is_active")


def parse_tenant_fields(model: Any, value: object) -> tuple[str, ...]:
    """``HOSTGUARD_TENANT_FIELDS``: names of ``model``'s own small, concrete, non-relation fields.

    Raises :class:`InvalidSetting` naming every entry that is not one (``entries``).
    """
    names = [value] if isinstance(value, str) else list(value) if isinstance(value, Iterable) else [value]
    fields: list[str] = []
    problems: list[str] = []
    bad: list[object] = []
    for name in names:
        problem = _tenant_field_problem(model, name)
        if problem is None and name in fields:
            problem = "%r is listed twice" % (name,)
        if problem is None:
            fields.append(str(name))
        else:
            problems.append(problem)
            bad.append(name)
    if bad:
        raise InvalidSetting("; ".join(problems) + ".", bad)
    return tuple(fields)


def _tenant_field_problem(model: Any, name: object) -> str | None:
    label = model._meta.label
    if not isinstance(name, str):
        return "%r is not a field name" % (name,)
    if name in TENANT_BASE_FIELDS or name in ("pk", model._meta.pk.name):
        return "%r is carried anyway" % name
    try:
        field = model._meta.get_field(name)
    except Exception:
        return "%s has no field %r" % (label, name)
    if field.is_relation:
        return "%s.%s is a relation (only the tenant's own values can be carried)" % (label, name)
    if not getattr(field, "concrete", False):
        return "%s.%s is not a column" % (label, name)
    kind = field.get_internal_type()
    if kind not in TENANT_FIELD_TYPES:
        return "%s.%s is a %s, which can be large (carry small values only)" % (label, name, kind)
    if kind in ("CharField", "SlugField") and (field.max_length or 10**9) > TENANT_FIELD_MAX_LENGTH:
        return "%s.%s holds up to %s characters (at most %d can be carried)" % (
            label,
            name,
            field.max_length or "unlimited",
            TENANT_FIELD_MAX_LENGTH,
        )
    return None
