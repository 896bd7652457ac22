"""Settings for the hostguard demo site, read from the environment (django-environ).

Every value has a default that makes ``make run`` work on a fresh machine; set the
environment variable (or put it in a ``.env`` file next to manage.py) to change it.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# A key generated per checkout would log everyone out on every restart; the default
# is only for the demo and is refused by `manage.py check --deploy`.
SECRET_KEY = env.str("SECRET_KEY", default="django-insecure-hostguard-demo-key-change-me-in-production")

# hostguard decides which hosts are served; Django's own check must let them all in.
ALLOWED_HOSTS = ["*"]

HOSTGUARD_DEPLOYMENT = env.str("HOSTGUARD_DEPLOYMENT", default="local")
HOSTGUARD_ALWAYS_ALLOW = env.list("HOSTGUARD_ALWAYS_ALLOW", default=["localhost", "127.0.0.1", "[::1]"])
# The operator's admin answers only on these hosts: a customer's domain gets a plain
# 404 there, so it never shows the operator's login page. Likewise Prometheus metrics
# (/metrics, docs/metrics.md) and hostguard's own endpoints (/_hostguard/tls-permission,
# which Caddy asks at the always-allowed 127.0.0.1): a tenant's host must never reach them.
_operator_hosts = env.list("HOSTGUARD_ADMIN_HOSTS", default=HOSTGUARD_ALWAYS_ALLOW)
HOSTGUARD_ADMIN_HOSTS = {
    "/admin/": _operator_hosts,
    "/metrics": HOSTGUARD_ALWAYS_ALLOW,
    "/_hostguard/": _operator_hosts,
}
HOSTGUARD_EXEMPT_PATHS = ["/healthz"]
HOSTGUARD_JSON_PATHS = ["/api/"]
HOSTGUARD_REFRESH_SECONDS = env.float("HOSTGUARD_REFRESH_SECONDS", default=2.0)
# On PostgreSQL, changes arrive by push (LISTEN/NOTIFY); polling stays as the fallback.
HOSTGUARD_PUSH = env.bool("HOSTGUARD_PUSH", default=True)
# TLS ending at a proxy (README "Deploying"): the header carrying the SNI name,
# honoured only from these peers (addresses or CIDRs of REMOTE_ADDR).
HOSTGUARD_SNI_HEADER = env.str("HOSTGUARD_SNI_HEADER", default="") or None
HOSTGUARD_TRUSTED_PROXIES = env.list("HOSTGUARD_TRUSTED_PROXIES", default=[])
# Caddy's on-demand TLS (docs/caddy.md): who may ask for certificates (unset: loopback
# and HOSTGUARD_TRUSTED_PROXIES), and whether tenants of other deployments and names
# under wildcard authorities get them.
HOSTGUARD_TLS_ASK_FROM = env.list("HOSTGUARD_TLS_ASK_FROM", default=None)
HOSTGUARD_TLS_ANY_DEPLOYMENT = env.bool("HOSTGUARD_TLS_ANY_DEPLOYMENT", default=False)
HOSTGUARD_TLS_WILDCARDS = env.bool("HOSTGUARD_TLS_WILDCARDS", default=False)
# "report" logs and records would-be 421s but lets the requests through (rollout).
HOSTGUARD_MODE = env.str("HOSTGUARD_MODE", default="enforce")
HOSTGUARD_AUDIT_FLUSH_SECONDS = env.float("HOSTGUARD_AUDIT_FLUSH_SECONDS", default=1.0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "hostguard",
]

MIDDLEWARE = [
    "hostguard.middleware.HostGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several gunicorn workers share one file: wait for a lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("timeout", 20)
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # An unreachable database must fail a connection attempt in seconds, not hang it:
    # hostguard then serves its last snapshot (or answers 503) and retries.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    # Keep connections (checked before reuse): with the push, every change wakes every
    # worker's refresher, and a new connection each time would cost more than the change.
    # DATABASE_URL's ?conn_max_age=0 turns it off.
    DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Set STATIC_ROOT and run `manage.py collectstatic` in production; without it,
# whitenoise serves the admin's assets straight from the installed apps, so no
# extra step stands between a fresh checkout and a styled admin.
STATIC_ROOT = env.str("STATIC_ROOT", default="") or None
WHITENOISE_USE_FINDERS = STATIC_ROOT is None
WHITENOISE_AUTOREFRESH = DEBUG

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "hostguard": {"handlers": ["stderr"], "level": env.str("HOSTGUARD_LOG_LEVEL", default="INFO")},
        # Refused hosts, at WARNING (never ERROR: they must not mail the admins); shown
        # even when HOSTGUARD_LOG_LEVEL quiets the rest of hostguard.
        "hostguard.mismatch": {"level": env.str("HOSTGUARD_MISMATCH_LOG_LEVEL", default="WARNING")},
    },
}
