"""Gunicorn settings for `sharing-broker serve`, read from the environment.

BROKER_BIND (0.0.0.0:8000), BROKER_WORKERS (2), BROKER_THREADS (4),
BROKER_WORKER_CONNECTIONS (1000), BROKER_TIMEOUT (30),
BROKER_GRACEFUL_TIMEOUT (30) and BROKER_FORWARDED_ALLOW_IPS (127.0.0.1): the addresses of
the proxies trusted to set X-Forwarded-For / -Proto. Set it to your ingress's addresses, or
"*" only where nothing but the ingress can reach the broker.
"""

import json
import os
import shutil
import sys
import tempfile

bind = os.environ.get("BROKER_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("BROKER_WORKERS", "2"))
threads = int(os.environ.get("BROKER_THREADS", "4"))
worker_class = "gthread"
worker_connections = int(os.environ.get("BROKER_WORKER_CONNECTIONS", "1000"))
timeout = int(os.environ.get("BROKER_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("BROKER_GRACEFUL_TIMEOUT", "30"))
forwarded_allow_ips = os.environ.get("BROKER_FORWARDED_ALLOW_IPS", "127.0.0.1")
wsgi_app = "service.wsgi:app"
# A read-only root filesystem: heartbeat files in memory, no control socket to write.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
control_socket_disable = True
accesslog = "-"
errorlog = "-"
# One JSON object per request; no header that could carry a credential is logged.
access_log_format = json.dumps(
    {
        "time": "%(t)s",
        "remote": "%(h)s",
        "method": "%(m)s",
        "path": "%(U)s",
        "status": "%(s)s",
        "bytes": "%(B)s",
        "duration_us": "%(D)s",
        "request_id": "%({x-request-id}o)s",  # the caller's, or the one generated for it
        "user_agent": "%(a)s",
    }
)


MADE_HERE = []  # the metrics directory on_starting made, removed on exit


def on_starting(server):
    """Before the workers fork: a directory where every worker writes its metrics, so one
    scrape of /metrics adds them all up."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
        made = tempfile.mkdtemp(prefix="broker-metrics-", dir=shm)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
        MADE_HERE.append(made)


def on_exit(server):
    """Remove the metrics directory on_starting made; one given by the operator stays."""
    for made in MADE_HERE:
        shutil.rmtree(made, ignore_errors=True)


def child_exit(server, worker):
    """Forget a dead worker's live figures."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker):
    """A worker stopping gracefully gives up its leases, so another takes over at once."""
    app_module = sys.modules.get("service.wsgi")  # absent if the worker failed to boot
    if app_module is not None:
        app_module.shutdown()
