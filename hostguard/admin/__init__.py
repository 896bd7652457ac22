"""hostguard's admin: one module per concern, all registered on import.

:class:`TenantAdmin`, :class:`AuthorityInline` and :func:`move_to_deployment` are for
a site whose tenant model is its own (docs/tenant-model.md).
"""

from django.core.exceptions import ImproperlyConfigured

from hostguard.checks.tenant import not_a_model
from hostguard.models import Authority, tenant_model_label

if isinstance(Authority._meta.get_field("tenant").related_model, str):
    # HOSTGUARD_TENANT_MODEL names a model its (installed) app does not have: no admin
    # form could choose a tenant. Say so as the system check would, not as a form error.
    _error = not_a_model(tenant_model_label())
    raise ImproperlyConfigured("%s %s" % (_error.msg, _error.hint))

from hostguard.admin import audit as audit
from hostguard.admin import tenancy as tenancy
from hostguard.admin import tenants as tenants
from hostguard.admin.tenants import AuthorityInline, TenantAdmin, move_to_deployment

__all__ = ["AuthorityInline", "TenantAdmin", "audit", "move_to_deployment", "tenancy", "tenants"]
