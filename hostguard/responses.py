"""The responses hostguard answers with: 421, 400 and 503, as HTML or problem+json.

Rendered without the request (no context processors, so no session, CSRF token or
cookie is ever touched), never echoing the Host or naming a tenant, deployment or
internal host. Bodies and headers are prepared once per template, format and language.
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

from hostguard.conf import conf

JSON_TYPES = ("application/problem+json", "application/json")
_NEGOTIATED = ("text/html", *JSON_TYPES)

# Per (template, status, JSON?, language, HEAD?): the body, its Content-Type and the
# other headers, rendered once (outside DEBUG) — a refusal is answered at the cost of
# the cheapest response Django can build.
_prepared: dict[tuple[str, int, bool, str, bool], tuple[bytes, str, dict[str, Any] | None]] = {}
# (language cookie, Accept-Language) → the language Django negotiates for them.
_languages: dict[tuple[str | None, str], str] = {}
_LANGUAGES_SIZE = 1024
# (USE_I18N, LANGUAGE_CODE, LANGUAGE_COOKIE_NAME, DEBUG), read once per settings change.
_settings: tuple[bool, str, str, bool] | None = None


def _read_settings() -> tuple[bool, str, str, bool]:
    global _settings
    if _settings is None:
        _settings = (settings.USE_I18N, settings.LANGUAGE_CODE, settings.LANGUAGE_COOKIE_NAME, settings.DEBUG)
    return _settings


def wants_json(request: HttpRequest) -> bool:
    json_paths = conf.json_paths
    if json_paths and request.path_info.startswith(json_paths):
        return True
    accept = request.META.get("HTTP_ACCEPT", "")
    if "json" not in accept:
        return False
    try:
        return request.get_preferred_type(_NEGOTIATED) in JSON_TYPES
    except Exception:  # a hostile Accept header must not turn a 421 into a 500
        return False


def _language(request: HttpRequest, use_i18n: bool, language_code: str, cookie_name: str) -> str:
    """``get_language_from_request()``, remembered per language cookie and Accept-Language."""
    if not use_i18n:
        return language_code
    meta = request.META
    # A cookie whose name is not in the header cannot be there: skip parsing the cookies.
    cookie = request.COOKIES.get(cookie_name) if cookie_name in meta.get("HTTP_COOKIE", "") else None
    accept = meta.get("HTTP_ACCEPT_LANGUAGE", "")
    key = (cookie, accept)
    language = _languages.get(key)
    if language is None:
        try:
            language = translation.get_language_from_request(request)
        except Exception:
            language = language_code
        if len(_languages) >= _LANGUAGES_SIZE:
            _languages.clear()
        _languages[key] = language
    return language


def _prepare(
    status: int, template: str, title: str, detail: str, error: str, as_json: bool, language: str, head: bool
) -> tuple[bytes, str, dict[str, Any] | None]:
    with translation.override(language):
        if as_json:
            problem = {
                "type": "about:blank",
                "title": gettext(title),
                "status": status,
                "detail": gettext(detail),
                "error": error,
            }
            body = json.dumps(problem, ensure_ascii=False).encode()
            content_type = "application/problem+json"
        else:
            body = render_to_string(template, {"status": status, "title": gettext(title)}).encode()
            content_type = "text/html; charset=utf-8"
    # The headers as Django's own API checks and stores them, kept to be copied into
    # each response: setting them one by one would double the cost of a refusal.
    headers = HttpResponse(content_type=content_type)
    if not head:
        headers["Content-Length"] = str(len(body))
    headers["Content-Language"] = language
    # A 421 or 400 describes this connection, not the resource: never cache it.
    headers["Cache-Control"] = "no-store"
    store = header_store(headers)
    entries = {key: item for key, item in store.items() if key != "content-type"} if store is not None else None
    return (b"" if head else body), content_type, entries


def _response(request: HttpRequest, status: int, template: str, title: str, detail: str, error: str) -> HttpResponse:
    use_i18n, language_code, cookie_name, debug = _read_settings()
    language = _language(request, use_i18n, language_code, cookie_name)
    as_json = wants_json(request)
    head = request.method == "HEAD"
    key = (template, status, as_json, language, head)
    prepared = _prepared.get(key)
    if prepared is None:
        prepared = _prepare(status, template, title, detail, error, as_json, language, head)
        if not debug:
            _prepared[key] = prepared
    body, content_type, entries = prepared
    response = HttpResponse(body, status=status, content_type=content_type)
    store = header_store(response)
    if entries is not None and store is not None:
        store.update(entries)
    else:  # a Django whose headers are kept differently: the public way
        if not head:
            response["Content-Length"] = str(len(body))
        response["Content-Language"] = language
        response["Cache-Control"] = "no-store"
    # hostguard logs its refusals itself, summarised (hostguard.mismatch) and its
    # outages once per refresh interval (hostguard.policy). Django's own line per
    # response would be one WARNING per 421/400, and one ERROR mailed to ADMINS per
    # 503 for the whole length of a database outage.
    mark_logged(response)
    return response


# --- the two places hostguard reaches past Django's public API ------------------------
# Both pay on every refusal; tests/test_fast_paths.py pins that this Django still works
# the way they assume, so an upgrade that changes it fails a test, never a request.


def header_store(response: HttpResponse) -> dict[str, tuple[str, str]] | None:
    """Django's own dict of a response's headers (lower-case name → (name, value)), or
    ``None`` when this Django keeps them otherwise (then headers are set the public way).

    Copying prepared entries into it is one dict update instead of a checked
    ``response[name] = value`` per header: half the cost of a refusal.
    """
    store = getattr(response.headers, "_store", None)
    return store if type(store) is dict else None


def mark_logged(response: HttpResponse) -> None:
    """Keep Django's ``django.request`` logger from logging this response again."""
    response._has_been_logged = True  # type: ignore[attr-defined]


# Marked for translation here; translated when rendered.
MISDIRECTED_TITLE = gettext_noop("Misdirected Request")
MISDIRECTED_DETAIL = gettext_noop(
    "This server is not configured to answer requests for this host. "
    "Your client may retry the request on a new connection."
)
MALFORMED_TITLE = gettext_noop("Bad Request")
MALFORMED_DETAIL = gettext_noop("The request's Host header is missing or malformed.")
NOT_FOUND_TITLE = gettext_noop("Not Found")
NOT_FOUND_DETAIL = gettext_noop("The requested resource was not found on this server.")
UNAVAILABLE_TITLE = gettext_noop("Service Unavailable")
UNAVAILABLE_DETAIL = gettext_noop("This server cannot check which hosts it serves right now. Please retry shortly.")


def misdirected(request: HttpRequest) -> HttpResponse:
    return _response(request, 421, "hostguard/421.html", MISDIRECTED_TITLE, MISDIRECTED_DETAIL, "misdirected_request")


def malformed(request: HttpRequest) -> HttpResponse:
    return _response(request, 400, "hostguard/400.html", MALFORMED_TITLE, MALFORMED_DETAIL, "malformed_host")


def not_found(request: HttpRequest) -> HttpResponse:
    """A plain 404 for a path ``HOSTGUARD_ADMIN_HOSTS`` keeps to other hosts: it says nothing
    of why, so a customer's domain does not even reveal that an admin exists."""
    return _response(request, 404, "hostguard/404.html", NOT_FOUND_TITLE, NOT_FOUND_DETAIL, "not_found")


def unavailable(request: HttpRequest, retry_after: int) -> HttpResponse:
    response = _response(
        request, 503, "hostguard/503.html", UNAVAILABLE_TITLE, UNAVAILABLE_DETAIL, "service_unavailable"
    )
    response["Retry-After"] = str(retry_after)
    return response


@receiver(setting_changed)
def _on_setting_changed(**kwargs: Any) -> None:
    global _settings
    _settings = None
    _prepared.clear()
    _languages.clear()
