"""The demo site's settings without hostguard: its middleware removed, the same view.

``BENCH_ALLOWED_HOSTS`` (comma-separated) sets Django's ``ALLOWED_HOSTS``; by default
``["*"]``, no gate at all.
"""

import os

from project.settings import *  # noqa: F403
from project.settings import MIDDLEWARE

ROOT_URLCONF = "benchmarks.site"
MIDDLEWARE = [name for name in MIDDLEWARE if name != "hostguard.middleware.HostGuardMiddleware"]
ALLOWED_HOSTS = [host for host in os.environ.get("BENCH_ALLOWED_HOSTS", "*").split(",") if host]
