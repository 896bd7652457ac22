"""The responses hostguard answers with: 421, 400 and 503, as HTML or problem+json.

Rendered without the request (no context processors, so no session, CSRF token or
cookie is ever touched), never echoing the Host or naming a tenant, deployment or
internal host. Bodies are cached per template and language once rendered.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext, gettext_noop

from hostguard.conf import derived

JSON_TYPES = ("application/problem+json", "application/json")
_NEGOTIATED = ("text/html", *JSON_TYPES)

_bodies: dict[tuple[str, str, str], bytes] = {}


def wants_json(request: HttpRequest) -> bool:
    json_paths = derived.json_paths
    if json_paths and request.path_info.startswith(json_paths):
        return True
    accept = request.META.get("HTTP_ACCEPT", "")
    if "json" not in accept:
        return False
    try:
        return request.get_preferred_type(_NEGOTIATED) in JSON_TYPES
    except Exception:  # a hostile Accept header must not turn a 421 into a 500
        return False


def _language(request: HttpRequest) -> str:
    if not settings.USE_I18N:
        return settings.LANGUAGE_CODE
    try:
        return translation.get_language_from_request(request)
    except Exception:
        return settings.LANGUAGE_CODE


def _body(kind: str, language: str, render: Any) -> bytes:
    key = (kind, language, settings.LANGUAGE_CODE)
    body = _bodies.get(key)
    if body is None:
        with translation.override(language):
            body = render()
        if not settings.DEBUG:
            _bodies[key] = body
    return body


def _response(request: HttpRequest, status: int, template: str, title: str, detail: str, error: str) -> HttpResponse:
    language = _language(request)
    if wants_json(request):

        def render() -> bytes:
            problem = {
                "type": "about:blank",
                "title": gettext(title),
                "status": status,
                "detail": gettext(detail),
                "error": error,
            }
            return json.dumps(problem, ensure_ascii=False).encode()

        body = _body(f"json:{status}", language, render)
        content_type = "application/problem+json"
    else:
        body = _body(
            template,
            language,
            lambda: render_to_string(template, {"status": status, "title": gettext(title)}).encode(),
        )
        content_type = "text/html; charset=utf-8"
    response = HttpResponse(b"" if request.method == "HEAD" else body, status=status, content_type=content_type)
    if request.method != "HEAD":
        response["Content-Length"] = str(len(body))
    response["Content-Language"] = language
    # A 421 or 400 describes this connection, not the resource: never cache it.
    response["Cache-Control"] = "no-store"
    # hostguard logs its refusals itself, summarised (hostguard.mismatch) and its
    # outages once per refresh interval (hostguard.policy). Django's own line per
    # response would be one WARNING per 421/400, and one ERROR mailed to ADMINS per
    # 503 for the whole length of a database outage.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


# Marked for translation here; translated when rendered.
MISDIRECTED_TITLE = gettext_noop("Misdirected Request")
MISDIRECTED_DETAIL = gettext_noop(
    "This server is not configured to answer requests for this host. "
    "Your client may retry the request on a new connection."
)
MALFORMED_TITLE = gettext_noop("Bad Request")
MALFORMED_DETAIL = gettext_noop("The request's Host header is missing or malformed.")
UNAVAILABLE_TITLE = gettext_noop("Service Unavailable")
UNAVAILABLE_DETAIL = gettext_noop("This server cannot check which hosts it serves right now. Please retry shortly.")


def misdirected(request: HttpRequest) -> HttpResponse:
    return _response(request, 421, "hostguard/421.html", MISDIRECTED_TITLE, MISDIRECTED_DETAIL, "misdirected_request")


def malformed(request: HttpRequest) -> HttpResponse:
    return _response(request, 400, "hostguard/400.html", MALFORMED_TITLE, MALFORMED_DETAIL, "malformed_host")


def unavailable(request: HttpRequest, retry_after: int) -> HttpResponse:
    response = _response(
        request, 503, "hostguard/503.html", UNAVAILABLE_TITLE, UNAVAILABLE_DETAIL, "service_unavailable"
    )
    response["Retry-After"] = str(retry_after)
    return response


@receiver(setting_changed)
def _on_setting_changed(**kwargs: Any) -> None:
    _bodies.clear()
