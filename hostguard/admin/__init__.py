"""hostguard's admin: one module per concern, all registered on import.

:class:`TenantAdmin`, :class:`AuthorityInline` and :func:`move_to_deployment` are for
a site whose tenant model is its own (docs/tenant-model.md).
"""

from hostguard.admin import audit as audit
from hostguard.admin import policy as policy
from hostguard.admin import tenants as tenants
from hostguard.admin.tenants import AuthorityInline, TenantAdmin, move_to_deployment

__all__ = ["AuthorityInline", "TenantAdmin", "audit", "move_to_deployment", "policy", "tenants"]
