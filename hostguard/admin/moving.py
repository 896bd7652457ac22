"""The tenants' "Move to deployment…" action: choose, review the hosts that change hands, confirm."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin import ModelAdmin, helpers
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from hostguard.admin import lockout
from hostguard.admin.forms import MoveTenantsForm
from hostguard.models import AbstractTenant, Authority, Deployment
from hostguard.policy import policy

#: How many hosts the confirmation page lists before summarising the rest.
MOVE_LIST_LIMIT = 500


def move_to_deployment(
    model_admin: ModelAdmin, request: HttpRequest, queryset: QuerySet[AbstractTenant]
) -> HttpResponse | None:
    selected = list(queryset.select_related("deployment"))
    form = MoveTenantsForm(request.POST if "deployment" in request.POST else None, tenants=selected)
    context: dict[str, Any] = {
        **model_admin.admin_site.each_context(request),
        "title": _("Move tenants to another deployment"),
        "subtitle": None,
        "opts": model_admin.opts,
        "form": form,
        "tenants": selected,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "media": model_admin.media + form.media,
    }
    if form.is_bound and form.is_valid():
        target: Deployment = form.cleaned_data["deployment"]
        moving = [tenant for tenant in selected if tenant.deployment_id != target.pk]
        staying = [tenant for tenant in selected if tenant.deployment_id == target.pk]
        ids = [tenant.pk for tenant in moving]
        refusal = lockout.refusal(request, lockout.update_tenants(ids, deployment=(target.pk, target.name)))
        if request.POST.get("confirm") == "yes":
            if refusal:
                model_admin.message_user(request, refusal, messages.ERROR)
                return None
            move(model_admin, request, moving, target)
            return None
        hosts = Authority.objects.filter(tenant__in=ids).select_related("tenant__deployment")
        context.update(
            target=target,
            moving=moving,
            staying=staying,
            hosts=list(hosts.order_by("tenant__name", "host", "port", "scheme")[:MOVE_LIST_LIMIT]),
            host_total=hosts.count(),
            host_limit=MOVE_LIST_LIMIT,
            refusal=refusal,
        )
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/hostguard/tenant/move_to_deployment.html", context)


def move(model_admin: ModelAdmin, request: HttpRequest, moving: list[AbstractTenant], target: Deployment) -> None:
    user_id: Any = request.user.pk
    with transaction.atomic(), policy.batch():
        count = (
            model_admin.model._default_manager.filter(pk__in=[t.pk for t in moving])
            .exclude(deployment=target)
            .update(deployment=target)
        )
        for tenant in moving:
            message = gettext("Moved from deployment %(old)s to %(new)s.") % {
                "old": tenant.deployment.name,
                "new": target.name,
            }
            LogEntry.objects.log_actions(user_id, [tenant], CHANGE, change_message=message)
    hosts = Authority.objects.filter(tenant__in=moving).count()
    model_admin.message_user(
        request,
        ngettext(
            "Moved %(count)d tenant (%(hosts)d hosts) to the deployment %(deployment)s.",
            "Moved %(count)d tenants (%(hosts)d hosts) to the deployment %(deployment)s.",
            count,
        )
        % {"count": count, "hosts": hosts, "deployment": target.name},
        messages.SUCCESS,
    )
