"""List filters for the authority admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _


class HostKindFilter(admin.SimpleListFilter):
    title = _("kind of host")
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("name", _("host name")),
            ("wildcard", _("wildcard (*.)")),
            ("ip", _("IP address")),
            ("idn", _("internationalised (punycode)")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        ip = Q(host__startswith="[") | Q(host__regex=r"^[0-9.]+$")
        value = self.value()
        if value == "wildcard":
            return queryset.filter(host__startswith="*.")
        if value == "ip":
            return queryset.filter(ip)
        if value == "name":
            return queryset.exclude(ip).exclude(host__startswith="*.")
        if value == "idn":
            return queryset.filter(host__contains="xn--")
        return queryset


class PortFilter(admin.SimpleListFilter):
    title = _("port")
    parameter_name = "port"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("any", _("any port")), ("explicit", _("one port"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() == "any":
            return queryset.filter(port__isnull=True)
        if self.value() == "explicit":
            return queryset.filter(port__isnull=False)
        return queryset


class TenantActiveFilter(admin.SimpleListFilter):
    title = _("tenant active")
    parameter_name = "tenant_active"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("1", _("active tenant")), ("0", _("suspended tenant"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() in ("0", "1"):
            return queryset.filter(tenant__is_active=self.value() == "1")
        return queryset
