"""Claims on host names another tenant holds: the admin's "Claim it anyway" and its history entry.

The rule itself, and the queries, are :mod:`hostguard.claims`'. A form that finds shared
names refuses them with an error naming the other tenant and shows a "Claim it
anyway" checkbox; submitted ticked, the claim is saved and the admin history says
which names it shares.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib.admin.models import LogEntry
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from hostguard.claims import SharedNames, rule

CONFIRM_LABEL = _("Claim it anyway")
CONFIRM_HELP = _("Save the claim although another tenant holds some of its host names, as listed above.")


def confirm_field() -> forms.BooleanField:
    return forms.BooleanField(label=CONFIRM_LABEL, required=False, help_text=CONFIRM_HELP)


def refusal(shared: SharedNames) -> str:
    """The form error for a claim that shares names: who holds them, the rule, and the way out."""
    return " ".join(
        [
            shared.describe(),
            rule(),
            gettext("Tick “%(confirm)s” to save it all the same.") % {"confirm": CONFIRM_LABEL},
        ]
    )


def log_message(message: Any, confirmed: Iterable[SharedNames]) -> Any:
    """The admin history entry ``message`` (Django's list form or text), noting confirmed shared names."""
    notes = [gettext("Confirmed a claim on shared names: %(what)s") % {"what": s.describe()} for s in confirmed]
    if not notes:
        return message
    if isinstance(message, list):
        # Django renders its list form in the reader's language; text is stored as written.
        message = LogEntry(change_message=json.dumps(message)).get_change_message() if message else ""
    return " ".join(part for part in [str(message), *notes] if part)
