"""System checks: the misconfigurations that would make hostguard gate wrongly."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from hostguard.conf import conf

MIDDLEWARE_PATH = "hostguard.middleware.HostGuardMiddleware"
MUST_PRECEDE = (
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
)


def check_deployment(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if conf.DEPLOYMENT:
        return []
    return [
        Error(
            "HOSTGUARD_DEPLOYMENT is not set: hostguard cannot tell which tenants this process serves.",
            hint="Set HOSTGUARD_DEPLOYMENT to the name of this deployment, e.g. HOSTGUARD_DEPLOYMENT = 'eu-1'.",
            id="hostguard.E001",
        )
    ]


def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE_PATH not in middleware:
        return [
            Error(
                "HostGuardMiddleware is not in MIDDLEWARE: no request is gated.",
                hint=f"Add '{MIDDLEWARE_PATH}' as the first entry of MIDDLEWARE.",
                id="hostguard.E002",
            )
        ]
    position = middleware.index(MIDDLEWARE_PATH)
    earlier = [name for name in middleware[:position] if name in MUST_PRECEDE]
    if not earlier:
        return []
    return [
        Error(
            "HostGuardMiddleware comes after %s: refused requests would already have "
            "touched sessions, CSRF or redirects." % ", ".join(earlier),
            hint=f"Move '{MIDDLEWARE_PATH}' to the top of MIDDLEWARE, before {earlier[0]}.",
            id="hostguard.E003",
        )
    ]


def check_allowed_hosts(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE_PATH not in middleware:
        return []
    allowed = list(getattr(settings, "ALLOWED_HOSTS", []))
    if "*" in allowed:
        return []
    return [
        Warning(
            "ALLOWED_HOSTS is not ['*'] while hostguard gates hosts: tenant hosts that "
            "hostguard lets through would get Django's 400 Bad Request.",
            hint="Set ALLOWED_HOSTS = ['*'] and list bootstrap hosts in HOSTGUARD_ALWAYS_ALLOW instead.",
            id="hostguard.W001",
        )
    ]
