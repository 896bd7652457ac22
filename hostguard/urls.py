"""hostguard's URLs, for a site to mount; the demo mounts them under ``/_hostguard/``::

    path("_hostguard/", include("hostguard.urls")),

``tls-permission`` is the endpoint Caddy's on-demand TLS asks (:mod:`hostguard.views`).
Keep the prefix away from tenants' hosts with ``HOSTGUARD_ADMIN_HOSTS`` (docs/caddy.md).
"""

from __future__ import annotations

from django.urls import path

from hostguard import views

app_name = "hostguard"

urlpatterns = [
    path("tls-permission", views.tls_permission, name="tls-permission"),
]
