"""hostguard's settings: every ``HOSTGUARD_*`` name, its default, read on access.

Nothing here is frozen at import time, so ``override_settings`` works; values that
cost something to derive are cached and dropped on ``setting_changed``.
"""

from __future__ import annotations

from functools import cached_property
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    "HOSTGUARD_DEPLOYMENT": None,
    "HOSTGUARD_ALWAYS_ALLOW": [],
    "HOSTGUARD_EXEMPT_PATHS": [],
    "HOSTGUARD_JSON_PATHS": [],
    "HOSTGUARD_REFRESH_SECONDS": 2.0,
    "HOSTGUARD_DATABASE": "default",
    "HOSTGUARD_MODE": "enforce",
    "HOSTGUARD_AUDIT": True,
    "HOSTGUARD_AUDIT_FLUSH_SECONDS": 1.0,
    "HOSTGUARD_AUDIT_MAX_KEYS": 1000,
    "HOSTGUARD_AUDIT_WINDOW_SECONDS": 60,
    "HOSTGUARD_AUDIT_RETENTION_DAYS": 30,
    "HOSTGUARD_SNI_HEADER": None,
    "HOSTGUARD_TRUSTED_PROXIES": [],
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

    @property
    def MODE(self) -> str:
        """``"enforce"`` (refuse) or ``"report"`` (record and log, but let through)."""
        return str(self._get("HOSTGUARD_MODE")).strip().lower()

    @property
    def AUDIT(self) -> bool:
        return bool(self._get("HOSTGUARD_AUDIT"))

    @property
    def AUDIT_FLUSH_SECONDS(self) -> float:
        return max(0.05, float(self._get("HOSTGUARD_AUDIT_FLUSH_SECONDS")))

    @property
    def AUDIT_MAX_KEYS(self) -> int:
        return max(1, int(self._get("HOSTGUARD_AUDIT_MAX_KEYS")))

    @property
    def AUDIT_WINDOW_SECONDS(self) -> int:
        return max(1, int(self._get("HOSTGUARD_AUDIT_WINDOW_SECONDS")))

    @property
    def AUDIT_RETENTION_DAYS(self) -> int:
        return max(0, int(self._get("HOSTGUARD_AUDIT_RETENTION_DAYS")))

    @property
    def SNI_HEADER(self) -> str | None:
        value = self._get("HOSTGUARD_SNI_HEADER")
        return str(value) if value else None

    @property
    def TRUSTED_PROXIES(self) -> list[str]:
        value = self._get("HOSTGUARD_TRUSTED_PROXIES")
        # A lone string is a common slip ("10.0.0.1"); iterating it would trust nothing useful.
        proxies = value.split(",") if isinstance(value, str) else value
        return [str(proxy) for proxy in proxies if str(proxy).strip()]


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
    def report_mode(self) -> bool:
        return conf.MODE == "report"

    @cached_property
    def trust_forwarded_host(self) -> bool:
        return bool(getattr(settings, "USE_X_FORWARDED_HOST", False))

    @cached_property
    def trust_forwarded_port(self) -> bool:
        return bool(getattr(settings, "USE_X_FORWARDED_PORT", False))

    @cached_property
    def audit_limits(self) -> tuple[int, int, bool]:
        """(``AUDIT_WINDOW_SECONDS``, ``AUDIT_MAX_KEYS``, ``AUDIT``), read on every refusal."""
        return conf.AUDIT_WINDOW_SECONDS, conf.AUDIT_MAX_KEYS, conf.AUDIT

    @cached_property
    def host_alone(self) -> bool:
        """Whether the Host header alone names the authority (no X-Forwarded-* trusted)."""
        return not (self.trust_forwarded_host or self.trust_forwarded_port)

    @cached_property
    def allowed(self) -> dict[Any, Any]:
        """The allow path's memo: (Host header, scheme) → (snapshot, its allow decision).

        Here, so that a settings change empties it; each entry names its snapshot, so
        a policy refresh retires it (see ``hostguard.middleware``).
        """
        return {}

    @cached_property
    def gate(self) -> tuple[tuple[str, ...], bool, dict[Any, Any] | None, bool]:
        """What the gate reads on every request, in one attribute lookup: (exempt paths,
        no SECURE_PROXY_SSL_HEADER, the allow memo if the Host header alone names the
        authority else ``None``, no HOSTGUARD_SNI_HEADER)."""
        return (
            self.exempt_paths,
            self.proxy_ssl_header is None,
            self.allowed if self.host_alone else None,
            self.sni_meta_key is None,
        )

    @cached_property
    def proxy_ssl_header(self) -> Any:
        """Django's ``SECURE_PROXY_SSL_HEADER``: ``None`` lets the gate read the scheme directly."""
        return getattr(settings, "SECURE_PROXY_SSL_HEADER", None)

    @cached_property
    def sni_meta_key(self) -> str | None:
        """The ``request.META`` key of ``HOSTGUARD_SNI_HEADER`` ("X-Forwarded-SNI" → HTTP_X_FORWARDED_SNI)."""
        header = conf.SNI_HEADER
        if not header:
            return None
        key = header.strip().upper().replace("-", "_")
        return key if key.startswith("HTTP_") else "HTTP_" + key

    @cached_property
    def trusted_proxies(self) -> tuple[tuple[IPv4Network | IPv6Network, ...], bool]:
        """(networks, any peer) parsed from ``HOSTGUARD_TRUSTED_PROXIES``; raises ImproperlyConfigured."""
        networks: list[IPv4Network | IPv6Network] = []
        any_peer = False
        for entry in conf.TRUSTED_PROXIES:
            text = entry.strip()
            if text == "*":
                any_peer = True
                continue
            try:
                networks.append(ip_network(text.strip("[]"), strict=False))
            except ValueError:
                raise ImproperlyConfigured(
                    "HOSTGUARD_TRUSTED_PROXIES: %r is neither an IP address nor a network (10.0.0.0/8, ::1)." % entry
                ) from None
        return tuple(networks), any_peer

    def clear(self) -> None:
        self.__dict__.clear()


derived = Derived()


def always_allowed(host: str) -> bool:
    """Whether ``host`` (normalised, no port) matches ``HOSTGUARD_ALWAYS_ALLOW``."""
    exact, suffixes, allow_all = derived.always_allow
    if allow_all or host in exact:
        return True
    if not suffixes:
        return False
    # ".example.com" admits example.com and every name under it, as ALLOWED_HOSTS does.
    return any(host.endswith(suffix) or host == suffix[1:] for suffix in suffixes)


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith(("HOSTGUARD_", "USE_X_FORWARDED", "SECURE_PROXY_SSL_HEADER")):
        derived.clear()
