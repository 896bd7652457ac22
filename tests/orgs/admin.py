from __future__ import annotations

from django.contrib import admin

from hostguard.admin import TenantAdmin
from tests.orgs.models import Organization


@admin.register(Organization)
class OrganizationAdmin(TenantAdmin):
    list_display = [*TenantAdmin.list_display, "plan"]
