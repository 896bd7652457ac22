"""The TLS permission endpoint: Caddy's on-demand TLS asks it before it gets a certificate.

A site mounts it from :mod:`hostguard.urls` (the demo at ``/_hostguard/tls-permission``)
and points Caddy's ``on_demand_tls { ask … }`` at it; docs/caddy.md is the recipe.
``GET …?domain=NAME`` answers, never cached, with the answer's name as a plain-text body
(``allowed``, ``refused``, ``forbidden``, ``malformed``, ``unavailable``):

* **200** when a certificate for NAME is wanted (:mod:`hostguard.permission` decides,
  from the process's snapshot: no query, even while the database is down);
* **403** when it is not — or when the asker may not ask: a peer that is not in
  ``HOSTGUARD_TLS_ASK_FROM`` (by default loopback and ``HOSTGUARD_TRUSTED_PROXIES``),
  or a request that came over a client's TLS connection (it carries a TLS server
  name): Caddy asks directly, so such a request is a visitor's, relayed by the proxy;
* **400** for a missing or malformed ``domain``;
* **503** with ``Retry-After`` while the process has no snapshot yet (fail closed).

Every answer is counted (:func:`hostguard.metrics.count_tls_permission`) and logged on
``hostguard.tls``, each distinct line once per ``HOSTGUARD_AUDIT_WINDOW_SECONDS`` and
process; the body never repeats the name asked for.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Hashable

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed

from hostguard import metrics, permission
from hostguard.conf import TLSPermission, TrustedProxies, conf
from hostguard.escaping import clean
from hostguard.policy import policy
from hostguard.sni import ENVIRON_KEY as SNI_ENVIRON_KEY

logger = logging.getLogger("hostguard.tls")

ALLOWED = "allowed"
REFUSED = "refused"
MALFORMED = "malformed"
FORBIDDEN = "forbidden"
UNAVAILABLE = "unavailable"

# Status per answer. The body is the answer's name and a newline: a token for Caddy,
# scripts and logs (like the ``error`` code of hostguard's 421), not a message to translate.
_STATUSES = {ALLOWED: 200, REFUSED: 403, MALFORMED: 400, FORBIDDEN: 403, UNAVAILABLE: 503}
_BODIES = {answer: ("%s\n" % answer).encode() for answer in _STATUSES}

#: The longest name a log line repeats (a DNS name has at most 253 characters).
MAX_LOGGED_NAME = 255
#: Distinct names logged per window; the rest are counted in the next line written.
LOGGED_NAMES_PER_WINDOW = 100


class LogWindow:
    """Which log lines to write: each key once per window, at most ``limit`` keys a window."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.started = float("-inf")
        self.keys: set[Hashable] = set()
        self.skipped = 0
        self.lock = threading.Lock()

    def reset(self) -> None:
        """Start a new window now (tests)."""
        with self.lock:
            self.started = float("-inf")
            self.keys = set()
            self.skipped = 0

    def admit(self, key: Hashable, window: float, now: float | None = None) -> int | None:
        """``None``: skip this line; else how many lines were skipped since the last one written."""
        if now is None:
            now = time.monotonic()
        with self.lock:
            if now - self.started >= window:
                self.started = now
                self.keys = set()
            if key in self.keys or len(self.keys) >= self.limit:
                self.skipped += 1
                return None
            self.keys.add(key)
            skipped, self.skipped = self.skipped, 0
            return skipped


# One line per window for refused askers, whoever they are: a scanner must not flood the log.
forbidden_lines = LogWindow(1)
answer_lines = LogWindow(LOGGED_NAMES_PER_WINDOW)


def tls_permission(request: HttpRequest) -> HttpResponse:
    """Whether a TLS server may get a certificate for ``?domain=NAME``; see the module's docstring."""
    settings = conf.tls_permission
    meta = request.META
    peer = meta.get("REMOTE_ADDR")
    if not askers.admit(settings.askers, peer):
        return _forbidden(peer, "it is not in HOSTGUARD_TLS_ASK_FROM", settings)
    if SNI_ENVIRON_KEY in meta or (settings.sni_meta_key is not None and settings.sni_meta_key in meta):
        return _forbidden(peer, "it came over a client's TLS connection (it carries a TLS server name)", settings)
    if request.method not in ("GET", "HEAD"):
        metrics.count_tls_permission(MALFORMED)
        not_allowed = HttpResponseNotAllowed(["GET", "HEAD"])
        not_allowed["Cache-Control"] = "no-store"
        return not_allowed
    values = domains(request)
    try:
        # One name per ask: "?domain=a&domain=b" is not something Caddy sends.
        name = permission.certificate_name(values[0] if len(values) == 1 else "")
    except permission.MalformedName:
        _log(MALFORMED, "&".join(values), "", settings)
        return _answer(MALFORMED)
    snapshot = policy.fresh or policy.obtain()
    if snapshot is None:
        _log(UNAVAILABLE, name, "no list of hosts loaded yet", settings)
        response = _answer(UNAVAILABLE)
        response["Retry-After"] = str(max(1, math.ceil(conf.REFRESH_SECONDS)))
        return response
    decided = permission.decide(
        snapshot, name, settings.deployment, any_deployment=settings.any_deployment, wildcards=settings.wildcards
    )
    answer = ALLOWED if decided.allowed else REFUSED
    _log(answer, name, decided.reason, settings)
    return _answer(answer)


def domains(request: HttpRequest) -> list[str]:
    """The query's ``domain`` values. Caddy sends one, ``domain=NAME``, with nothing to
    unescape in a DNS name: that is read straight from the query string."""
    query: str = request.META.get("QUERY_STRING", "")
    if query.startswith("domain=") and query.isascii() and "&" not in query and "%" not in query and "+" not in query:
        return [query[7:]]
    return request.GET.getlist("domain")


class Askers:
    """Whether a peer may ask, remembered per peer address for the current setting."""

    SIZE = 1024

    def __init__(self) -> None:
        self.askers: TrustedProxies | None = None
        self.verdicts: dict[str | None, bool] = {}

    def admit(self, askers: TrustedProxies, peer: str | None) -> bool:
        verdicts = self.verdicts
        if self.askers is not askers or len(verdicts) >= self.SIZE:
            # A new setting (or a flood of peers) starts afresh.
            self.askers, self.verdicts = askers, {}
            verdicts = self.verdicts
        verdict = verdicts.get(peer)
        if verdict is None:
            verdict = verdicts[peer] = askers.trusts(peer)
        return verdict


askers = Askers()


def _answer(answer: str) -> HttpResponse:
    metrics.count_tls_permission(answer)
    response = HttpResponse(_BODIES[answer], status=_STATUSES[answer], content_type="text/plain; charset=utf-8")
    # An answer holds until the tenants change: no cache between Caddy and the site may keep it.
    response["Cache-Control"] = "no-store"
    # Logged here, once per window (below); Django's own line would be one WARNING per refusal.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def _forbidden(peer: str | None, why: str, settings: TLSPermission) -> HttpResponse:
    skipped = forbidden_lines.admit(None, settings.log_window)
    if skipped is not None:
        logger.warning(
            "hostguard refused a TLS permission ask from %s: %s. Only the TLS server may ask, directly "
            "(HOSTGUARD_TLS_ASK_FROM; by default loopback and HOSTGUARD_TRUSTED_PROXIES). This process logs "
            "one such line per %d s%s.",
            clean(peer, 64) if peer else "a peer with no address (a Unix socket)",
            why,
            settings.log_window,
            "; %d more were refused since the last one" % skipped if skipped else "",
        )
    return _answer(FORBIDDEN)


def _log(answer: str, name: str, reason: str, settings: TLSPermission) -> None:
    name = clean(name, MAX_LOGGED_NAME)  # escaped, and bounded before it is remembered
    skipped = answer_lines.admit((answer, name), settings.log_window)
    if skipped is None:
        return
    logger.info(
        "hostguard TLS permission %s: domain=%s%s%s",
        answer,
        name,
        " reason=%s" % reason if reason else "",
        " (%d more answers since the last line: each is logged once per %d s)" % (skipped, settings.log_window)
        if skipped
        else "",
    )
