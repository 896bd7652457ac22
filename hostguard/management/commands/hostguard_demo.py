"""``manage.py hostguard_demo``: the demo's deployments, tenants and hosts (``make run``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from hostguard.conf import conf
from hostguard.transfer import TransferError, import_policy

DEFAULT_DEPLOYMENT = "local"


def demo_data(here: str) -> dict[str, Any]:
    """The demo in the import format: one tenant per verdict worth trying."""
    elsewhere = "remote" if here != "remote" else "remote-2"
    return {
        "deployments": [
            {"name": here, "description": "This demo process (HOSTGUARD_DEPLOYMENT)."},
            {"name": elsewhere, "description": "Another fleet: its tenants get 421 here."},
        ],
        "tenants": [
            {
                "slug": "acme",
                "name": "Acme Corp",
                "deployment": here,
                "active": True,
                "authorities": [
                    "acme.localhost",
                    "*.acme.localhost",
                    "bücher.localhost",
                    "https://shop.acme.localhost:8443",
                ],
            },
            {
                "slug": "globex",
                "name": "Globex",
                "deployment": elsewhere,
                "active": True,
                "authorities": ["globex.localhost"],
            },
            {
                "slug": "initech",
                "name": "Initech",
                "deployment": here,
                "active": False,
                "authorities": ["initech.localhost"],
            },
        ],
    }


class Command(BaseCommand):
    help = (
        "Load the demo data: deployments for this process (HOSTGUARD_DEPLOYMENT) and a remote one; "
        "tenant acme served here, globex served remotely, initech suspended. Only creates what is "
        "missing, so running it again changes nothing and keeps whatever you edited in the admin."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would be created, then roll back: nothing is written."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        here = conf.DEPLOYMENT or DEFAULT_DEPLOYMENT
        try:
            result = import_policy(demo_data(here), keep_existing=True, dry_run=options["dry_run"])
        except TransferError as exc:
            raise CommandError(exc.describe()) from None
        if options["verbosity"] >= 2 or result.dry_run:
            for change in result.changes:
                self.stdout.write("  " + change)
        if options["verbosity"] < 1 and not result.dry_run:
            return
        if result.dry_run:
            self.stdout.write(self.style.WARNING(_("Dry run: nothing was written.")))
        elif result.changed:
            self.stdout.write(
                self.style.SUCCESS(
                    _(
                        "Demo data loaded for deployment %(deployment)s: %(deployments)d deployments, "
                        "%(tenants)d tenants and %(authorities)d authorities created."
                    )
                    % {
                        "deployment": here,
                        "deployments": result.deployments.created,
                        "tenants": result.tenants.created,
                        "authorities": result.authorities.created,
                    }
                )
            )
        else:
            self.stdout.write(self.style.SUCCESS(_("Demo data already present: nothing changed.")))
