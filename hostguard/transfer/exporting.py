"""Exporting the policy in the import format."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.db import router, transaction

from hostguard.hosts import format_authority
from hostguard.models import Authority, Deployment, get_tenant_model


def authority_order(authority: Authority) -> tuple[str, str, int]:
    """The order authorities are listed in: by host, then scheme, then port."""
    return (authority.host, authority.scheme, authority.port or 0)


def export_policy(using: str | None = None) -> dict[str, Any]:
    """The whole policy in the import format, in a deterministic order.

    Hosts are written as stored (lower case, punycode). An authority is a plain
    string when active with no note, an object otherwise, so importing the export
    restores every field.
    """
    db = using or router.db_for_read(Authority)
    with transaction.atomic(using=db):
        deployments = list(Deployment.objects.using(db).order_by("name"))
        tenants = list(get_tenant_model()._default_manager.using(db).select_related("deployment").order_by("slug"))
        by_tenant: dict[int, list[Authority]] = {}
        for authority in Authority.objects.using(db).order_by():
            by_tenant.setdefault(authority.tenant_id, []).append(authority)
    return {
        "deployments": [{"name": d.name, "description": d.description} for d in deployments],
        "tenants": [
            {
                "slug": tenant.slug,
                "name": tenant.name,
                "deployment": tenant.deployment.name,
                "active": tenant.is_active,
                "authorities": [
                    _export_authority(authority)
                    for authority in sorted(by_tenant.get(tenant.pk, []), key=authority_order)
                ],
            }
            for tenant in tenants
        ],
    }


def _export_authority(authority: Authority) -> str | dict[str, Any]:
    text = format_authority(authority.scheme, authority.host, authority.port)
    if authority.is_active and not authority.note:
        return text
    return {"authority": text, "active": authority.is_active, "note": authority.note}


def dump(data: dict[str, Any]) -> str:
    """UTF-8-ready JSON text with an indent of 2 and a final newline."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def count_exported(data: dict[str, Any]) -> tuple[int, int, int]:
    """(deployments, tenants, authorities) in an export."""
    tenants: Iterable[dict[str, Any]] = data["tenants"]
    return (
        len(data["deployments"]),
        len(data["tenants"]),
        sum(len(tenant["authorities"]) for tenant in tenants),
    )
