"""hostguard's settings: every ``HOSTGUARD_*`` name, its default, read on access.

Nothing here is frozen at import time, so ``override_settings`` works; values that
cost something to derive are cached and dropped on ``setting_changed``.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    "HOSTGUARD_DEPLOYMENT": None,
    "HOSTGUARD_ALWAYS_ALLOW": [],
    "HOSTGUARD_EXEMPT_PATHS": [],
    "HOSTGUARD_JSON_PATHS": [],
    "HOSTGUARD_REFRESH_SECONDS": 2.0,
    "HOSTGUARD_DATABASE": "default",
}


class Settings:
    """Typed, read-through access to hostguard's settings."""

    def _get(self, name: str) -> Any:
        return getattr(settings, name, DEFAULTS[name])

    @property
    def DEPLOYMENT(self) -> str | None:
        value = self._get("HOSTGUARD_DEPLOYMENT")
        return value or None

    @property
    def ALWAYS_ALLOW(self) -> list[str]:
        return list(self._get("HOSTGUARD_ALWAYS_ALLOW"))

    @property
    def EXEMPT_PATHS(self) -> tuple[str, ...]:
        return tuple(self._get("HOSTGUARD_EXEMPT_PATHS"))

    @property
    def JSON_PATHS(self) -> tuple[str, ...]:
        return tuple(self._get("HOSTGUARD_JSON_PATHS"))

    @property
    def REFRESH_SECONDS(self) -> float:
        return float(self._get("HOSTGUARD_REFRESH_SECONDS"))

    @property
    def DATABASE(self) -> str:
        return str(self._get("HOSTGUARD_DATABASE"))


conf = Settings()


class Derived:
    """Values derived from settings that the request path reads; rebuilt on change."""

    @cached_property
    def exempt_paths(self) -> tuple[str, ...]:
        return conf.EXEMPT_PATHS

    @cached_property
    def json_paths(self) -> tuple[str, ...]:
        return conf.JSON_PATHS

    @cached_property
    def always_allow(self) -> tuple[frozenset[str], tuple[str, ...], bool]:
        """(exact hosts, ``.suffix`` patterns, allow-all) from ALLOWED_HOSTS syntax."""
        exact: set[str] = set()
        suffixes: list[str] = []
        allow_all = False
        for pattern in conf.ALWAYS_ALLOW:
            pattern = pattern.strip().lower()
            if pattern == "*":
                allow_all = True
            elif pattern.startswith("."):
                suffixes.append(pattern.rstrip(".") if pattern != "." else pattern)
            elif pattern:
                exact.add(pattern[:-1] if pattern.endswith(".") else pattern)
        return frozenset(exact), tuple(suffixes), allow_all

    @cached_property
    def deployment(self) -> str | None:
        return conf.DEPLOYMENT

    @cached_property
    def trust_forwarded_host(self) -> bool:
        return bool(getattr(settings, "USE_X_FORWARDED_HOST", False))

    @cached_property
    def trust_forwarded_port(self) -> bool:
        return bool(getattr(settings, "USE_X_FORWARDED_PORT", False))

    def clear(self) -> None:
        self.__dict__.clear()


derived = Derived()


def always_allowed(host: str) -> bool:
    """Whether ``host`` (normalised, no port) matches ``HOSTGUARD_ALWAYS_ALLOW``."""
    exact, suffixes, allow_all = derived.always_allow
    if allow_all or host in exact:
        return True
    # ".example.com" admits example.com and every name under it, as ALLOWED_HOSTS does.
    return any(host.endswith(suffix) or host == suffix[1:] for suffix in suffixes)


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith(("HOSTGUARD_", "USE_X_FORWARDED")):
        derived.clear()
