"""The benchmark site with a view that reads ``request.tenant`` at ``/``: the same URL as the
plain site's trivial view, so that the two variants differ in the view alone."""

from __future__ import annotations

from django.urls import path

from benchmarks.site import tenant

urlpatterns = [path("", tenant)]
