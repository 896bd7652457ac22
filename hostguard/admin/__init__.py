"""hostguard's admin: one module per concern, all registered on import."""

from hostguard.admin import audit as audit
from hostguard.admin import policy as policy

__all__ = ["audit", "policy"]
