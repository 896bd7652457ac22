"""Messages several admin pages show after a write."""

from __future__ import annotations

from django.utils.translation import gettext

from hostguard.conf import conf


def freshness_note() -> str:
    """How soon a saved change is served: in this process at once, in the others within the refresh interval."""
    return gettext(
        "The change is live in this process at once and in every other process within %(seconds)s seconds "
        "(HOSTGUARD_REFRESH_SECONDS)."
    ) % {"seconds": "%g" % conf.REFRESH_SECONDS}
