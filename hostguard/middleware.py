"""The gate: decide every request's host before anything else in the site runs.

The decision is :func:`hostguard.decide.decide`'s; this module reads what a request
carries, answers refusals, sets ``request.hostguard`` and ``request.tenant``, and
keeps one shortcut: an allow is remembered per (Host header, scheme) for as long as
the policy's snapshot stays current (see :class:`RememberedAllows`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse

from hostguard import audit, metrics, responses, signals, sni
from hostguard.conf import GateSettings, conf
from hostguard.decide import RequestFacts, decide, restrict
from hostguard.decision import ALLOW, EXEMPT, HIDDEN, MALFORMED, UNAVAILABLE, Decision
from hostguard.policy import policy
from hostguard.snapshot import Snapshot
from hostguard.sni import ENVIRON_KEY as SNI_ENVIRON_KEY
from hostguard.tenants import LazyTenant


class HostGuardMiddleware:
    """Answer 421 for hosts this deployment does not serve, 400 for malformed ones.

    Place it first in ``MIDDLEWARE``: a refused request must not reach sessions,
    CSRF or any view, because browsers replay a 421'd request elsewhere.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        if not apps.is_installed("hostguard"):
            # Without the app there are no models, templates or system checks: fail at startup, clearly.
            raise ImproperlyConfigured("HostGuardMiddleware needs 'hostguard' in INSTALLED_APPS.")
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        # The site is loading (a worker booting, the ASGI app being built): read the
        # hosts now, so the first requests find them.
        policy.preload()
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        decision = self.decision(request)
        if decision is None:
            return self.get_response(request)
        if decision.verdict == UNAVAILABLE:
            decision = self.full_decision(request, decision.scheme, policy.obtain())
        response = self.answer(request, decision)
        if signals.host_mismatch.receivers and (response is not None or decision.reported):
            signals.send_host_mismatch(type(self), request)
        return self.get_response(request) if response is None else response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        decision = self.decision(request)
        if decision is not None:
            if decision.verdict == UNAVAILABLE:
                # In the background it may wait (at start only) for another thread: not on
                # the thread Django keeps for sync work. In the foreground it reads the
                # database, on that thread, as sync code does.
                snapshot = await sync_to_async(policy.obtain, thread_sensitive=not policy.background)()
                decision = self.full_decision(request, decision.scheme, snapshot)
            response = self.answer(request, decision)
            if signals.host_mismatch.receivers and (response is not None or decision.reported):
                await signals.asend_host_mismatch(type(self), request)
            if response is not None:
                return response
        result: Awaitable[HttpResponse] = self.get_response(request)
        return await result

    def decision(self, request: HttpRequest) -> Decision | None:
        """The decision for ``request``, or ``None`` when a remembered allow let it in already."""
        gate = conf.gate
        meta = request.META
        if gate.plain_scheme and type(request) is WSGIRequest:
            # What is_secure() answers here, without its settings lookup.
            scheme = "https" if meta.get("wsgi.url_scheme") == "https" else "http"
        else:
            scheme = "https" if request.is_secure() else "http"
        if gate.host_alone and remembered.admit(request, meta, scheme, policy.fresh, gate):
            return None
        return self.full_decision(request, scheme, policy.fresh)

    def full_decision(self, request: HttpRequest, scheme: str, snapshot: Snapshot | None) -> Decision:
        """The decision for ``request`` from ``snapshot``, by :func:`hostguard.decide.decide`."""
        gate = conf.gate
        meta = request.META
        facts = RequestFacts(
            meta.get("HTTP_HOST"),
            scheme,
            request.path_info,
            request_target(meta),
            meta.get("HTTP_X_FORWARDED_HOST") if gate.trust_forwarded_host else None,
            meta.get("HTTP_X_FORWARDED_PORT") if gate.trust_forwarded_port else None,
            sni.request_sni(meta, gate.sni_meta_key),
            request.path,
        )
        decision = decide(facts, snapshot, gate)
        tenant_id = decision.tenant_id
        if tenant_id is not None and (decision.verdict == ALLOW or decision.reported):
            # request.tenant comes from the snapshot this decision was made with, when first read.
            request.tenant = LazyTenant(snapshot, tenant_id)  # type: ignore[attr-defined]
        if decision.verdict == ALLOW and not decision.reported and gate.host_alone and facts.sni is None:
            remembered.remember(meta, decision, snapshot)
        return decision

    def answer(self, request: HttpRequest, decision: Decision) -> HttpResponse | None:
        """Set what the site reads on ``request``; return the refusal, or ``None`` to serve it."""
        request.hostguard = decision  # type: ignore[attr-defined]
        verdict = decision.verdict
        if verdict in (ALLOW, EXEMPT) or decision.reported:
            if decision.reported:
                # Report-only: count and log the would-be 421, then serve the request.
                audit.mismatch(request, decision)
                metrics.refused(decision)
            if decision.tenant_id is None:
                request.tenant = None  # type: ignore[attr-defined]
            # else full_decision() set it, from the snapshot it decided with.
            return None
        if verdict == UNAVAILABLE:
            return responses.unavailable(request, max(1, math.ceil(conf.REFRESH_SECONDS)))
        if verdict == HIDDEN:
            return responses.not_found(request)
        audit.mismatch(request, decision)
        metrics.refused(decision)
        if verdict == MALFORMED:
            return responses.malformed(request)
        return responses.misdirected(request)


def request_target(meta: dict[str, Any]) -> str | None:
    """The request target as the server passed it.

    WSGI servers pass it as ``RAW_URI`` (gunicorn) or ``REQUEST_URI`` (uWSGI,
    mod_wsgi); uvicorn's h11 parser leaves an absolute-form target in the path.
    """
    target: str | None = meta.get("RAW_URI") or meta.get("REQUEST_URI") or meta.get("PATH_INFO")
    return target


class RememberedAllow(NamedTuple):
    """An allow decided in full, and the snapshot it was decided with."""

    snapshot: Snapshot
    decision: Decision


class RememberedAllows:
    """Served hosts repeat on every request: an allow is remembered per (Host, scheme).

    Parsing, ``HOSTGUARD_ALWAYS_ALLOW`` and the lookup are functions of the Host
    header, the scheme, the settings and the snapshot, so an entry holds while its
    snapshot is the policy's current one and the settings do not change. It is used
    only where Host alone decides: no trusted ``X-Forwarded-*``, an origin-form
    target and no TLS server name to check. A path ``HOSTGUARD_ADMIN_HOSTS`` keeps
    to some hosts is checked again on every request, as :func:`decide` does.
    """

    SIZE = 4096

    def __init__(self) -> None:
        self.entries: dict[tuple[str | None, str], RememberedAllow] = {}
        self.snapshot: Snapshot | None = None

    def admit(
        self, request: HttpRequest, meta: dict[str, Any], scheme: str, snapshot: Snapshot | None, gate: GateSettings
    ) -> bool:
        """Let ``request`` in from memory if it can be; return whether it was."""
        entry = self.entries.get((meta.get("HTTP_HOST"), scheme))
        if entry is None or entry.snapshot is not snapshot or snapshot is None:
            return False
        if gate.sni_meta_key is not None or SNI_ENVIRON_KEY in meta:
            return False
        path = request.path_info
        if gate.exempt_paths and path.startswith(gate.exempt_paths):
            return False
        target = meta.get("RAW_URI") or meta.get("REQUEST_URI") or meta.get("PATH_INFO")
        if target and target[0] != "/":
            return False  # absolute-form: decided in full, against Host
        decision = entry.decision
        if gate.restricted_prefixes and restrict(decision, path, request.path, gate) is not decision:
            return False  # a 404: decided in full
        request.hostguard = decision  # type: ignore[attr-defined]
        tenant_id = decision.tenant_id
        request.tenant = None if tenant_id is None else LazyTenant(snapshot, tenant_id)  # type: ignore[attr-defined]
        return True

    def remember(self, meta: dict[str, Any], decision: Decision, snapshot: Snapshot | None) -> None:
        """Remember an allow decided in full from ``snapshot`` with Host alone: a
        tenant's host, or one ``HOSTGUARD_ALWAYS_ALLOW`` lets through (no tenant)."""
        raw = meta.get("HTTP_HOST")
        if raw is None or snapshot is None:
            return
        target = request_target(meta)
        if target and target[0] != "/":
            return
        if self.snapshot is not snapshot or len(self.entries) >= self.SIZE:
            # A new snapshot retires every entry: drop them, and the old snapshot with them.
            self.entries = {}
            self.snapshot = snapshot
        self.entries[(raw, decision.scheme)] = RememberedAllow(snapshot, decision)

    def clear(self, **kwargs: Any) -> None:
        self.entries = {}
        self.snapshot = None


remembered = RememberedAllows()
setting_changed.connect(remembered.clear, dispatch_uid="hostguard.remembered_allows")


if hasattr(os, "register_at_fork"):
    # A forked worker starts with nothing remembered and settings read afresh.
    os.register_at_fork(after_in_child=remembered.clear)
    os.register_at_fork(after_in_child=conf.clear)
