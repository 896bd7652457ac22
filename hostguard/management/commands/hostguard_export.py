"""``manage.py hostguard_export``: write every deployment, tenant and authority as JSON."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from hostguard.transfer import count_exported, dump, export_policy


class Command(BaseCommand):
    help = (
        "Write all deployments, tenants and authorities as JSON in the format hostguard_import "
        "reads (UTF-8, indent 2, sorted, hosts in their stored punycode form). Importing the "
        "export restores everything exactly."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-o",
            "--output",
            metavar="FILE",
            help="Write to FILE (replaced in one step, only once the export is complete) instead of standard output.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        data = export_policy()
        text = dump(data)
        output: str | None = options["output"]
        if not output or output == "-":
            self.stdout.write(text, ending="")
            return
        write_atomically(output, text)
        if options["verbosity"] >= 1:
            deployments, tenants, authorities = count_exported(data)
            self.stdout.write(
                self.style.SUCCESS(
                    _(
                        "Exported %(deployments)d deployments, %(tenants)d tenants and "
                        "%(authorities)d authorities to %(path)s."
                    )
                    % {"deployments": deployments, "tenants": tenants, "authorities": authorities, "path": output}
                )
            )


def write_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader never sees a half-written file."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        handle, temporary = tempfile.mkstemp(prefix=".hostguard-export-", suffix=".json", dir=directory)
    except OSError as exc:
        raise CommandError(_("Cannot write %(path)s: %(error)s.") % {"path": path, "error": exc.strerror}) from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        # mkstemp makes the file private; give it the mode any new file would get.
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(temporary, 0o666 & ~mask)
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise CommandError(_("Cannot write %(path)s: %(error)s.") % {"path": path, "error": exc.strerror}) from None
