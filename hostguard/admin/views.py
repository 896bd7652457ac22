"""The "Check a host" page: the live verdict for a host, decided exactly as the middleware does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from hostguard.admin import reasons
from hostguard.admin.forms import CheckHostForm
from hostguard.admin.links import tenant_admin_url
from hostguard.conf import conf
from hostguard.decide import decide, probe
from hostguard.decision import ALLOW, EXEMPT, HIDDEN, MALFORMED, MISDIRECTED, UNAVAILABLE, Decision
from hostguard.hosts import to_unicode
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
    decision: Decision
    authority: Authority | None
    here: str
    policy_version: int | None
    policy_size: int | None

    @property
    def verdict_label(self) -> str:
        return str(reasons.VERDICTS.get(self.verdict, self.verdict))

    @property
    def served(self) -> bool:
        return self.status == 200

    @property
    def status(self) -> int:
        if self.decision is not None and self.decision.reported:
            return 200
        return {ALLOW: 200, EXEMPT: 200, MISDIRECTED: 421, MALFORMED: 400, HIDDEN: 404}.get(self.verdict, 503)

    @property
    def unicode_host(self) -> str:
        return to_unicode(self.host) if self.host else ""


def check_host(text: str, scheme: str | None = None, port: int | None = None, sni: str | None = None) -> CheckResult:
    """What a request for ``text`` (a Host value or URL) gets from this process right now.

    Decided by :func:`hostguard.decide.decide`, the middleware's own pipeline, from
    this process's current snapshot. Raises ``InvalidHost`` for a contradiction.
    """
    described = probe(text, scheme, port, sni)
    facts = described.facts
    snapshot = policy.obtain()
    decision = decide(facts, snapshot, conf.gate)
    here = conf.DEPLOYMENT or ""
    authority = None
    if decision.authority_id is not None:
        authority = Authority.objects.select_related("tenant__deployment").filter(pk=decision.authority_id).first()
    reason = decision.reason
    if decision.verdict == ALLOW and decision.tenant_id is None:
        reason = reasons.ALWAYS_ALLOWED
    elif decision.verdict in (EXEMPT, HIDDEN, UNAVAILABLE):
        reason = decision.verdict
    explanation = reasons.explain(
        reason,
        host=decision.host,
        port=decision.port or "",
        scheme=decision.scheme,
        authority=decision.authority,
        tenant=authority.tenant.name if authority is not None else decision.tenant_slug,
        deployment=decision.deployment,
        here=here or gettext("(none: HOSTGUARD_DEPLOYMENT is not set)"),
        sni=decision.sni,
        path=facts.path,
    )
    if decision.reported:
        explanation += " " + gettext("HOSTGUARD_MODE is “report”: the request is logged as refused, then served.")
    return CheckResult(
        header=facts.host or "",
        converted_from=described.converted_from,
        host=decision.host if decision.verdict != MALFORMED else "",
        port=decision.port,
        scheme=decision.scheme or facts.scheme,
        verdict=decision.verdict,
        reason=reason,
        explanation=explanation,
        decision=decision,
        authority=authority,
        here=here,
        policy_version=snapshot.version if snapshot is not None else None,
        policy_size=snapshot.size if snapshot is not None else None,
    )


def check_host_view(model_admin: ModelAdmin, request: HttpRequest) -> HttpResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    form = CheckHostForm(request.GET if "host" in request.GET else None)
    result = None
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        result = check_host(data["host"], data["scheme"] or None, data["port"], data["sni"] or None)
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Check a host"),
        "subtitle": None,
        "opts": opts,
        "app_label": opts.app_label,
        "form": form,
        "result": result,
        "tenant_url": tenant_admin_url(model_admin.admin_site, result.authority.tenant_id)
        if result is not None and result.authority is not None
        else None,
        "here": conf.DEPLOYMENT,
        "exempt_paths": conf.EXEMPT_PATHS,
        "media": model_admin.media + form.media,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/hostguard/check_host.html", context)
