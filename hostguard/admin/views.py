"""The "Check a host" page: the live verdict for a host, decided exactly as the middleware does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from hostguard.admin import reasons
from hostguard.admin.forms import CheckHostForm
from hostguard.conf import always_allowed, conf, derived
from hostguard.decision import ALLOW, MALFORMED, MALFORMED_HOST, MISDIRECTED, Decision
from hostguard.hosts import DEFAULT_PORTS, MalformedHost, parse_host_header, to_unicode
from hostguard.models import Authority
from hostguard.policy import policy

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin


@dataclass(frozen=True)
class CheckResult:
    header: str
    converted_from: str
    host: str
    port: int | None
    scheme: str
    verdict: str
    reason: str
    explanation: str
    decision: Decision | None
    authority: Authority | None
    here: str
    policy_version: int | None
    policy_size: int | None

    @property
    def verdict_label(self) -> str:
        return str(reasons.VERDICTS.get(self.verdict, self.verdict))

    @property
    def served(self) -> bool:
        return self.verdict == ALLOW

    @property
    def status(self) -> int:
        return {ALLOW: 200, MISDIRECTED: 421, MALFORMED: 400}.get(self.verdict, 503)

    @property
    def unicode_host(self) -> str:
        return to_unicode(self.host) if self.host else ""


def check_host(header: str, scheme: str, port: int | None = None, converted_from: str = "") -> CheckResult:
    """What a request for ``header`` over ``scheme`` gets from this process right now.

    The same steps as :class:`~hostguard.middleware.HostGuardMiddleware`: strict
    parsing, ``HOSTGUARD_ALWAYS_ALLOW``, then the current policy snapshot.
    """
    here = derived.deployment or ""
    common: dict[str, Any] = {"header": header, "converted_from": converted_from, "scheme": scheme, "here": here}
    try:
        host, header_port = parse_host_header(header)
    except MalformedHost:
        return CheckResult(
            host="",
            port=None,
            verdict=MALFORMED,
            reason=MALFORMED_HOST,
            explanation=reasons.explain(MALFORMED_HOST),
            decision=None,
            authority=None,
            policy_version=None,
            policy_size=None,
            **common,
        )
    effective_port = port if port is not None else header_port
    if effective_port is None:
        effective_port = DEFAULT_PORTS[scheme]
    if always_allowed(host):
        return CheckResult(
            host=host,
            port=effective_port,
            verdict=ALLOW,
            reason=reasons.ALWAYS_ALLOWED,
            explanation=reasons.explain(reasons.ALWAYS_ALLOWED, host=host),
            decision=None,
            authority=None,
            policy_version=None,
            policy_size=None,
            **common,
        )
    snapshot = policy.current()
    if snapshot is None:
        return CheckResult(
            host=host,
            port=effective_port,
            verdict="unavailable",
            reason="unavailable",
            explanation=gettext(
                "The policy cannot be loaded from the database right now: every request gets "
                "503 Service Unavailable until it can."
            ),
            decision=None,
            authority=None,
            policy_version=None,
            policy_size=None,
            **common,
        )
    decision = snapshot.decide(host, effective_port, scheme, derived.deployment)
    authority = None
    if decision.authority_id is not None:
        authority = Authority.objects.select_related("tenant__deployment").filter(pk=decision.authority_id).first()
    tenant_name = authority.tenant.name if authority is not None else decision.tenant_slug
    explanation = reasons.explain(
        decision.reason,
        host=host,
        port=effective_port,
        scheme=scheme,
        authority=decision.authority,
        tenant=tenant_name,
        deployment=decision.deployment,
        here=here or gettext("(none: HOSTGUARD_DEPLOYMENT is not set)"),
    )
    return CheckResult(
        host=host,
        port=effective_port,
        verdict=decision.verdict,
        reason=decision.reason,
        explanation=explanation,
        decision=decision,
        authority=authority,
        policy_version=snapshot.version,
        policy_size=snapshot.size,
        **common,
    )


def check_host_view(model_admin: ModelAdmin, request: HttpRequest) -> HttpResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    form = CheckHostForm(request.GET if "host" in request.GET else None)
    result = None
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        result = check_host(data["header"], data["effective_scheme"], data["port"], data["converted_from"])
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Check a host"),
        "subtitle": None,
        "opts": opts,
        "app_label": opts.app_label,
        "form": form,
        "result": result,
        "here": derived.deployment,
        "exempt_paths": conf.EXEMPT_PATHS,
        "media": model_admin.media + form.media,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/hostguard/check_host.html", context)
