"""Adopting a site's ``ALLOWED_HOSTS`` as one tenant's authorities (``hostguard_import --from-allowed-hosts``).

The result is an ordinary import document, so the import's checks and its single
transaction apply to it as to any file.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from hostguard.conf import conf
from hostguard.hosts import InvalidHost, is_ip, parse_authority
from hostguard.models import AbstractTenant, Authority, Deployment, get_tenant_model
from hostguard.transfer.document import Key
from hostguard.transfer.reading import TransferError


def allowed_hosts_document(slug: str, patterns: list[str], using: str) -> tuple[dict[str, Any], list[str]]:
    """An import document giving tenant ``slug`` the hosts ``patterns`` (ALLOWED_HOSTS syntax), and notes.

    ``.example.com`` becomes ``example.com`` and ``*.example.com``; ``*`` names no host
    and is skipped. A new tenant is created on this deployment; an existing one keeps
    its name, deployment and state, and its authorities keep their notes and state.
    A host that another tenant claims is refused, not taken. Raises :class:`TransferError`.
    """
    deployment = conf.DEPLOYMENT
    if not deployment:
        raise TransferError([_("HOSTGUARD_DEPLOYMENT is not set: set it to this deployment's name first.")])
    notes: list[str] = []
    wanted, local = wanted_authorities(patterns, notes)
    tenants = get_tenant_model()._default_manager.using(using).select_related("deployment")
    tenant = tenants.filter(slug=slug).first()
    authorities = authority_entries(wanted, tenant, using)
    document: dict[str, Any] = {"deployments": []}
    if tenant is None:
        if not Deployment.objects.using(using).filter(name=deployment).exists():
            document["deployments"].append({"name": deployment})
        entry = {"slug": slug, "name": slug, "deployment": deployment, "active": True}
    else:
        entry = {"slug": slug, "name": tenant.name, "deployment": tenant.deployment.name, "active": tenant.is_active}
        if tenant.deployment.name != deployment:
            notes.append(
                _(
                    "The tenant “%(tenant)s” is served by the deployment “%(other)s”, not this one (“%(here)s”): "
                    "its hosts get 421 here until you move it."
                )
                % {"tenant": tenant.name, "other": tenant.deployment.name, "here": deployment}
            )
    document["tenants"] = [{**entry, "authorities": authorities}]
    if local:
        notes.append(
            _(
                "%(hosts)s are kept as hosts of this tenant; hosts you only bootstrap or administer from belong in "
                "HOSTGUARD_ALWAYS_ALLOW instead."
            )
            % {"hosts": ", ".join(local)}
        )
    return document, notes


def wanted_authorities(patterns: list[str], notes: list[str]) -> tuple[dict[Key, str], list[str]]:
    """The authorities ``patterns`` name, each once, and those that look local (no dot, or an IP)."""
    problems: list[str] = []
    wanted: dict[Key, str] = {}
    local: list[str] = []
    for pattern in patterns:
        text = str(pattern).strip()
        if text == "*":
            notes.append(_("Skipped '*': it lets every host in and names none."))
            continue
        candidates = [text[1:], "*" + text] if text.startswith(".") else [text]
        for candidate in candidates:
            try:
                spec = parse_authority(candidate)
            except InvalidHost as exc:
                problems.append(
                    _("ALLOWED_HOSTS entry '%(entry)s': %(error)s") % {"entry": pattern, "error": exc.message}
                )
                break
            wanted.setdefault((spec.host, spec.port, spec.scheme), str(spec))
            if "." not in spec.host or is_ip(spec.host):
                local.append(str(spec))
    if problems:
        raise TransferError(problems)
    if not wanted:
        if patterns:
            message = _(
                "ALLOWED_HOSTS is ['*'], which names no host to adopt: list the tenant's hosts in a file for "
                "hostguard_import, or run this before setting ALLOWED_HOSTS = ['*']."
            )
        else:
            message = _("ALLOWED_HOSTS is empty: there is no host to adopt.")
        raise TransferError([message])
    return wanted, local


def authority_entries(wanted: dict[Key, str], tenant: AbstractTenant | None, using: str) -> list[dict[str, Any]]:
    """The document's authority entries: new ones noted as adopted, the tenant's own kept as they are."""
    existing = {
        (authority.host, authority.port, authority.scheme): authority
        for authority in Authority.objects.using(using)
        .select_related("tenant")
        .filter(host__in={host for host, _port, _scheme in wanted})
    }
    problems: list[str] = []
    authorities: list[dict[str, Any]] = []
    for key, text in wanted.items():
        authority = existing.get(key)
        if authority is None:
            authorities.append({"authority": text, "note": _("adopted from ALLOWED_HOSTS")})
        elif tenant is not None and authority.tenant_id == tenant.pk:
            authorities.append({"authority": text, "active": authority.is_active, "note": authority.note})
        else:
            problems.append(
                _(
                    "'%(authority)s' is already claimed by the tenant “%(tenant)s”: remove it from ALLOWED_HOSTS "
                    "or move it in the admin first."
                )
                % {"authority": text, "tenant": authority.tenant.name}
            )
    if problems:
        raise TransferError(problems)
    return authorities
