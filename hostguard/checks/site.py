"""Checks of how the site is put together: deployment, middleware, hosts, templates, modes.

Each problem has its own id and a hint that says how to fix it; docs/checks.md lists them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Info, Warning
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.template import TemplateDoesNotExist, TemplateSyntaxError
from django.template.loader import get_template
from django.utils.module_loading import import_string

from hostguard.conf import DEFAULTS, InvalidSetting, conf, parse_host_patterns, parse_trusted_proxies

MIDDLEWARE_PATH = "hostguard.middleware.HostGuardMiddleware"

# Django middleware that act on a request or its response — redirects (SSL, www,
# language), HSTS, cookies, sessions, logins, cached pages, Vary — so a request that
# hostguard refuses must never reach them first.
MUST_PRECEDE = (
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.RemoteUserMiddleware",
    "django.contrib.auth.middleware.PersistentRemoteUserMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.cache.FetchFromCacheMiddleware",
    "django.middleware.cache.CacheMiddleware",
)

# Third-party middleware that answer some requests themselves (static files, CORS
# preflights): placed first, they answer for hosts this deployment does not serve.
SHOULD_PRECEDE = (
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
)

TEMPLATES_USED = ("hostguard/421.html", "hostguard/400.html", "hostguard/404.html", "hostguard/503.html")


def _middleware() -> list[str]:
    return [str(entry) for entry in (getattr(settings, "MIDDLEWARE", None) or [])]


def _is_hostguard(entry: str) -> bool:
    if entry == MIDDLEWARE_PATH:
        return True
    from hostguard.middleware import HostGuardMiddleware

    try:
        cls = import_string(entry)
    except Exception:  # a broken entry is Django's error to report, not ours
        return False
    return isinstance(cls, type) and issubclass(cls, HostGuardMiddleware)


def _hostguard_position(middleware: list[str]) -> int | None:
    if MIDDLEWARE_PATH in middleware:
        return middleware.index(MIDDLEWARE_PATH)
    # A site's own subclass counts too; import only when the plain path is absent.
    for position, entry in enumerate(middleware):
        if _is_hostguard(entry):
            return position
    return None


def check_deployment(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    value = getattr(settings, "HOSTGUARD_DEPLOYMENT", DEFAULTS["HOSTGUARD_DEPLOYMENT"])
    if not value:
        return [
            Error(
                "HOSTGUARD_DEPLOYMENT is not set: hostguard cannot tell which tenants this process serves.",
                hint="Set HOSTGUARD_DEPLOYMENT to the name of this deployment, e.g. HOSTGUARD_DEPLOYMENT = 'eu-1'.",
                id="hostguard.E001",
            )
        ]
    if not isinstance(value, str):
        return []  # check_setting_types reports it (E005)
    try:
        validate_slug(value)
        if len(value) > 64:
            raise ValidationError("too long")
    except ValidationError:
        return [
            Error(
                "HOSTGUARD_DEPLOYMENT = %r is not a valid deployment name: no deployment can have it, so "
                "every tenant host would be answered 421." % value,
                hint="Use a slug of at most 64 letters, digits, hyphens or underscores, e.g. 'eu-1', and "
                "give the deployment in the admin or the import file the same name.",
                id="hostguard.E004",
            )
        ]
    return []


def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    middleware = _middleware()
    position = _hostguard_position(middleware)
    if position is None:
        return [
            Error(
                "HostGuardMiddleware is not in MIDDLEWARE: no request is gated.",
                hint=f"Add '{MIDDLEWARE_PATH}' as the first entry of MIDDLEWARE.",
                id="hostguard.E002",
            )
        ]
    errors: list[CheckMessage] = []
    earlier = [name for name in middleware[:position] if name in MUST_PRECEDE]
    if earlier:
        errors.append(
            Error(
                "HostGuardMiddleware comes after %s: refused requests would already have touched "
                "redirects, HSTS, sessions, CSRF, logins or cached pages." % ", ".join(earlier),
                hint=f"Move '{MIDDLEWARE_PATH}' to the top of MIDDLEWARE, before {earlier[0]}.",
                id="hostguard.E003",
            )
        )
    answering = [name for name in middleware[:position] if name in SHOULD_PRECEDE]
    if answering:
        errors.append(
            Warning(
                "HostGuardMiddleware comes after %s, which answers some requests itself: those are "
                "answered for hosts this deployment does not serve." % ", ".join(answering),
                hint=f"Move '{MIDDLEWARE_PATH}' to the top of MIDDLEWARE, before {answering[0]}.",
                id="hostguard.W002",
            )
        )
    return errors


def check_allowed_hosts(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if _hostguard_position(_middleware()) is None:
        return []
    allowed = list(getattr(settings, "ALLOWED_HOSTS", []))
    if "*" in allowed:
        return []
    return [
        Warning(
            "ALLOWED_HOSTS is not ['*'] while hostguard gates hosts: tenant hosts that "
            "hostguard lets through would get Django's 400 Bad Request.",
            hint="Set ALLOWED_HOSTS = ['*'] and list bootstrap hosts in HOSTGUARD_ALWAYS_ALLOW instead; "
            "`manage.py hostguard_import --from-allowed-hosts TENANT` adopts the current list as a tenant's hosts.",
            id="hostguard.W001",
        )
    ]


def check_templates(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    missing: list[str] = []
    broken: list[str] = []
    for name in TEMPLATES_USED:
        try:
            get_template(name)
        except TemplateDoesNotExist:
            missing.append(name)
        except TemplateSyntaxError as exc:
            broken.append(f"{name} ({exc})")
    errors: list[CheckMessage] = []
    if missing:
        errors.append(
            Error(
                "Django cannot find hostguard's templates %s: refused requests would get a 500 "
                "instead of 421, 400 or 503." % ", ".join(missing),
                hint="Use the DjangoTemplates backend with 'APP_DIRS': True (or the app_directories "
                "loader) in TEMPLATES, or provide these templates in your own template directory.",
                id="hostguard.E011",
            )
        )
    if broken:
        errors.append(
            Error(
                "A template hostguard renders does not compile: %s." % "; ".join(broken),
                hint="Fix the override in your templates directory, or delete it to use hostguard's own.",
                id="hostguard.E012",
            )
        )
    return errors


def check_report_mode(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if conf.MODE != "report":
        return []
    allowed = parse_host_patterns(getattr(settings, "ALLOWED_HOSTS", None) or [])
    if allowed.allow_all:
        what = (
            "hosts a tenant claims are served even when hostguard would refuse them (another deployment, "
            "inactive, port, scheme or SNI mismatch); a host no tenant claims and HOSTGUARD_ALWAYS_ALLOW "
            "does not list is still refused, as in enforce mode, because ALLOWED_HOSTS is ['*']."
        )
    else:
        what = (
            "a request hostguard would refuse is served only if its host is in ALLOWED_HOSTS; every other "
            "would-be refusal is answered 421, as in enforce mode."
        )
    return [
        Info(
            "HOSTGUARD_MODE is 'report': would-be refusals are recorded and logged; %s" % what,
            hint="Report mode never serves more than the site served before. Switch to 'enforce' once the "
            "mismatch log shows only hosts you mean to refuse.",
            id="hostguard.I001",
        )
    ]


def check_sni_proxies(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not conf.SNI_HEADER:
        return []
    try:
        proxies = parse_trusted_proxies(getattr(settings, "HOSTGUARD_TRUSTED_PROXIES", []))
    except InvalidSetting:
        return []  # E013 says why
    if proxies.networks or proxies.any_peer or proxies.unix_socket:
        return []
    return [
        Warning(
            "HOSTGUARD_SNI_HEADER is %r but HOSTGUARD_TRUSTED_PROXIES is empty: the header is ignored from every "
            "peer, so the SNI check (step 8) is off." % conf.SNI_HEADER,
            hint="List the addresses of the proxies that set the header, e.g. HOSTGUARD_TRUSTED_PROXIES = "
            "['10.0.0.0/8'], or 'unix' when the proxy connects over a Unix socket.",
            id="hostguard.W007",
        )
    ]
