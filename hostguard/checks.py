"""System checks: the misconfigurations that would make hostguard gate wrongly.

Each problem has its own id and a hint that says how to fix it; the README's
"Troubleshooting" section lists them all. The checks read ``hostguard.conf.DEFAULTS``
when they run, so a setting added there is known to them at once.
"""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Callable, Iterable
from ipaddress import ip_network
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import DEFAULT_DB_ALIAS, connections, router
from django.template import TemplateDoesNotExist, TemplateSyntaxError
from django.template.loader import get_template
from django.utils.module_loading import import_string

from hostguard.conf import DEFAULTS, conf
from hostguard.hosts import InvalidHost, normalise_host

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

MODES = ("enforce", "report")


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


# --- HOSTGUARD_* settings -------------------------------------------------------------


def check_setting_names(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    known = list(DEFAULTS)
    prefix = "HOSTGUARD_"
    warnings: list[CheckMessage] = []
    for name in sorted(dir(settings)):
        if not name.startswith(prefix) or name in DEFAULTS:
            continue
        # Compare what follows the prefix: every name shares it, which would make anything look close.
        suffixes = [known_name.removeprefix(prefix) for known_name in known]
        close = difflib.get_close_matches(name.removeprefix(prefix), suffixes, n=1, cutoff=0.6)
        if close:
            hint = "Did you mean %s? Rename the setting; until then it is ignored." % (prefix + close[0])
        else:
            hint = "Remove it, or rename it to one of the settings the README lists: %s." % ", ".join(known)
        warnings.append(
            Warning(
                "%s is not a hostguard setting: hostguard ignores it." % name,
                hint=hint,
                id="hostguard.W003",
            )
        )
    return warnings


def _type_name(value: object) -> str:
    return type(value).__name__


def _expected(default: object) -> tuple[tuple[type, ...], str] | None:
    """The types a setting whose default is ``default`` may have, and how to say it."""
    if isinstance(default, bool):
        return (bool,), "True or False"
    if isinstance(default, int | float):
        return (int, float), "a number"
    if isinstance(default, str):
        return (str,), "a string"
    if isinstance(default, list | tuple):
        return (list, tuple), "a list of strings"
    if isinstance(default, dict):
        return (dict,), "a dict"
    return None


# Settings whose default is None, or that accept more than their default's type.
_EXTRA_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "HOSTGUARD_DEPLOYMENT": ((str,), "a string"),
    "HOSTGUARD_SNI_HEADER": ((str, type(None)), "a header name (a string) or None"),
    # A comma-separated string is accepted there (hostguard.conf splits it).
    "HOSTGUARD_TRUSTED_PROXIES": ((list, tuple, str), "a list of addresses or networks"),
}


_EXAMPLES: dict[str, object] = {
    "HOSTGUARD_DEPLOYMENT": "eu-1",
    "HOSTGUARD_ALWAYS_ALLOW": ["localhost", "admin.example.com"],
    "HOSTGUARD_EXEMPT_PATHS": ["/healthz"],
    "HOSTGUARD_JSON_PATHS": ["/api/"],
    "HOSTGUARD_SNI_HEADER": "X-Forwarded-SNI",
    "HOSTGUARD_TRUSTED_PROXIES": ["10.0.0.0/8"],
}


def _type_error(name: str, value: object) -> CheckMessage | None:
    if name == "HOSTGUARD_DEPLOYMENT" and not value:
        return None  # E001
    expected = _EXTRA_TYPES.get(name) or _expected(DEFAULTS[name])
    if expected is None:
        return None
    types, description = expected
    wrong = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
    if not wrong and list in types and isinstance(value, list | tuple):
        wrong = not all(isinstance(item, str) for item in value)
    if not wrong:
        return None
    if list in types and isinstance(value, str):
        items = [item.strip() for item in value.split(",") if item.strip()] or [value]
        hint = "Write %s = %r: a lone string is read one character at a time." % (name, items)
    else:
        hint = "Give %s, e.g. %s = %r." % (description, name, _EXAMPLES.get(name, DEFAULTS[name]))
    return Error(
        "%s must be %s, not %s (%r)." % (name, description, _type_name(value), value),
        hint=hint,
        id="hostguard.E005",
    )


def _present_settings() -> Iterable[tuple[str, Any]]:
    for name in DEFAULTS:
        if hasattr(settings, name):
            yield name, getattr(settings, name)


def check_setting_types(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    valid: dict[str, Any] = {}
    for name, value in _present_settings():
        error = _type_error(name, value)
        if error is None:
            valid[name] = value
        else:
            errors.append(error)
    # Value rules, only for settings whose type is right (E005 covers the others).
    for name, rule in _VALUE_RULES.items():
        if name in valid and name in DEFAULTS:
            errors.extend(rule(name, valid[name]))
    return errors


def _positive_number(name: str, value: Any) -> list[CheckMessage]:
    if value > 0 and math.isfinite(value):
        return []
    return [
        Error(
            "%s must be a positive number of seconds, not %r." % (name, value),
            hint="Set %s = %r (the default), or any number above 0." % (name, DEFAULTS[name]),
            id="hostguard.E006",
        )
    ]


def _path_prefixes(name: str, value: Any) -> list[CheckMessage]:
    bad = [prefix for prefix in value if not prefix.startswith("/")]
    if not bad:
        return []
    return [
        Error(
            "%s entries are URL path prefixes and must start with '/': %s never match."
            % (name, ", ".join(repr(prefix) for prefix in bad)),
            hint="Write them as paths from the site's root, e.g. %r." % ("/" + bad[0].lstrip("/"),),
            id="hostguard.E007",
        )
    ]


def _always_allow(name: str, value: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for pattern in value:
        text = pattern.strip().lower()
        if text == "*":
            messages.append(
                Warning(
                    "%s contains '*': every host is let through and hostguard gates nothing." % name,
                    hint="List only bootstrap and admin hosts there, e.g. ['localhost', 'admin.example.com']; "
                    "tenant hosts belong in the database.",
                    id="hostguard.W004",
                )
            )
            continue
        problem = _allow_pattern_problem(text)
        if problem is not None:
            messages.append(
                Error(
                    "%s entry %r never matches: %s" % (name, pattern, problem[0]),
                    hint=problem[1],
                    id="hostguard.E008",
                )
            )
    return messages


def _allow_pattern_problem(text: str) -> tuple[str, str] | None:
    """Why an ALLOWED_HOSTS-syntax pattern can never match a request, and the fix."""
    if text.startswith("*."):
        return (
            "'*.' wildcards are not ALLOWED_HOSTS syntax.",
            "Write %r: a leading dot matches the domain and every name under it." % text[1:],
        )
    if "://" in text or "/" in text:
        return ("it is a URL.", "Give only the host name, as in 'admin.example.com'.")
    name = text[1:] if text.startswith(".") else text
    name = name[:-1] if name.endswith(".") else name
    if not name.startswith("[") and name.count(":") == 1:
        return (
            "ALLOWED_HOSTS syntax has no ports.",
            "Give the host alone, %r: it is let through on every port." % text.rsplit(":", 1)[0],
        )
    try:
        canonical = normalise_host(name)
    except InvalidHost as exc:
        return ("it is not a host name (%s)." % exc.message, "Give a host name such as 'admin.example.com'.")
    if canonical != name:
        prefix = "." if text.startswith(".") else ""
        return (
            "requests carry the host as %r." % canonical,
            "Write %r (punycode for international names, brackets around IPv6)." % (prefix + canonical),
        )
    return None


def _mode(name: str, value: Any) -> list[CheckMessage]:
    if value.strip().lower() in MODES:
        return []
    return [
        Error(
            "%s = %r is not a mode hostguard knows." % (name, value),
            hint="Set %s to 'enforce' (refuse misdirected requests) or 'report' (record them, let them "
            "through)." % name,
            id="hostguard.E009",
        )
    ]


def _database(name: str, value: Any) -> list[CheckMessage]:
    databases = getattr(settings, "DATABASES", {}) or {}
    if value in databases:
        return []
    return [
        Error(
            "%s = %r names no database in DATABASES: hostguard could never load its hosts." % (name, value),
            hint="Use one of %s." % ", ".join(repr(alias) for alias in databases),
            id="hostguard.E010",
        )
    ]


def _proxies(name: str, value: Any) -> list[CheckMessage]:
    entries = value.split(",") if isinstance(value, str) else value
    bad = []
    for entry in entries:
        text = entry.strip()
        if not text or text == "*":
            continue
        try:
            ip_network(text.strip("[]"), strict=False)
        except ValueError:
            bad.append(entry)
    if not bad:
        return []
    return [
        Error(
            "%s: %s %s neither an IP address nor a network."
            % (name, ", ".join(repr(entry) for entry in bad), "is" if len(bad) == 1 else "are"),
            hint="Give addresses or networks such as '10.0.0.0/8', '192.0.2.7' or '::1'.",
            id="hostguard.E013",
        )
    ]


_VALUE_RULES: dict[str, Callable[[str, Any], list[CheckMessage]]] = {
    "HOSTGUARD_REFRESH_SECONDS": _positive_number,
    "HOSTGUARD_EXEMPT_PATHS": _path_prefixes,
    "HOSTGUARD_JSON_PATHS": _path_prefixes,
    "HOSTGUARD_ALWAYS_ALLOW": _always_allow,
    "HOSTGUARD_MODE": _mode,
    "HOSTGUARD_DATABASE": _database,
    "HOSTGUARD_TRUSTED_PROXIES": _proxies,
}


# --- the database (run by `manage.py check --database default`) -----------------------


def _running_migrate() -> bool:
    # Django passes checks no hint of the command running them, and `migrate` runs the
    # database checks before it migrates: "run migrate" would only confuse there.
    return sys.argv[1:2] == ["migrate"]


def _unapplied_migrations(alias: str) -> list[str]:
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(connections[alias], ignore_no_migrations=True)
    unapplied: list[str] = []
    for leaf in loader.graph.leaf_nodes("hostguard"):
        for key in loader.graph.forwards_plan(leaf):
            if key[0] == "hostguard" and key not in loader.applied_migrations and key[1] not in unapplied:
                unapplied.append(key[1])
    return unapplied


def check_migrations(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not databases or _running_migrate():
        return []
    warnings: list[CheckMessage] = []
    for alias in databases:
        if alias not in connections or not router.allow_migrate(alias, "hostguard"):
            continue
        try:
            unapplied = _unapplied_migrations(alias)
        except Exception:  # an unreachable database is reported by Django's own checks
            continue
        if unapplied:
            warnings.append(
                Warning(
                    "hostguard's migrations %s are not applied to the database %r: every gated request "
                    "is answered 503 until they are." % (", ".join(unapplied), alias),
                    hint="Run `python manage.py migrate`."
                    if alias == DEFAULT_DB_ALIAS
                    else "Run `python manage.py migrate --database %s`." % alias,
                    id="hostguard.W005",
                )
            )
    return warnings


def check_deployment_exists(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    deployment = conf.DEPLOYMENT
    alias = conf.DATABASE
    if not databases or alias not in databases or not isinstance(deployment, str) or _running_migrate():
        return []
    from hostguard.models import Deployment

    try:
        if Deployment.objects.using(alias).filter(name=deployment).exists():
            return []
        names = list(Deployment.objects.using(alias).order_by("name").values_list("name", flat=True)[:50])
    except Exception:  # tables missing (W005) or database unreachable (Django's checks)
        return []
    close = difflib.get_close_matches(deployment, names, n=1, cutoff=0.6)
    if close:
        hint = "Did you mean %r? Set HOSTGUARD_DEPLOYMENT to the name the database uses." % close[0]
    elif names:
        hint = (
            "The database knows %s. Set HOSTGUARD_DEPLOYMENT to one of them, or import this deployment's "
            "tenants with `python manage.py hostguard_import FILE`." % ", ".join(repr(name) for name in names[:10])
        )
    else:
        hint = "Import your tenants and hosts with `python manage.py hostguard_import FILE`, or add them in the admin."
    return [
        Warning(
            "The database has no deployment named %r: every tenant host is answered 421 until it does." % deployment,
            hint=hint,
            id="hostguard.W006",
        )
    ]
