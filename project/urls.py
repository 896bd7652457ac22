from django.contrib import admin
from django.urls import include, path

from project import views

urlpatterns = [
    path("", views.home, name="home"),
    path("api/whoami", views.whoami, name="whoami"),
    path("api/ping", views.ping, name="ping"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # hostguard's endpoints: /_hostguard/tls-permission is what Caddy's on-demand TLS asks.
    path("_hostguard/", include("hostguard.urls")),
]
