"""How every write to the policy's rows is recorded: the base queryset and model of
deployments, tenants and authorities, and the signal handlers that name what a write
touched (an authority's old host read from the database, in the writer's transaction).

Every write through the ORM — ``save()``, ``delete()``, and the queryset's
``update()``, ``bulk_create()``, ``bulk_update()`` and ``delete()`` — sends its changes
(:mod:`hostguard.changes`) in the same transaction as the write.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from django.apps import apps as django_apps
from django.db import models, router, transaction

from hostguard import changes
from hostguard.changes import AUTHORITY, LARGE_CHANGE, Change, everything


class PolicyQuerySet(models.QuerySet[Any]):
    """A queryset whose bulk writes, which send no model signals, still reach the policy.

    Each write names the rows it touches (and, for authorities, the hosts they were
    stored under), so that every process can apply just that change; the write and
    its record commit together (one transaction, also in autocommit).
    """

    def update(self, **kwargs: Any) -> int:
        kind = self.model.policy_kind
        moved = kind == AUTHORITY and "host" in kwargs
        with transaction.atomic(using=self.db, savepoint=False):
            # The rows named in the change log are exactly the rows updated: locked
            # while this transaction lasts, so no one else changes them in between.
            locked = self.select_for_update()
            rows = list(locked.values_list("pk", "host") if moved else locked.values_list("pk", flat=True))
            if not rows:
                return 0
            if len(rows) > LARGE_CHANGE:
                count = super().update(**kwargs)
                changes.send(self.db, everything())
                return count
            pks = [row[0] for row in rows] if moved else rows
            count = 0
            for start in range(0, len(pks), _CHUNK):
                chunk = pks[start : start + _CHUNK]
                rows_of = self.model._base_manager.using(self.db).filter(pk__in=chunk)
                count += models.QuerySet.update(rows_of, **kwargs)
            if moved:
                changes.send(self.db, [Change(kind, pk, host) for pk, host in rows])
            else:
                changes.send(self.db, [Change(kind, pk) for pk in pks])
            return count

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[Any]:
        with transaction.atomic(using=self.db, savepoint=False):
            created = super().bulk_create(objs, *args, **kwargs)
            if created:
                kind = self.model.policy_kind
                if kwargs.get("update_conflicts") or any(obj.pk is None for obj in created):
                    # Rows overwritten in place (their old hosts unknown), or a backend
                    # that returns no ids: every process reads everything again.
                    changes.send(self.db, everything())
                else:
                    changes.send(self.db, [Change(kind, obj.pk) for obj in created])
            return created

    def bulk_update(self, objs: Any, *args: Any, **kwargs: Any) -> int:
        # Django's bulk_update calls update() once per batch: record one change.
        with transaction.atomic(using=self.db, savepoint=False), changes.batch():
            return super().bulk_update(objs, *args, **kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        # One change for every row the delete cascades to, not one per row; the hosts
        # of the authorities it removes are read (and locked) in one query.
        # (The contexts are entered in order: the hosts are read inside the transaction.)
        with (
            transaction.atomic(using=self.db, savepoint=False),
            changes.batch(),
            _deleting(_authorities_of(self, self.db)),
        ):
            return super().delete()


class PolicyModel(models.Model):
    """A model whose rows make up the policy: every write is recorded as a change,
    in the same transaction as the write."""

    #: What the change log calls a row of this model.
    policy_kind: ClassVar[str]

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        with transaction.atomic(using=using, savepoint=False):
            super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        queryset = type(self)._base_manager.using(using).filter(pk=self.pk)
        with (
            transaction.atomic(using=using, savepoint=False),
            changes.batch(),
            _deleting(_authorities_of(queryset, using)),
        ):
            return super().delete(*args, **kwargs)


_deleted_hosts = threading.local()


def _authorities_of(queryset: models.QuerySet[Any], using: str) -> models.QuerySet[Any]:
    """The authorities a delete of ``queryset`` removes: its own rows, or its tenants'."""
    model = queryset.model
    authority: type[models.Model] = django_apps.get_model("hostguard", "Authority")
    if model is authority:
        return queryset
    rows: models.QuerySet[Any] = authority._base_manager.using(using)
    if model is authority._meta.get_field("tenant").related_model:
        return rows.filter(tenant__in=queryset.values("pk"))
    return rows.none()


@contextmanager
def _deleting(authorities: models.QuerySet[Any]) -> Iterator[None]:
    """Read (and lock) the hosts of the authorities a delete removes, for the change log."""
    known: dict[Any, str] = getattr(_deleted_hosts, "known", {})
    previous = dict(known)
    known.update(authorities.select_for_update().values_list("pk", "host"))
    _deleted_hosts.known = known
    try:
        yield
    finally:
        _deleted_hosts.known = previous


#: Ids per ``UPDATE … WHERE id IN (…)``.
_CHUNK = 500


def capture_host(sender: type[models.Model], instance: Any, using: str, **kwargs: Any) -> None:
    """pre_save / pre_delete of an authority: where the database has it now (read and
    locked in the writer's transaction), so its change can say which host it leaves."""
    instance._hostguard_stored_host = None
    if instance.pk is None:
        return
    known = getattr(_deleted_hosts, "known", {})
    if instance.pk in known:
        stored: str | None = known[instance.pk]
    else:
        # Not what the instance says: it may have been read long ago, or never.
        rows = sender._base_manager.using(using).select_for_update().filter(pk=instance.pk)
        stored = rows.values_list("host", flat=True).first()
    instance._hostguard_stored_host = stored


def record_save(sender: type[PolicyModel], instance: PolicyModel, using: str, **kwargs: Any) -> None:
    """post_save: the row changed; an authority also says which host it was stored under."""
    stored = getattr(instance, "_hostguard_stored_host", None)
    current = instance.__dict__.get("host")
    old_host = stored if stored and stored != current else ""
    changes.send(using, [Change(sender.policy_kind, instance.pk, old_host)])


def record_delete(sender: type[PolicyModel], instance: PolicyModel, using: str, **kwargs: Any) -> None:
    """post_delete: the row is gone; an authority names the host it was stored under."""
    old_host = getattr(instance, "_hostguard_stored_host", None) or ""
    changes.send(using, [Change(sender.policy_kind, instance.pk, old_host)])
