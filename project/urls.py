from django.contrib import admin
from django.urls import path

from project import views

urlpatterns = [
    path("", views.home, name="home"),
    path("api/whoami", views.whoami, name="whoami"),
    path("api/tenant", views.tenant, name="tenant"),
    path("api/ping", views.ping, name="ping"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
