"""``manage.py hostguard_prune [--days N]``: apply the mismatch log's and the change log's retention."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from hostguard.audit import prune
from hostguard.conf import conf
from hostguard.store import prune_changes


class Command(BaseCommand):
    help = (
        "Delete host mismatch log rows last seen more than N days ago "
        "(default HOSTGUARD_AUDIT_RETENTION_DAYS; --days 0 deletes every row), and the policy's "
        "change-log rows older than --changes-older-than hours (24)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="Keep rows seen within this many days; 0 deletes all. Default: HOSTGUARD_AUDIT_RETENTION_DAYS.",
        )
        parser.add_argument("--batch-size", type=int, default=1000, help="Rows deleted per query (default 1000).")
        parser.add_argument(
            "--changes-older-than",
            type=float,
            default=24.0,
            metavar="HOURS",
            help="Delete the policy's change-log rows older than this many hours (default 24). A process whose "
            "version the log no longer reaches reads the whole policy once.",
        )

    def handle(self, *args: Any, days: int | None, batch_size: int, changes_older_than: float, **options: Any) -> None:
        if days is None:
            days = conf.AUDIT_RETENTION_DAYS
        if days < 0:
            raise CommandError(_("--days must be 0 or more, not %(days)d.") % {"days": days})
        if batch_size < 1:
            raise CommandError(_("--batch-size must be at least 1, not %(size)d.") % {"size": batch_size})
        if not changes_older_than >= 0:  # also refuses NaN
            raise CommandError(
                _("--changes-older-than must be 0 or more hours, not %(hours)s.") % {"hours": changes_older_than}
            )
        deleted = prune(days, batch_size=batch_size)
        if days:
            message = ngettext(
                "Deleted %(count)d host mismatch row last seen more than %(days)d days ago.",
                "Deleted %(count)d host mismatch rows last seen more than %(days)d days ago.",
                deleted,
            )
        else:
            message = ngettext(
                "Deleted %(count)d host mismatch row (all of them).",
                "Deleted %(count)d host mismatch rows (all of them).",
                deleted,
            )
        self.stdout.write(message % {"count": deleted, "days": days})
        changes = prune_changes(timedelta(hours=changes_older_than))
        self.stdout.write(
            ngettext(
                "Deleted %(count)d policy change-log row older than %(hours)g hours.",
                "Deleted %(count)d policy change-log rows older than %(hours)g hours.",
                changes,
            )
            % {"count": changes, "hours": changes_older_than}
        )
