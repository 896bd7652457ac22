"""Requests through Django's real ASGI handler, with exactly the headers a test gives.

Django's ``AsyncClient`` always sends ``host: testserver`` and appends the test's
own Host to it, which makes every Host a comma list (malformed to hostguard); so
these helpers build the ASGI scope themselves.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_started
from django.db import close_old_connections
from django.http import HttpResponse


def asgi_get(path: str, headers: dict[str, str], peer: str = "127.0.0.1") -> HttpResponse:
    """GET ``path`` with ``headers`` (``x_forwarded_sni`` → ``x-forwarded-sni``) from ``peer``."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()],
        "client": (peer, 50000),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []
    received: list[bool] = []

    async def receive() -> dict[str, Any]:
        if received:  # the client stays connected until the handler is done
            await asyncio.get_running_loop().create_future()
        received.append(True)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    # As Django's test clients do: the handler would otherwise close the test's
    # connection (inside its transaction) at request start, which PostgreSQL notices.
    request_started.disconnect(close_old_connections)
    try:
        async_to_sync(ASGIHandler())(scope, receive, send)
    finally:
        request_started.connect(close_old_connections)
    start = sent[0]
    response = HttpResponse(b"".join(message.get("body", b"") for message in sent[1:]), status=start["status"])
    for name, value in start["headers"]:
        response[name.decode()] = value.decode()
    return response
