"""Checks of the ``HOSTGUARD_*`` settings: names, types and values.

The value rules call :mod:`hostguard.conf`'s parsers, so the checks accept exactly
what the runtime reads. They read ``hostguard.conf.DEFAULTS`` when they run, so a
setting added there is known to them at once.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from hostguard.conf import DEFAULTS, MODES, InvalidSetting, parse_admin_hosts, parse_mode, parse_trusted_proxies
from hostguard.hosts import InvalidHost, normalise_host


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
    "HOSTGUARD_TLS_ASK_FROM": ((list, tuple, str, type(None)), "a list of addresses or networks, or None"),
}


_EXAMPLES: dict[str, object] = {
    "HOSTGUARD_DEPLOYMENT": "eu-1",
    "HOSTGUARD_ALWAYS_ALLOW": ["localhost", "admin.example.com"],
    "HOSTGUARD_EXEMPT_PATHS": ["/healthz"],
    "HOSTGUARD_JSON_PATHS": ["/api/"],
    "HOSTGUARD_SNI_HEADER": "X-Forwarded-SNI",
    "HOSTGUARD_TRUSTED_PROXIES": ["10.0.0.0/8"],
    "HOSTGUARD_TLS_ASK_FROM": ["127.0.0.1"],
    "HOSTGUARD_ADMIN_HOSTS": {"/admin/": ["localhost", "admin.example.com"]},
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
    try:
        parse_mode(value)
    except InvalidSetting as exc:
        return [
            Error(
                "%s = %r: %s" % (name, value, exc.message),
                hint="Set %s to %r (refuse misdirected requests) or %r (record them; let through what the site "
                "served before)." % (name, MODES[0], MODES[1]),
                id="hostguard.E009",
            )
        ]
    return []


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
    try:
        parse_trusted_proxies(value)
    except InvalidSetting as exc:
        return [
            Error(
                "%s: %s" % (name, exc.message),
                hint="Give addresses or networks such as '10.0.0.0/8', '192.0.2.7' or '::1', and 'unix' for a "
                "proxy that connects over a Unix socket.",
                id="hostguard.E013",
            )
        ]
    return []


def _ask_from(name: str, value: Any) -> list[CheckMessage]:
    # None is the default (loopback and HOSTGUARD_TRUSTED_PROXIES); a list reads as the proxies do.
    return [] if value is None else _proxies(name, value)


def _admin_hosts(name: str, value: Any) -> list[CheckMessage]:
    try:
        parse_admin_hosts(value)
    except InvalidSetting as exc:
        return [
            Error(
                "%s: %s" % (name, exc.message),
                hint="Write it as {'/admin/': ['localhost', 'admin.example.com']}: path prefixes from the site's "
                "root, each with the hosts (ALLOWED_HOSTS syntax) that may reach it.",
                id="hostguard.E014",
            )
        ]
    messages: list[CheckMessage] = []
    for prefix, hosts in value.items():
        for pattern in hosts:
            problem = _allow_pattern_problem(str(pattern).strip().lower())
            if problem is not None:
                messages.append(
                    Error(
                        "%s[%r] entry %r never matches: %s" % (name, prefix, pattern, problem[0]),
                        hint=problem[1],
                        id="hostguard.E008",
                    )
                )
    return messages


_VALUE_RULES: dict[str, Callable[[str, Any], list[CheckMessage]]] = {
    "HOSTGUARD_REFRESH_SECONDS": _positive_number,
    "HOSTGUARD_EXEMPT_PATHS": _path_prefixes,
    "HOSTGUARD_JSON_PATHS": _path_prefixes,
    "HOSTGUARD_ALWAYS_ALLOW": _always_allow,
    "HOSTGUARD_MODE": _mode,
    "HOSTGUARD_DATABASE": _database,
    "HOSTGUARD_TRUSTED_PROXIES": _proxies,
    "HOSTGUARD_ADMIN_HOSTS": _admin_hosts,
    "HOSTGUARD_TLS_ASK_FROM": _ask_from,
}
