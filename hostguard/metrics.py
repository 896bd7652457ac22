"""Prometheus metrics: refusals, the policy's version, size and age, failed refreshes.

Optional: they need ``prometheus_client`` (``pip install "hostguard[prometheus]"``).
Without it every function here does nothing, and :func:`metrics_view` answers 503
with a message that says what to install.

What is counted, where:

* :func:`refused` — every 421 and 400 the middleware answers, and every would-be 421
  that report mode let through (``enforced="false"``);
* :func:`refresh_failed` — every failed attempt to load or refresh the policy;
* :func:`count_tls_permission` — every answer to a TLS server's "may I get a
  certificate for this name?" question;
* the policy gauges — read from :mod:`hostguard.policy` when scraped. Under a
  multi-process server (``PROMETHEUS_MULTIPROC_DIR`` set, as ``project/gunicorn.conf.py``
  does) a scrape reaches one worker, so each worker also writes its own figures
  when its policy is confirmed (:func:`policy_confirmed`, once per refresh, off the
  request path), and the scrape combines the live workers' figures.

The allowed request pays nothing: nothing here runs for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final, Protocol

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_safe

from hostguard.conf import conf
from hostguard.decision import ALLOW, EXEMPT, Decision

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.metrics_core import GaugeMetricFamily, Metric
    from prometheus_client.multiprocess import MultiProcessCollector
except ImportError:  # the extra is not installed: metrics are off
    AVAILABLE = False
else:
    AVAILABLE = True

if TYPE_CHECKING:
    from hostguard.snapshot import Snapshot

logger = logging.getLogger("hostguard.metrics")

#: What :func:`count_tls_permission` accepts: a fixed set, so the label stays small.
TLS_ANSWERS = ("allowed", "refused", "malformed", "unavailable", "forbidden")

REFUSALS = "hostguard_refusals"
REFRESH_FAILURES = "hostguard_policy_refresh_failures"
TLS_PERMISSION = "hostguard_tls_permission"
VERSION = "hostguard_policy_version"
AUTHORITIES = "hostguard_policy_authorities"
CONFIRMED = "hostguard_policy_confirmed_timestamp_seconds"
AGE = "hostguard_policy_age_seconds"

HELP = {
    REFUSALS: "Requests hostguard refused (421, 400), and would-be 421s report mode served (enforced=false).",
    REFRESH_FAILURES: "Attempts to load or refresh the policy from the database that failed.",
    TLS_PERMISSION: "Answers to a TLS server asking whether it may get a certificate for a name.",
    VERSION: "Policy version in use (multi-process: the oldest any live worker uses).",
    AUTHORITIES: "Authorities in the policy in use (multi-process: as of the latest confirmation).",
    CONFIRMED: "When the database last confirmed the policy is current (multi-process: the least recent worker).",
    AGE: "Seconds since the database last confirmed the policy is current (multi-process: the stalest worker).",
}

# The multi-process modes of the policy gauges. "live": a dead worker's figures leave
# with it (gunicorn.conf.py's child_exit). The oldest version and the oldest
# confirmation show a worker that stopped refreshing; the size is the newest one.
VERSION_MODE: Final = "livemin"
AUTHORITIES_MODE: Final = "livemostrecent"
CONFIRMED_MODE: Final = "livemin"


class Metrics:
    """hostguard's instruments, registered on one registry.

    ``multiprocess``: whether values live in ``PROMETHEUS_MULTIPROC_DIR`` files shared
    by several processes (``None``: as ``prometheus_client`` was set up).
    """

    def __init__(self, registry: CollectorRegistry | None = None, multiprocess: bool | None = None) -> None:
        if registry is None:
            registry = REGISTRY
        self.registry = registry
        self.multiprocess = multiprocess_mode() if multiprocess is None else multiprocess
        self.refusals = Counter(REFUSALS, HELP[REFUSALS], ("reason", "deployment", "enforced"), registry=registry)
        self.refresh_failures = Counter(REFRESH_FAILURES, HELP[REFRESH_FAILURES], ("deployment",), registry=registry)
        self.tls_permission = Counter(TLS_PERMISSION, HELP[TLS_PERMISSION], ("answer", "deployment"), registry=registry)
        # Labelled gauges: a worker writes nothing until it has figures (an unlabelled
        # one would start every worker's file at 0, which "min" would then report).
        if self.multiprocess:
            self.version = Gauge(
                VERSION, HELP[VERSION], ("deployment",), registry=registry, multiprocess_mode=VERSION_MODE
            )
            self.authorities = Gauge(
                AUTHORITIES, HELP[AUTHORITIES], ("deployment",), registry=registry, multiprocess_mode=AUTHORITIES_MODE
            )
            self.confirmed = Gauge(
                CONFIRMED, HELP[CONFIRMED], ("deployment",), registry=registry, multiprocess_mode=CONFIRMED_MODE
            )
        else:
            registry.register(PolicyCollector())
        # Label children by key: labels() takes a lock and validates on every call.
        self._refusals: dict[tuple[str, str | None, bool], Any] = {}

    def count_refusal(self, decision: Decision) -> None:
        key = (decision.reason, conf.gate.deployment, decision.reported)
        child = self._refusals.get(key)
        if child is None:
            child = self._refusals[key] = self.refusals.labels(
                decision.reason, key[1] or "", "false" if decision.reported else "true"
            )
        child.inc()

    def publish(self, snapshot: Snapshot | None, confirmed_at: float | None) -> None:
        """Write this process's policy figures (multi-process mode only: otherwise they are read when scraped)."""
        if not self.multiprocess:
            return
        deployment = conf.DEPLOYMENT or ""
        if snapshot is not None:
            self.authorities.labels(deployment).set(snapshot.size)
            self.version.labels(deployment).set(snapshot.version)
        if confirmed_at is not None:
            self.confirmed.labels(deployment).set(confirmed_at)

    def exposition_registry(self) -> CollectorRegistry:
        """The registry a scrape reads: every live worker's figures in multi-process mode."""
        if not self.multiprocess:
            return self.registry
        # The scraping worker's own figures, as of now rather than its last refresh.
        source = _source
        if source is not None:
            self.publish(source.snapshot, source.confirmed_at)
        registry = CollectorRegistry()
        registry.register(WithAge(MultiProcessCollector(None)))  # type: ignore[no-untyped-call]
        return registry


class PolicyCollector:
    """The policy gauges, read from this process's policy when scraped (single process)."""

    def collect(self) -> Iterator[Metric]:
        policy = _source
        if policy is None:
            return
        deployment = conf.DEPLOYMENT or ""
        snapshot = policy.snapshot
        if snapshot is not None:
            yield gauge(VERSION, [(deployment, snapshot.version)])
            yield gauge(AUTHORITIES, [(deployment, snapshot.size)])
        confirmed = policy.confirmed_at
        if confirmed is not None:
            yield gauge(CONFIRMED, [(deployment, confirmed)])
            yield gauge(AGE, [(deployment, max(0.0, time.time() - confirmed))])

    def describe(self) -> list[Metric]:
        # Nothing to check for clashes beyond the names; and no policy read at registration.
        return [gauge(name, []) for name in (VERSION, AUTHORITIES, CONFIRMED, AGE)]


class WithAge:
    """A collector's metrics, plus the policy's age computed from its confirmation time."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        for metric in self.inner.collect():
            yield metric
            if metric.name == CONFIRMED:
                yield gauge(AGE, [(s.labels.get("deployment", ""), max(0.0, now - s.value)) for s in metric.samples])


def gauge(name: str, samples: Iterable[tuple[str, float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, HELP[name], labels=("deployment",))
    for deployment, value in samples:
        family.add_metric([deployment], value)
    return family


def multiprocess_mode() -> bool:
    """Whether ``prometheus_client`` keeps values in ``PROMETHEUS_MULTIPROC_DIR`` files (set and a directory)."""
    try:
        MultiProcessCollector(None)  # type: ignore[no-untyped-call]
    except ValueError:
        return False
    return True


# --- what the rest of hostguard calls ----------------------------------------------------

_active: Metrics | None = None


class PolicySource(Protocol):
    """What the policy gauges read: :data:`hostguard.policy.policy` (see :func:`watch`)."""

    @property
    def snapshot(self) -> Snapshot | None: ...

    confirmed_at: float | None


#: The policy whose figures a scrape reads; the policy registers itself (:func:`watch`),
#: so this module never imports it.
_source: PolicySource | None = None


def watch(source: PolicySource) -> None:
    """Read the policy gauges from ``source`` (called once by :mod:`hostguard.policy`)."""
    global _source
    _source = source


_lock = threading.Lock()
_failed_once = False
_missing_logged = False


def active() -> Metrics | None:
    """The instruments hostguard counts into, or ``None`` when metrics are off."""
    return _active


def activate(metrics: Metrics | None) -> Metrics | None:
    """Count into ``metrics`` from now on (``None``: not at all); returns the previous
    instruments. For tests and benchmarks: a site never needs it."""
    global _active
    with _lock:
        previous, _active = _active, metrics
    return previous


def refused(decision: Decision) -> None:
    """Count a refusal the middleware answered, or a would-be 421 report mode served."""
    metrics = _active
    if metrics is not None:
        try:
            metrics.count_refusal(decision)
        except Exception:
            _failed("count a refusal")


def refresh_failed() -> None:
    """Count a failed attempt to load or refresh the policy."""
    metrics = _active
    if metrics is not None:
        try:
            metrics.refresh_failures.labels(conf.DEPLOYMENT or "").inc()
        except Exception:
            _failed("count a failed refresh")


def policy_confirmed(snapshot: Snapshot | None) -> None:
    """The database just confirmed ``snapshot`` is current (called by the policy's refresher)."""
    metrics = _active
    if metrics is not None and metrics.multiprocess:
        try:
            metrics.publish(snapshot, time.time())
        except Exception:
            _failed("write the policy's figures")


def count_tls_permission(answer: str) -> None:
    """Count one answer to a TLS server's permission question: one of :data:`TLS_ANSWERS`."""
    if answer not in TLS_ANSWERS:
        raise ValueError("answer must be one of %s, not %r" % (", ".join(TLS_ANSWERS), answer))
    metrics = _active
    if metrics is not None:
        try:
            metrics.tls_permission.labels(answer, conf.DEPLOYMENT or "").inc()
        except Exception:
            _failed("count a TLS permission answer")


def _failed(what: str) -> None:
    # A metric must never change a response: say so once, carry on.
    global _failed_once
    if not _failed_once:
        _failed_once = True
        logger.warning("hostguard could not %s for Prometheus; metrics may be incomplete", what, exc_info=True)


def _log_missing() -> None:
    # An operator mounted the endpoint without the extra: once per process is enough.
    global _missing_logged
    if not _missing_logged:
        _missing_logged = True
        logger.error("%s", MISSING)


# --- the endpoint --------------------------------------------------------------------------

# Lazy, so importing this module (a URLconf does) never reads settings.
MISSING = gettext_lazy(
    "hostguard's metrics need prometheus_client, which is not installed: "
    'pip install "hostguard[prometheus]" (or prometheus-client) and restart.'
)
OFF = gettext_lazy("hostguard's metrics are off in this process.")
UNREADABLE = gettext_lazy("hostguard could not collect its metrics; its log says why.")


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus exposition of hostguard's metrics (and every other metric in the
    process's registry); mount it at ``/metrics``.

    It answers only requests that hostguard let in without a tenant — an
    ``HOSTGUARD_ALWAYS_ALLOW`` host, or an exempt path — and a plain 404 on a
    tenant's host. Keep it to the operator's hosts with ``HOSTGUARD_ADMIN_HOSTS``.
    """
    decision: Decision | None = getattr(request, "hostguard", None)
    if decision is None or decision.verdict not in (ALLOW, EXEMPT) or decision.tenant_id is not None:
        from hostguard import responses

        return responses.not_found(request)
    metrics = _active
    if metrics is None:
        if not AVAILABLE:
            _log_missing()
        return HttpResponse(
            str(MISSING if not AVAILABLE else OFF) + "\n",
            status=503,
            content_type="text/plain; charset=utf-8",
            headers={"Cache-Control": "no-store"},
        )
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    try:
        body = encoder(metrics.exposition_registry())
    except Exception:
        # E.g. PROMETHEUS_MULTIPROC_DIR removed under a running server: say so, never a 500.
        logger.exception("hostguard could not collect its metrics")
        return HttpResponse(
            str(UNREADABLE) + "\n",
            status=503,
            content_type="text/plain; charset=utf-8",
            headers={"Cache-Control": "no-store"},
        )
    return HttpResponse(body, content_type=content_type, headers={"Cache-Control": "no-store"})


if AVAILABLE:
    _active = Metrics()
