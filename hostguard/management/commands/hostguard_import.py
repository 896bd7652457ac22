"""``manage.py hostguard_import FILE``: load deployments, tenants and authorities from JSON.

``--from-allowed-hosts TENANT`` instead adopts the site's ``ALLOWED_HOSTS`` as that
tenant's authorities, so moving from Django's setting to hostguard is one command.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import router
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from hostguard.models import Authority
from hostguard.transfer import (
    SHARED_NAMES_FLAG,
    ImportResult,
    TransferError,
    allowed_hosts_document,
    import_policy,
    read_document,
)


class Command(BaseCommand):
    help = (
        "Create or update deployments, tenants and their authorities from a JSON file "
        "(the format hostguard_export writes). Idempotent and all-or-nothing: every entry is "
        "checked first, and on any problem nothing is written. Running the same file twice "
        "changes nothing the second time. A host name belongs to one tenant: a new claim on a name "
        "another tenant holds is refused unless --allow-shared-names is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", metavar="FILE", nargs="?", help="The JSON file to import; - reads standard input.")
        parser.add_argument(
            "--from-allowed-hosts",
            metavar="TENANT",
            help=(
                "Instead of a file, adopt the site's ALLOWED_HOSTS as the authorities of the tenant with "
                "this slug, created on this deployment if missing: .example.com becomes example.com and "
                "*.example.com, '*' is skipped. Then set ALLOWED_HOSTS = ['*']."
            ),
        )
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
        parser.add_argument(
            SHARED_NAMES_FLAG,
            action="store_true",
            help=(
                "Accept claims on host names another tenant holds: the same host on another port or scheme, "
                "a name under its wildcard, a wildcard over its names. Without it each such claim is an "
                "error naming the entry and the other tenant, and nothing is imported."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = options["from_allowed_hosts"]
        if (options["file"] is None) == (tenant is None):
            raise CommandError(_("Give either FILE or --from-allowed-hosts TENANT."))
        if tenant is not None and options["prune"]:
            raise CommandError(_("--prune works only with a FILE: --from-allowed-hosts never deletes anything."))
        notes: list[str] = []
        try:
            if tenant is None:
                data = read_document(options["file"])
            else:
                patterns = [str(pattern) for pattern in settings.ALLOWED_HOSTS]
                data, notes = allowed_hosts_document(tenant, patterns, router.db_for_write(Authority))
            result = import_policy(
                data,
                prune=options["prune"],
                dry_run=options["dry_run"],
                allow_shared_names=options["allow_shared_names"],
            )
        except TransferError as exc:
            raise CommandError(exc.describe()) from None
        for note in notes:
            self.stdout.write(self.style.WARNING(note))
        report(self, result, verbosity=options["verbosity"])
        if tenant is not None and not result.dry_run and "*" not in settings.ALLOWED_HOSTS:
            self.stdout.write(
                _("Next: set ALLOWED_HOSTS = ['*'] in your settings; hostguard now decides which hosts are served.")
            )


def report(command: BaseCommand, result: ImportResult, *, verbosity: int) -> None:
    """Print what an import did: each change (dry run or -v 2), then the counts."""
    if result.dry_run or verbosity >= 2:
        for change in result.changes:
            command.stdout.write("  " + change)
    for shared in result.shared_names:
        command.stdout.write(command.style.WARNING(_("Shared host names (allowed): %(what)s") % {"what": shared}))
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
