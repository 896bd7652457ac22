"""The gate: decide every request's host before anything else in the site runs."""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, empty

from hostguard import audit, responses, signals, sni
from hostguard.conf import always_allowed, conf, derived
from hostguard.decision import ALLOW, EXEMPT, MALFORMED, MALFORMED_HOST, Decision, Snapshot
from hostguard.hosts import DEFAULT_PORTS, HostPort, MalformedHost, parse_host_header, request_port
from hostguard.policy import policy
from hostguard.sni import ENVIRON_KEY as SNI_ENVIRON_KEY

EXEMPT_DECISION = Decision(EXEMPT)


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
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        response = self.gate(request, policy.current)
        # Only a refusal (or a reported one) is signalled, and only to someone listening.
        if signals.host_mismatch.receivers and (response is not None or derived.report_mode):
            signals.send_host_mismatch(type(self), request)
        if response is not None:
            return response
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        snapshot = policy.ready()
        if snapshot is None:
            snapshot = await sync_to_async(policy.current)()
        response = self.gate(request, lambda: snapshot)
        if signals.host_mismatch.receivers and (response is not None or derived.report_mode):
            await signals.asend_host_mismatch(type(self), request)
        if response is not None:
            return response
        result: Awaitable[HttpResponse] = self.get_response(request)
        return await result

    def gate(self, request: HttpRequest, get_snapshot: Callable[[], Snapshot | None]) -> HttpResponse | None:
        """Decide ``request``; return the refusal, or ``None`` to let it through."""
        exempt_paths, plain_scheme, allowed, no_sni_header = derived.gate
        if exempt_paths and request.path_info.startswith(exempt_paths):
            request.hostguard = EXEMPT_DECISION  # type: ignore[attr-defined]
            request.tenant = None  # type: ignore[attr-defined]
            return None
        meta = request.META
        if plain_scheme and type(request) is WSGIRequest:
            # What is_secure() answers here, without its settings lookup.
            scheme = "https" if meta.get("wsgi.url_scheme") == "https" else "http"
        else:
            scheme = "https" if request.is_secure() else "http"
        # Served hosts repeat on every request. Parsing, HOSTGUARD_ALWAYS_ALLOW and the
        # policy lookup are functions of the Host header, the scheme, the settings and
        # the snapshot, so an allow is remembered per (Host, scheme) for one snapshot.
        remembered = None if allowed is None else allowed.get((meta.get("HTTP_HOST"), scheme))
        if (
            remembered is not None
            and no_sni_header
            and SNI_ENVIRON_KEY not in meta
            # policy.ready(), inlined (a call costs more than this whole test): the
            # remembered snapshot is still current. A forked worker starts with no
            # remembered allows (see the end of this module), so the full path runs
            # once in it and starts its policy's poller.
            and remembered[0] is policy._snapshot
            and not policy._stale
        ):
            # _origin_form(), inlined (a call costs more than this test).
            target = meta.get("RAW_URI") or meta.get("REQUEST_URI") or meta.get("PATH_INFO")
            if not target or target[0] == "/":
                request.hostguard = remembered[1]  # type: ignore[attr-defined]
                request.tenant = LazyTenant(remembered[2])  # type: ignore[attr-defined]
                return None
        try:
            host, port = request_authority(request)
        except MalformedHost as exc:
            refusal = Decision(MALFORMED, MALFORMED_HOST, audit.raw_host(exc), scheme=scheme)
            request.hostguard = refusal  # type: ignore[attr-defined]
            audit.mismatch(request, refusal)
            return responses.malformed(request)
        effective_port = port if port is not None else DEFAULT_PORTS[scheme]
        if always_allowed(host):
            request.hostguard = Decision(ALLOW, "", host, effective_port, scheme)  # type: ignore[attr-defined]
            request.tenant = None  # type: ignore[attr-defined]
            return None
        snapshot = get_snapshot()
        if snapshot is None:
            return responses.unavailable(request, max(1, math.ceil(conf.REFRESH_SECONDS)))
        decision = snapshot.decide(host, effective_port, scheme, derived.deployment)
        load_tenant = None
        if decision.verdict == ALLOW:
            load_tenant = partial(_load_tenant, decision.tenant_id)
            _remember(meta, scheme, snapshot, decision, load_tenant)
        # sni.check leaves the decision as it is when neither source of an SNI name is there.
        if decision.verdict == ALLOW and (SNI_ENVIRON_KEY in meta or not no_sni_header):
            decision = sni.check(meta, snapshot, decision)
        if decision.verdict != ALLOW and derived.report_mode:
            # Report-only: count and log the would-be 421, then serve the request.
            decision = replace(decision, reported=True)
        request.hostguard = decision  # type: ignore[attr-defined]
        if decision.verdict != ALLOW:
            audit.mismatch(request, decision)
        if decision.verdict == ALLOW or decision.reported:
            if load_tenant is None and decision.tenant_id is not None:
                load_tenant = partial(_load_tenant, decision.tenant_id)
            request.tenant = None if load_tenant is None else LazyTenant(load_tenant)  # type: ignore[attr-defined]
            return None
        return responses.misdirected(request)


REMEMBERED_HOSTS = 4096
_SNAPSHOT = object()  # the key under which derived.allowed names the snapshot it was filled from


def _request_target(meta: dict[str, Any]) -> str | None:
    # WSGI servers pass the target as RAW_URI (gunicorn) or REQUEST_URI (uWSGI,
    # mod_wsgi); uvicorn's h11 parser leaves an absolute-form target in the path.
    target: str | None = meta.get("RAW_URI") or meta.get("REQUEST_URI") or meta.get("PATH_INFO")
    return target


def _origin_form(meta: dict[str, Any]) -> bool:
    """Whether the request target is not absolute-form (as _absolute_target reads it)."""
    target = _request_target(meta)
    return not target or target[0] == "/"


def _remember(
    meta: dict[str, Any], scheme: str, snapshot: Snapshot, decision: Decision, load_tenant: Callable[[], Any] | None
) -> None:
    raw = meta.get("HTTP_HOST")
    if raw is None or not derived.host_alone or not _origin_form(meta):
        return  # an absolute-form target or a trusted X-Forwarded-* header took part
    allowed = derived.allowed
    if allowed.get(_SNAPSHOT) is not snapshot or len(allowed) > REMEMBERED_HOSTS:
        # A new snapshot retires every entry: drop them, and the old snapshot with them.
        allowed.clear()
        allowed[_SNAPSHOT] = snapshot
    allowed[(raw, scheme)] = (snapshot, decision, load_tenant)


def request_authority(request: HttpRequest) -> HostPort:
    """The authority a request targets, by the matching rules; raises MalformedHost."""
    meta = request.META
    raw = meta.get("HTTP_HOST")
    target = _absolute_target(meta)
    if target is not None:
        target_scheme, target_authority = target
        parsed_target = parse_host_header(target_authority)
        if raw is None:
            # HTTP/1.1 requires Host (RFC 9112 §3.2); only 1.0 may rely on the target.
            if _protocol(request) != "HTTP/1.0":
                raise MalformedHost("")
            raw = target_authority
        elif not _same_authority(parse_host_header(raw), parsed_target, target_scheme):
            raise MalformedHost(raw)
    if raw is None:
        raise MalformedHost("")
    # X-Forwarded-Host replaces a present Host when the site trusts it; it never
    # stands in for a missing one.
    if derived.trust_forwarded_host and "HTTP_X_FORWARDED_HOST" in meta:
        raw = meta["HTTP_X_FORWARDED_HOST"]
    parsed = parse_host_header(raw)
    if derived.trust_forwarded_port and "HTTP_X_FORWARDED_PORT" in meta:
        forwarded = meta["HTTP_X_FORWARDED_PORT"]
        return HostPort(parsed.host, request_port(forwarded, forwarded))
    return parsed


def _absolute_target(meta: dict[str, Any]) -> tuple[str, str] | None:
    """(scheme, authority) of an absolute-form request target, if the server passed one."""
    uri = _request_target(meta)
    if not uri or uri[0] == "/" or uri == "*":
        return None
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return None
    authority = rest
    for delimiter in "/?#":
        authority = authority.partition(delimiter)[0]
    return scheme.lower(), authority


def _protocol(request: HttpRequest) -> str:
    scope = getattr(request, "scope", None)  # ASGI requests carry no SERVER_PROTOCOL
    if scope is not None:
        return "HTTP/%s" % scope.get("http_version", "1.1")
    return str(request.META.get("SERVER_PROTOCOL", ""))


def _same_authority(host: HostPort, target: HostPort, target_scheme: str) -> bool:
    # Host is the target URI's authority (RFC 9110 §7.2): a port either leaves out
    # is the default of the target's scheme, not of the connection's.
    default = DEFAULT_PORTS.get(target_scheme)
    return host.host == target.host and (host.port or default) == (target.port or default)


class LazyTenant(SimpleLazyObject):
    """``request.tenant``: the allowed host's Tenant, read from the database on first use."""

    # Not loaded yet. A class default instead of an instance attribute, and _setupfunc
    # set past LazyObject's __setattr__ hook: SimpleLazyObject.__init__ costs more
    # than the rest of the allow path.
    _wrapped = empty

    def __init__(self, func: Callable[[], Any]) -> None:
        object.__setattr__(self, "_setupfunc", func)


def _load_tenant(tenant_id: int | None) -> Any:
    from hostguard.models import Tenant

    return Tenant.objects.select_related("deployment").get(pk=tenant_id)


if hasattr(os, "register_at_fork"):
    # Empties the remembered allows (and the cached settings) in a forked worker.
    os.register_at_fork(after_in_child=derived.clear)
