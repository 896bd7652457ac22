from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class HostGuardConfig(AppConfig):
    name = "hostguard"
    verbose_name = _("Host guard")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from hostguard import checks as hostguard_checks
        from hostguard.models import Authority, Deployment, Tenant
        from hostguard.policy import policy

        def policy_changed(sender: object, using: str, **kwargs: object) -> None:
            policy.changed(using)

        for model in (Deployment, Tenant, Authority):
            post_save.connect(policy_changed, sender=model, dispatch_uid=f"hostguard.save.{model.__name__}", weak=False)
            post_delete.connect(
                policy_changed, sender=model, dispatch_uid=f"hostguard.delete.{model.__name__}", weak=False
            )
        hostguard_checks.register()
