"""Test settings: the demo site's, made fast and deterministic."""

import project.settings as _demo
from project.settings import *  # noqa: F403

# Unit tests run inside a transaction that other threads cannot see, so the
# background poller must not wake during them; freshness across processes is
# tested end to end against real gunicorn workers (tests/test_e2e_*.py).
HOSTGUARD_REFRESH_SECONDS = 3600
# Likewise the audit log's writer: tests call hostguard.audit.flush() themselves.
HOSTGUARD_AUDIT_FLUSH_SECONDS = 3600
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING = {"version": 1, "disable_existing_loggers": False}
# The admin tests use the admin through tenant hosts too (the lockout guard exists for
# sites that allow that); the demo's own HOSTGUARD_ADMIN_HOSTS is tested on its own
# (tests/test_hardening.py, and end to end on gunicorn).
DEMO_ADMIN_HOSTS = dict(_demo.HOSTGUARD_ADMIN_HOSTS)
HOSTGUARD_ADMIN_HOSTS = {}
