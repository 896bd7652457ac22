"""What a write to the policy changed: the vocabulary the models speak and the policy hears.

The models send :data:`rows_changed` from every write path (model signals, queryset
``update()``, ``bulk_create()``, ``bulk_update()``); :mod:`hostguard.policy` listens
(wired in ``HostGuardConfig.ready()``) and records the changes in the writer's
transaction. Neither side imports the other.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

from django.dispatch import Signal

#: What a change log row names.
AUTHORITY = "authority"
TENANT = "tenant"
DEPLOYMENT = "deployment"
#: Something changed that no row names (raw SQL, a very large batch): rebuild in full.
EVERYTHING = "all"


class Change(NamedTuple):
    kind: str
    object_id: int | None = None
    #: The host pattern an authority was stored under before the change, if it moved.
    old_host: str = ""


#: Sent with ``using`` (the database alias), ``changes`` (a list of :class:`Change`) and
#: ``failed`` (see :func:`batch`), inside the writer's transaction, after the write.
rows_changed = Signal()


def everything() -> list[Change]:
    return [Change(EVERYTHING)]


#: A write that names more objects than this is recorded as one EVERYTHING change.
LARGE_CHANGE = 10_000

_local = threading.local()


def send(using: str, changes: Iterable[Change]) -> None:
    """Tell the policy that ``changes`` were written through ``using`` (in its transaction)."""
    pending: dict[str, list[Change]] | None = getattr(_local, "batch", None)
    if pending is not None:
        pending.setdefault(using, []).extend(changes)
        return
    rows_changed.send(sender=Change, using=using, changes=list(changes), failed=False)


@contextmanager
def batch() -> Iterator[None]:
    """Send the changes of every write in the block as one, when the outermost block ends.

    ``failed`` tells the receiver the block raised: its transaction may be aborted
    (PostgreSQL refuses any further statement), so the changes must be recorded only
    if it commits anyway.
    """
    outer = getattr(_local, "batch", None) is None
    if outer:
        _local.batch = {}
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        if outer:
            pending: dict[str, list[Change]] = _local.batch
            _local.batch = None
            for using, changes in pending.items():
                if changes:
                    rows_changed.send(sender=Change, using=using, changes=changes, failed=failed)
