import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from hostguard.policy import policy


def home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "home.html",
        {"tenant": getattr(request, "tenant", None), "deployment": settings.HOSTGUARD_DEPLOYMENT},
    )


def whoami(request: HttpRequest) -> JsonResponse:
    tenant = getattr(request, "tenant", None)
    return JsonResponse({"tenant": tenant.slug if tenant else None, "deployment": settings.HOSTGUARD_DEPLOYMENT})


def tenant(request: HttpRequest) -> JsonResponse:
    """The tenant this host belongs to, as hostguard hands it out: made from its snapshot, no query."""
    tenant = getattr(request, "tenant", None)
    if tenant is None:
        return JsonResponse({"tenant": None})
    return JsonResponse(
        {
            "tenant": {
                "id": tenant.pk,
                "slug": tenant.slug,
                "name": tenant.name,
                "active": tenant.is_active,
                "deployment": tenant.deployment.name,
            }
        }
    )


def ping(request: HttpRequest) -> JsonResponse:
    """Who answered, from hostguard's decision alone: no database query, even for the tenant."""
    decision = getattr(request, "hostguard", None)
    snapshot = policy.snapshot
    return JsonResponse(
        {
            "ok": True,
            "tenant": (decision.tenant_slug or None) if decision is not None else None,
            "deployment": settings.HOSTGUARD_DEPLOYMENT,
            "pid": os.getpid(),
            "policy_version": snapshot.version if snapshot is not None else None,
        }
    )


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")
