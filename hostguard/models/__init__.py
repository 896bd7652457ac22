"""hostguard's models: deployments, tenants and the authorities they claim
(:mod:`~hostguard.models.tenancy`), how every write to them is recorded
(:mod:`~hostguard.models.tracking`), and the audit log (:mod:`~hostguard.models.mismatch`)."""

from hostguard.models.mismatch import MismatchLog
from hostguard.models.tenancy import (
    DEFAULT_TENANT_MODEL,
    AbstractTenant,
    Authority,
    Deployment,
    DeploymentForeignKey,
    HostCheck,
    PolicyChange,
    PolicyStamp,
    Tenant,
    TenantManager,
    get_tenant_model,
    tenant_model_label,
)
from hostguard.models.tracking import PolicyModel, PolicyQuerySet, capture_host, record_delete, record_save

__all__ = [
    "DEFAULT_TENANT_MODEL",
    "AbstractTenant",
    "Authority",
    "Deployment",
    "DeploymentForeignKey",
    "HostCheck",
    "MismatchLog",
    "PolicyChange",
    "PolicyModel",
    "PolicyQuerySet",
    "PolicyStamp",
    "Tenant",
    "TenantManager",
    "capture_host",
    "get_tenant_model",
    "record_delete",
    "record_save",
    "tenant_model_label",
]
