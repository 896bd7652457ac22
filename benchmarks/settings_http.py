"""The demo site's settings (``project.settings``, hostguard first in MIDDLEWARE), serving
the benchmark's trivial view, for the benchmark over HTTP (``bench_http``)."""

from project.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.site"
