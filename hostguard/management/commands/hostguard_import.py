"""``manage.py hostguard_import FILE``: load deployments, tenants and authorities from JSON."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from hostguard.transfer import ImportResult, TransferError, import_policy, read_document


class Command(BaseCommand):
    help = (
        "Create or update deployments, tenants and their authorities from a JSON file "
        "(the format hostguard_export writes). Idempotent and all-or-nothing: every entry is "
        "checked first, and on any problem nothing is written. Running the same file twice "
        "changes nothing the second time."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", metavar="FILE", help="The JSON file to import; - reads standard input.")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Check the file and list every change it would make, then roll back: nothing is written.",
        )
        parser.add_argument(
            "--prune",
            action="store_true",
            help=(
                "Also delete what the file does not list, so the database matches it exactly: tenants "
                "missing from the file (with all their authorities), authorities missing from a listed "
                "tenant's list, and deployments that are neither listed nor used by a tenant of the file "
                "(a deployment a tenant still needs is never deleted). Refused when the file has no "
                '"tenants" list. Try it with --dry-run first.'
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            data = read_document(options["file"])
            result = import_policy(data, prune=options["prune"], dry_run=options["dry_run"])
        except TransferError as exc:
            raise CommandError(exc.describe()) from None
        report(self, result, verbosity=options["verbosity"])


def report(command: BaseCommand, result: ImportResult, *, verbosity: int) -> None:
    """Print what an import did: each change (dry run or -v 2), then the counts."""
    if result.dry_run or verbosity >= 2:
        for change in result.changes:
            command.stdout.write("  " + change)
    if verbosity < 1:
        return
    for line in result.summary():
        command.stdout.write(line)
    if result.dry_run:
        command.stdout.write(command.style.WARNING(_("Dry run: nothing was written.")))
    elif result.changed:
        message = ngettext("Imported: %(count)d change.", "Imported: %(count)d changes.", result.changed)
        command.stdout.write(command.style.SUCCESS(message % {"count": result.changed}))
    else:
        command.stdout.write(command.style.SUCCESS(_("No changes: the database already matches the file.")))
