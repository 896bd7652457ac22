"""Admin for deployments, tenants and their authorities."""

from __future__ import annotations

from django.contrib import admin

from hostguard.models import Authority, Deployment, Tenant


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["name", "description"]
    search_fields = ["name", "description"]


class AuthorityInline(admin.TabularInline):
    model = Authority
    extra = 1
    fields = ["host", "port", "scheme", "is_active", "note"]


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "deployment", "is_active"]
    list_filter = ["deployment", "is_active"]
    search_fields = ["name", "slug", "authorities__host"]
    list_select_related = ["deployment"]
    inlines = [AuthorityInline]


@admin.register(Authority)
class AuthorityAdmin(admin.ModelAdmin):
    list_display = ["__str__", "tenant", "is_active"]
    list_filter = ["is_active", "scheme", "tenant__deployment"]
    search_fields = ["host", "tenant__name", "tenant__slug"]
    list_select_related = ["tenant"]
