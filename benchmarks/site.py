"""The benchmark site: a trivial view, and the gates hostguard is compared with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import include, path

from hostguard.views import tls_permission


def ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok\n", content_type="text/plain")


def tenant(request: HttpRequest) -> HttpResponse:
    """``ok`` once it has read its tenant's pk, slug and name, as most views of a multi-tenant
    site do: the difference between the two is what reading ``request.tenant`` costs."""
    current = request.tenant  # type: ignore[attr-defined]
    if None in (current.pk, current.slug, current.name):
        raise Http404("No tenant")
    return HttpResponse(b"ok\n", content_type="text/plain")


urlpatterns = [
    path("", ok),
    path("_hostguard/", include("hostguard.urls")),
    # The TLS permission endpoint's route with a view that does nothing, as deep in the
    # URLconf: what the route costs, without the endpoint's own work.
    path("_floor/", include([path("tls-permission", ok)])),
    # The same view mounted directly, without include(): one resolver level less.
    path("_direct/tls-permission", tls_permission),
]


class ORMGateMiddleware:
    """One database query per request, the way django-tenants resolves a tenant.

    An unknown host raises ``Http404``, which Django turns into its 404 page.
    """

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        from hostguard.models import Authority

        host = request.get_host().split(":")[0].lower()
        authority = Authority.objects.select_related("tenant").filter(host=host).first()
        if authority is None:
            raise Http404("No tenant for this host")
        request.tenant = authority.tenant  # type: ignore[attr-defined]
        return self.get_response(request)


class FloorMiddleware:
    """The cheapest rejection there is: a fixed response from the first middleware."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(b"Misdirected Request\n", status=421, content_type="text/plain")


class QuietFloorMiddleware(FloorMiddleware):
    """The floor without Django's "Misdirected Request" log line, which hostguard also skips."""

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = super().__call__(request)
        response._has_been_logged = True  # type: ignore[attr-defined]
        return response


#: The URLconf whose ``/`` is the ``tenant`` view.
TENANT_URLCONF = "benchmarks.site_tenant"
ORM_GATE = "benchmarks.site.ORMGateMiddleware"
FLOOR = "benchmarks.site.FloorMiddleware"
QUIET_FLOOR = "benchmarks.site.QuietFloorMiddleware"
HOSTGUARD = "hostguard.middleware.HostGuardMiddleware"
COMMON = "django.middleware.common.CommonMiddleware"
#: Where the benchmark site mounts hostguard's TLS permission endpoint (as the demo does).
TLS_PERMISSION = "/_hostguard/tls-permission"
TLS_ROUTE_FLOOR = "/_floor/tls-permission"
TLS_PERMISSION_DIRECT = "/_direct/tls-permission"
