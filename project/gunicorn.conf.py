"""gunicorn settings for the demo site; every value can be set from the environment."""

import os

_port = os.environ.get("PORT", "8000")
bind = os.environ.get("BIND", f"127.0.0.1:{_port}").split(",")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
accesslog = "-"
errorlog = "-"
# Trust X-Forwarded-* (scheme, for SECURE_PROXY_SSL_HEADER) only from these peers.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "10"))
