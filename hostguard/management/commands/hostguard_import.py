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

from hostguard.conf import conf
from hostguard.hosts import InvalidHost, is_ip, parse_authority
from hostguard.models import Authority, Deployment, Tenant
from hostguard.transfer import ImportResult, TransferError, import_policy, read_document


class Command(BaseCommand):
    help = (
        "Create or update deployments, tenants and their authorities from a JSON file "
        "(the format hostguard_export writes). Idempotent and all-or-nothing: every entry is "
        "checked first, and on any problem nothing is written. Running the same file twice "
        "changes nothing the second time."
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
            result = import_policy(data, prune=options["prune"], dry_run=options["dry_run"])
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


def allowed_hosts_document(slug: str, patterns: list[str], using: str) -> tuple[dict[str, Any], list[str]]:
    """An import document giving tenant ``slug`` the hosts ``patterns`` (ALLOWED_HOSTS syntax), and notes.

    ``.example.com`` becomes ``example.com`` and ``*.example.com``; ``*`` names no host
    and is skipped. A new tenant is created on this deployment; an existing one keeps
    its name, deployment and state, and its authorities keep their notes and state.
    A host that another tenant claims is refused, not taken. Raises :class:`TransferError`.
    """
    deployment = conf.DEPLOYMENT
    if not deployment:
        raise TransferError([_("HOSTGUARD_DEPLOYMENT is not set: set it to this deployment's name first.")])
    problems: list[str] = []
    notes: list[str] = []
    wanted: dict[tuple[str, int | None, str], str] = {}
    local: list[str] = []
    for pattern in patterns:
        text = str(pattern).strip()
        if text == "*":
            notes.append(_("Skipped '*': it lets every host in and names none."))
            continue
        candidates = [text[1:], "*" + text] if text.startswith(".") else [text]
        for candidate in candidates:
            try:
                spec = parse_authority(candidate)
            except InvalidHost as exc:
                problems.append(
                    _("ALLOWED_HOSTS entry '%(entry)s': %(error)s") % {"entry": pattern, "error": exc.message}
                )
                break
            wanted.setdefault((spec.host, spec.port, spec.scheme), str(spec))
            if "." not in spec.host or is_ip(spec.host):
                local.append(str(spec))
    if problems:
        raise TransferError(problems)
    if not wanted:
        if patterns:
            message = _(
                "ALLOWED_HOSTS is ['*'], which names no host to adopt: list the tenant's hosts in a file for "
                "hostguard_import, or run this before setting ALLOWED_HOSTS = ['*']."
            )
        else:
            message = _("ALLOWED_HOSTS is empty: there is no host to adopt.")
        raise TransferError([message])

    tenant = Tenant.objects.using(using).select_related("deployment").filter(slug=slug).first()
    existing = {
        (authority.host, authority.port, authority.scheme): authority
        for authority in Authority.objects.using(using)
        .select_related("tenant")
        .filter(host__in={host for host, _port, _scheme in wanted})
    }
    authorities: list[dict[str, Any]] = []
    for key, text in wanted.items():
        authority = existing.get(key)
        if authority is None:
            authorities.append({"authority": text, "note": _("adopted from ALLOWED_HOSTS")})
        elif tenant is not None and authority.tenant_id == tenant.pk:
            authorities.append({"authority": text, "active": authority.is_active, "note": authority.note})
        else:
            problems.append(
                _(
                    "'%(authority)s' is already claimed by the tenant “%(tenant)s”: remove it from ALLOWED_HOSTS "
                    "or move it in the admin first."
                )
                % {"authority": text, "tenant": authority.tenant.name}
            )
    if problems:
        raise TransferError(problems)

    document: dict[str, Any] = {"deployments": []}
    if tenant is None:
        if not Deployment.objects.using(using).filter(name=deployment).exists():
            document["deployments"].append({"name": deployment})
        entry = {"slug": slug, "name": slug, "deployment": deployment, "active": True}
    else:
        entry = {"slug": slug, "name": tenant.name, "deployment": tenant.deployment.name, "active": tenant.is_active}
        if tenant.deployment.name != deployment:
            notes.append(
                _(
                    "The tenant “%(tenant)s” is served by the deployment “%(other)s”, not this one (“%(here)s”): "
                    "its hosts get 421 here until you move it."
                )
                % {"tenant": tenant.name, "other": tenant.deployment.name, "here": deployment}
            )
    document["tenants"] = [{**entry, "authorities": authorities}]
    if local:
        notes.append(
            _(
                "%(hosts)s are kept as hosts of this tenant; hosts you only bootstrap or administer from belong in "
                "HOSTGUARD_ALWAYS_ALLOW instead."
            )
            % {"hosts": ", ".join(local)}
        )
    return document, notes
