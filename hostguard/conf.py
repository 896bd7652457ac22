"""hostguard's settings: every ``HOSTGUARD_*`` name, its default, and one parser per value.

``conf.NAME`` reads the setting on every access, so ``override_settings`` works and
nothing is frozen at import time. Values that cost something to derive — parsed host
patterns, networks, the tuple the middleware reads on every request — are cached on
the same object under a lower-case name and dropped on ``setting_changed``.

The parsers (``parse_*``) are pure functions: the runtime and the system checks
(:mod:`hostguard.checks`) call the same ones, so a value the checks accept is a value
the runtime reads the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any, NamedTuple

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    "HOSTGUARD_DEPLOYMENT": None,
    "HOSTGUARD_ALWAYS_ALLOW": [],
    "HOSTGUARD_EXEMPT_PATHS": [],
    "HOSTGUARD_JSON_PATHS": [],
    "HOSTGUARD_ADMIN_HOSTS": {},
    "HOSTGUARD_REFRESH_SECONDS": 2.0,
    "HOSTGUARD_PUSH": True,
    "HOSTGUARD_DATABASE": "default",
    "HOSTGUARD_MODE": "enforce",
    "HOSTGUARD_AUDIT": True,
    "HOSTGUARD_AUDIT_FLUSH_SECONDS": 1.0,
    "HOSTGUARD_AUDIT_MAX_KEYS": 1000,
    "HOSTGUARD_AUDIT_WINDOW_SECONDS": 60,
    "HOSTGUARD_AUDIT_RETENTION_DAYS": 30,
    "HOSTGUARD_SNI_HEADER": None,
    "HOSTGUARD_TRUSTED_PROXIES": [],
    "HOSTGUARD_TENANT_MODEL": "hostguard.Tenant",
    "HOSTGUARD_TENANT_FIELDS": [],
    "HOSTGUARD_TLS_ASK_FROM": None,
    "HOSTGUARD_TLS_ANY_DEPLOYMENT": False,
    "HOSTGUARD_TLS_WILDCARDS": False,
}

MODES = ("enforce", "report")
#: The ``HOSTGUARD_TRUSTED_PROXIES`` entry that trusts a peer with no network address:
#: a proxy connected over a Unix-domain socket (``REMOTE_ADDR`` is empty there).
UNIX_SOCKET = "unix"
#: Who may ask the TLS permission endpoint when ``HOSTGUARD_TLS_ASK_FROM`` is ``None``,
#: besides ``HOSTGUARD_TRUSTED_PROXIES``: this machine.
LOOPBACK = ("127.0.0.0/8", "::1")


class InvalidSetting(ValueError):
    """A setting's value cannot be read; ``entries`` are the offending parts."""

    def __init__(self, message: str, entries: Iterable[object] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.entries = list(entries)


# --- parsers ---------------------------------------------------------------------------


class HostPatterns(NamedTuple):
    """Host patterns in ``ALLOWED_HOSTS`` syntax: exact names, ``.suffix`` patterns, ``*``."""

    exact: frozenset[str]
    suffixes: tuple[str, ...]
    allow_all: bool

    def matches(self, host: str) -> bool:
        """Whether ``host`` (normalised, no port) matches, as Django's ``validate_host`` would."""
        if self.allow_all or host in self.exact:
            return True
        if not self.suffixes:
            return False
        # ".example.com" admits example.com and every name under it, as ALLOWED_HOSTS does.
        return any(host.endswith(suffix) or host == suffix[1:] for suffix in self.suffixes)


def parse_host_patterns(patterns: Iterable[str]) -> HostPatterns:
    exact: set[str] = set()
    suffixes: list[str] = []
    allow_all = False
    for pattern in patterns:
        text = str(pattern).strip().lower()
        if text == "*":
            allow_all = True
        elif text.startswith("."):
            suffixes.append(text.rstrip(".") if text != "." else text)
        elif text:
            exact.add(text[:-1] if text.endswith(".") else text)
    return HostPatterns(frozenset(exact), tuple(suffixes), allow_all)


Network = IPv4Network | IPv6Network


class TrustedProxies(NamedTuple):
    """The peers whose forwarded SNI header hostguard believes."""

    networks: tuple[Network, ...]
    any_peer: bool
    unix_socket: bool

    def trusts(self, remote_addr: str | None) -> bool:
        """Whether the direct peer (``REMOTE_ADDR``) is a trusted proxy."""
        if self.any_peer:
            return True
        if not remote_addr:
            # Servers leave REMOTE_ADDR empty (gunicorn) or unset (ASGI) for a Unix socket.
            return self.unix_socket
        if not self.networks:
            return False
        address = parse_peer(remote_addr)
        return address is not None and any(address in network for network in self.networks)


def parse_peer(remote_addr: str) -> IPv4Address | IPv6Address | None:
    """``REMOTE_ADDR`` as an address; an IPv4-mapped IPv6 address (``::ffff:10.0.0.1``,
    what a dual-stack socket reports for an IPv4 peer) as the IPv4 address it maps."""
    try:
        address = ip_address(remote_addr.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_trusted_proxies(value: object) -> TrustedProxies:
    """``HOSTGUARD_TRUSTED_PROXIES``: addresses, networks, ``"unix"`` or ``"*"``.

    A comma-separated string is read as a list (a lone string is a common slip).
    Raises :class:`InvalidSetting` naming every entry that is none of these.
    """
    entries = value.split(",") if isinstance(value, str) else value
    networks: list[Network] = []
    any_peer = unix_socket = False
    bad: list[object] = []
    for entry in entries if isinstance(entries, Iterable) else [entries]:
        text = str(entry).strip()
        if not text:
            continue
        if text == "*":
            any_peer = True
        elif text.lower() in (UNIX_SOCKET, "unix:"):
            unix_socket = True
        else:
            try:
                network = ip_network(text.strip("[]"), strict=False)
            except ValueError:
                bad.append(entry)
                continue
            networks.append(network)
            if isinstance(network, IPv6Network) and network.network_address.ipv4_mapped is not None:
                # ::ffff:10.0.0.0/104 means the IPv4 network; peers are compared as IPv4.
                mapped = network.network_address.ipv4_mapped
                networks.append(ip_network(f"{mapped}/{max(0, network.prefixlen - 96)}", strict=False))
    if bad:
        raise InvalidSetting(
            "%s %s neither an IP address, a network, %r nor '*'."
            % (", ".join(repr(entry) for entry in bad), "is" if len(bad) == 1 else "are", UNIX_SOCKET),
            bad,
        )
    return TrustedProxies(tuple(networks), any_peer, unix_socket)


def parse_ask_from(value: object, proxies: TrustedProxies | None = None) -> TrustedProxies:
    """``HOSTGUARD_TLS_ASK_FROM``: the peers that may ask the TLS permission endpoint.

    ``None`` means :data:`LOOPBACK` and the trusted ``proxies``
    (``HOSTGUARD_TRUSTED_PROXIES``); a list, in that setting's syntax, replaces both.
    Raises :class:`InvalidSetting`.
    """
    if value is not None:
        return parse_trusted_proxies(value)
    loopback = parse_trusted_proxies(LOOPBACK)
    if proxies is None:
        return loopback
    return TrustedProxies(loopback.networks + proxies.networks, proxies.any_peer, proxies.unix_socket)


def parse_mode(value: object) -> str:
    mode = str(value).strip().lower()
    if mode not in MODES:
        raise InvalidSetting("%r is not a mode hostguard knows." % (value,), [value])
    return mode


class PathRule(NamedTuple):
    """``HOSTGUARD_ADMIN_HOSTS``: paths under ``prefix`` only for hosts ``hosts`` matches."""

    prefix: str
    hosts: HostPatterns


def parse_admin_hosts(value: object) -> tuple[PathRule, ...]:
    """``{"/admin/": ["localhost", ".ops.example.com"]}`` → rules, longest prefix first."""
    if not isinstance(value, Mapping):
        raise InvalidSetting("it must be a dict of path prefix → list of hosts, not %s." % type(value).__name__)
    rules: list[PathRule] = []
    bad: list[object] = []
    for prefix, hosts in value.items():
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            bad.append(prefix)
            continue
        if isinstance(hosts, str) or not isinstance(hosts, Iterable):
            raise InvalidSetting("the hosts for %r must be a list of host names, not %r." % (prefix, hosts), [prefix])
        rules.append(PathRule(prefix, parse_host_patterns(hosts)))
    if bad:
        raise InvalidSetting(
            "its keys are URL path prefixes and must start with '/': %s never match."
            % ", ".join(repr(prefix) for prefix in bad),
            bad,
        )
    return tuple(sorted(rules, key=lambda rule: len(rule.prefix), reverse=True))


def meta_key(header: str) -> str:
    """The ``request.META`` key of a header name ("X-Forwarded-SNI" → ``HTTP_X_FORWARDED_SNI``)."""
    key = header.strip().upper().replace("-", "_")
    return key if key.startswith("HTTP_") else "HTTP_" + key


class GateSettings(NamedTuple):
    """What the middleware reads on every request, in one attribute lookup."""

    exempt_paths: tuple[str, ...]
    #: No ``SECURE_PROXY_SSL_HEADER``: the scheme can be read from the WSGI environ directly.
    plain_scheme: bool
    #: Neither ``X-Forwarded-Host`` nor ``X-Forwarded-Port`` is trusted: Host alone names the authority.
    host_alone: bool
    trust_forwarded_host: bool
    trust_forwarded_port: bool
    #: ``request.META`` key of ``HOSTGUARD_SNI_HEADER``, or ``None``.
    sni_meta_key: str | None
    deployment: str | None
    always_allow: HostPatterns
    report_mode: bool
    #: ``ALLOWED_HOSTS`` when it lists hosts (report mode stays within it), else ``None``.
    site_allowed_hosts: HostPatterns | None
    #: Path prefixes ``HOSTGUARD_ADMIN_HOSTS`` restricts, without their trailing slash (a
    #: quick test that may match more than the rules do), and the rules.
    restricted_prefixes: tuple[str, ...]
    path_rules: tuple[PathRule, ...]


class TLSPermission(NamedTuple):
    """What the TLS permission endpoint (:mod:`hostguard.views`) reads on every ask."""

    askers: TrustedProxies
    deployment: str | None
    any_deployment: bool
    wildcards: bool
    #: ``request.META`` key of ``HOSTGUARD_SNI_HEADER``, or ``None``.
    sni_meta_key: str | None
    #: Seconds in which each distinct log line is written once (``HOSTGUARD_AUDIT_WINDOW_SECONDS``).
    log_window: int


# --- the settings object ---------------------------------------------------------------


class Settings:
    """Typed access to hostguard's settings (read on access) and their parsed forms (cached)."""

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
    def PUSH(self) -> bool:
        """Listen for changes PostgreSQL pushes (``NOTIFY``), beside polling."""
        return bool(self._get("HOSTGUARD_PUSH"))

    @property
    def DATABASE(self) -> str:
        return str(self._get("HOSTGUARD_DATABASE"))

    @property
    def MODE(self) -> str:
        """``"enforce"`` (refuse) or ``"report"`` (record and log; see :attr:`report_mode`)."""
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
    def TENANT_FIELDS(self) -> tuple[str, ...]:
        value = self._get("HOSTGUARD_TENANT_FIELDS")
        return (value,) if isinstance(value, str) else tuple(value)

    @property
    def TLS_ANY_DEPLOYMENT(self) -> bool:
        """Let the TLS permission endpoint allow hosts of tenants every deployment serves."""
        return bool(self._get("HOSTGUARD_TLS_ANY_DEPLOYMENT"))

    @property
    def TLS_WILDCARDS(self) -> bool:
        """Let the TLS permission endpoint allow names only a wildcard authority claims."""
        return bool(self._get("HOSTGUARD_TLS_WILDCARDS"))

    # --- parsed and cached ------------------------------------------------------------

    @cached_property
    def always_allow(self) -> HostPatterns:
        """``HOSTGUARD_ALWAYS_ALLOW``, parsed."""
        return parse_host_patterns(self.ALWAYS_ALLOW)

    @cached_property
    def site_allowed_hosts(self) -> HostPatterns | None:
        """Django's ``ALLOWED_HOSTS``, parsed, or ``None`` when it lets every host through (``'*'``).

        Report mode never serves more than this list did (see :mod:`hostguard.decide`).
        """
        patterns = parse_host_patterns(getattr(settings, "ALLOWED_HOSTS", None) or [])
        return None if patterns.allow_all else patterns

    @cached_property
    def trusted_proxies(self) -> TrustedProxies:
        """``HOSTGUARD_TRUSTED_PROXIES``, parsed; raises ImproperlyConfigured (check E013 says why)."""
        try:
            return parse_trusted_proxies(self._get("HOSTGUARD_TRUSTED_PROXIES"))
        except InvalidSetting as exc:
            raise ImproperlyConfigured("HOSTGUARD_TRUSTED_PROXIES: %s" % exc.message) from None

    @cached_property
    def tls_permission(self) -> TLSPermission:
        """The TLS permission endpoint's settings; raises ImproperlyConfigured (check E013 says why)."""
        value = self._get("HOSTGUARD_TLS_ASK_FROM")
        try:
            askers = parse_ask_from(value, self.trusted_proxies if value is None else None)
        except InvalidSetting as exc:
            raise ImproperlyConfigured("HOSTGUARD_TLS_ASK_FROM: %s" % exc.message) from None
        header = self.SNI_HEADER
        return TLSPermission(
            askers=askers,
            deployment=self.DEPLOYMENT,
            any_deployment=self.TLS_ANY_DEPLOYMENT,
            wildcards=self.TLS_WILDCARDS,
            sni_meta_key=meta_key(header) if header else None,
            log_window=self.AUDIT_WINDOW_SECONDS,
        )

    @cached_property
    def path_rules(self) -> tuple[PathRule, ...]:
        """``HOSTGUARD_ADMIN_HOSTS``, parsed; raises ImproperlyConfigured (check E014 says why)."""
        try:
            return parse_admin_hosts(self._get("HOSTGUARD_ADMIN_HOSTS"))
        except InvalidSetting as exc:
            raise ImproperlyConfigured("HOSTGUARD_ADMIN_HOSTS: %s" % exc.message) from None

    @cached_property
    def report_mode(self) -> bool:
        return self.MODE == "report"

    @cached_property
    def audit_limits(self) -> tuple[int, int, bool]:
        """(``AUDIT_WINDOW_SECONDS``, ``AUDIT_MAX_KEYS``, ``AUDIT``), read on every refusal."""
        return self.AUDIT_WINDOW_SECONDS, self.AUDIT_MAX_KEYS, self.AUDIT

    @cached_property
    def json_paths(self) -> tuple[str, ...]:
        return self.JSON_PATHS

    @cached_property
    def gate(self) -> GateSettings:
        trust_host = bool(getattr(settings, "USE_X_FORWARDED_HOST", False))
        trust_port = bool(getattr(settings, "USE_X_FORWARDED_PORT", False))
        header = self.SNI_HEADER
        rules = self.path_rules
        return GateSettings(
            exempt_paths=self.EXEMPT_PATHS,
            plain_scheme=getattr(settings, "SECURE_PROXY_SSL_HEADER", None) is None,
            host_alone=not (trust_host or trust_port),
            trust_forwarded_host=trust_host,
            trust_forwarded_port=trust_port,
            sni_meta_key=meta_key(header) if header else None,
            deployment=self.DEPLOYMENT,
            always_allow=self.always_allow,
            report_mode=self.report_mode,
            site_allowed_hosts=self.site_allowed_hosts,
            restricted_prefixes=tuple(rule.prefix.rstrip("/") or "/" for rule in rules),
            path_rules=rules,
        )

    def clear(self) -> None:
        """Drop every cached value (on ``setting_changed``, and in a forked worker)."""
        for name in [name for name in self.__dict__ if not name.startswith("__")]:
            del self.__dict__[name]


conf = Settings()


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith(("HOSTGUARD_", "USE_X_FORWARDED", "SECURE_PROXY_SSL_HEADER", "ALLOWED_HOSTS")):
        conf.clear()
