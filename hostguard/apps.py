from __future__ import annotations

import contextlib
from typing import Any

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class HostGuardConfig(AppConfig):
    name = "hostguard"
    verbose_name = _("Host guard")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.exceptions import ImproperlyConfigured
        from django.db.models.signals import post_delete, post_save, pre_delete, pre_save

        from hostguard import checks as hostguard_checks
        from hostguard import policy
        from hostguard.models import Authority, Deployment, capture_host, get_tenant_model, record_delete, record_save

        models: list[Any] = [Deployment, Authority]
        # A HOSTGUARD_TENANT_MODEL that names no model: the system check hostguard.E015 says so.
        with contextlib.suppress(ImproperlyConfigured):
            models.append(get_tenant_model())
        # Every write to the policy's rows is recorded as a change, in its transaction.
        for model in models:
            post_save.connect(record_save, sender=model, dispatch_uid=f"hostguard.save.{model.__name__}")
            post_delete.connect(record_delete, sender=model, dispatch_uid=f"hostguard.delete.{model.__name__}")
        # An authority's change names the host it leaves, read from the database.
        pre_save.connect(capture_host, sender=Authority, dispatch_uid="hostguard.capture.save")
        pre_delete.connect(capture_host, sender=Authority, dispatch_uid="hostguard.capture.delete")
        policy.connect()
        hostguard_checks.register()
