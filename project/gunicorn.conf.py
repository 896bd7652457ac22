"""gunicorn settings for the demo site; every value can be set from the environment.

- ``BIND``: addresses to listen on, comma-separated; wins over ``PORT``.
- ``PORT``: listen on 0.0.0.0:$PORT, as platforms that set PORT expect. With
  neither, 127.0.0.1:8000 (the demo's ``make run``).
- ``WEB_CONCURRENCY``: worker processes (2); ``GUNICORN_THREADS``: threads per
  worker (1, the sync worker).
- ``FORWARDED_ALLOW_IPS``: peers whose X-Forwarded-* headers gunicorn trusts.
- ``SSL_CERTFILE``, ``SSL_KEYFILE``: terminate TLS in gunicorn; each connection's
  SNI name then reaches hostguard as ``environ["hostguard.sni"]``.
- ``GUNICORN_CONTROL_SOCKET``: the Unix socket ``gunicornc`` talks to, or ``off``
  for none. By default each instance gets its own, named after its first bind
  address: ``gunicorn-127.0.0.1-8000.ctl`` in ``$XDG_RUNTIME_DIR``, or in
  ``~/.gunicorn/`` without it (``gunicornc -s ~/.gunicorn/gunicorn-127.0.0.1-8000.ctl``).
  gunicorn's own default is one path per user, which every instance started from
  this file would share: the last one started would take it over, and stopping any
  one would delete it for the others — several deployments on one host could not
  be told apart.
- ``PROMETHEUS_MULTIPROC_DIR``: where the workers keep their Prometheus metrics
  (hostguard[prometheus], docs/metrics.md) so that a scrape of any worker counts
  them all. By default each instance makes its own temporary directory and removes
  it at exit; a directory you name is emptied of metric files at start (one
  directory per instance). A worker that exits takes its gauges with it.
"""

import importlib.util
import os
import re
import shutil
import tempfile

if "BIND" in os.environ:
    bind = [address.strip() for address in os.environ["BIND"].split(",") if address.strip()]
elif "PORT" in os.environ:
    bind = [f"0.0.0.0:{os.environ['PORT']}"]
else:
    bind = ["127.0.0.1:8000"]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
accesslog = "-"
errorlog = "-"
# Trust X-Forwarded-* (scheme, for SECURE_PROXY_SSL_HEADER) only from these peers.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "10"))


def _control_socket_path(first_bind):
    """Where gunicorn would put its socket, named after this instance's bind address."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    directory = runtime if runtime and os.path.isdir(runtime) else os.path.join(os.path.expanduser("~"), ".gunicorn")
    name = re.sub(r"[^A-Za-z0-9.]+", "-", first_bind).strip("-") or "default"
    return os.path.join(directory, f"gunicorn-{name}.ctl")


_control = os.environ.get("GUNICORN_CONTROL_SOCKET", "").strip()
if _control.lower() in ("off", "none", "false", "0"):
    control_socket_disable = True
else:
    control_socket = _control or _control_socket_path(bind[0] if bind else "")

if os.environ.get("SSL_CERTFILE"):
    certfile = os.environ["SSL_CERTFILE"]
    keyfile = os.environ.get("SSL_KEYFILE") or None


def ssl_context(config, default_ssl_context_factory):
    """gunicorn's TLS context, plus a callback that records each connection's SNI name."""
    from hostguard.sni import record_sni

    context = default_ssl_context_factory()
    context.sni_callback = record_sni
    return context


def pre_fork(server, worker):
    """With ``--preload``, bring the master's policy up to date before each fork: a worker
    (re)started later begins with what the others serve, not with the boot-time read."""
    if not server.cfg.preload_app:
        return
    from hostguard.policy import policy

    policy.preload()  # at most 2 s, on a thread of its own: a hanging database never holds the master


def post_worker_init(worker):
    """Start the worker's refresher at once (the site's middleware has read the policy as
    it loaded), and hand the SNI name record_sni saw to hostguard as environ["hostguard.sni"]."""
    from hostguard.policy import policy

    # A snapshot inherited from the master (--preload) is served once the database has
    # confirmed it: wait for that here, as the worker boots, at most 2 s.
    policy.start(wait=2.0)
    if worker.cfg.is_ssl:
        from hostguard.sni import wsgi_with_sni

        worker.wsgi = wsgi_with_sni(worker.wsgi)


def worker_exit(server, worker):
    """Write the mismatches this worker still buffers before it goes (graceful stop, reload).

    Within the graceful timeout, less a margin (a second, or a fifth of it if that is
    more) for gunicorn to reap the worker: past the timeout the worker is killed
    without a word, so hostguard gives up first and logs exactly what it could not write.
    """
    import time

    try:
        from hostguard.audit import shutdown
    except Exception:  # the app never loaded: nothing was recorded
        return
    graceful = float(server.cfg.graceful_timeout)
    shutdown(deadline=time.monotonic() + max(0.5, min(graceful - 1.0, graceful * 0.8)))


# --- Prometheus metrics across workers (prometheus_client's multiprocess mode) -----------
# Set up here, at load, before a preloaded app imports prometheus_client and before any
# worker forks. This file is read again on a reload (SIGHUP) and by a new master after
# an upgrade (SIGUSR2); the marker says which master set the directory up, and how.
_PROMETHEUS_MARKER = "HOSTGUARD_PROMETHEUS_DIR_SETUP"


def _prometheus_setup():
    if importlib.util.find_spec("prometheus_client") is None:
        return  # the extra is not installed: no metrics to share
    current = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    pid, _, rest = os.environ.get(_PROMETHEUS_MARKER, "").partition(" ")
    how, _, path = rest.partition(" ")
    if current and path == current and (pid == str(os.getpid()) or how == "given"):
        return  # a reload, or an upgrade sharing the directory given: its files are live
    if current and path != current:
        # Named by the operator: a previous run's files would add to this one's counts.
        os.makedirs(current, exist_ok=True)
        for name in os.listdir(current):
            if name.endswith(".db"):
                os.remove(os.path.join(current, name))
        how = "given"
    else:
        current, how = tempfile.mkdtemp(prefix="hostguard-prometheus-"), "created"
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = current
    os.environ[_PROMETHEUS_MARKER] = f"{os.getpid()} {how} {current}"


_prometheus_setup()


def child_exit(server, worker):
    """Drop a dead worker's Prometheus gauges: they describe a process that is gone."""
    if os.environ.get(_PROMETHEUS_MARKER):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the Prometheus directory this master made."""
    current = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if current and os.environ.get(_PROMETHEUS_MARKER) == f"{os.getpid()} created {current}":
        shutil.rmtree(current, ignore_errors=True)
