from django.contrib import admin
from django.urls import include, path

from hostguard.metrics import metrics_view
from project import views

urlpatterns = [
    path("", views.home, name="home"),
    path("api/whoami", views.whoami, name="whoami"),
    path("api/tenant", views.tenant, name="tenant"),
    path("api/ping", views.ping, name="ping"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # Prometheus; HOSTGUARD_ADMIN_HOSTS keeps it to the always-allowed hosts (settings.py).
    path("metrics", metrics_view, name="metrics"),
    # hostguard's endpoints: /_hostguard/tls-permission is what Caddy's on-demand TLS asks.
    path("_hostguard/", include("hostguard.urls")),
]
