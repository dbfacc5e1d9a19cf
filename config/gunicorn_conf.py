"""gunicorn's settings in production (Procfile.production), read from the environment.

    gunicorn --config config/gunicorn_conf.py config.wsgi

Threads, not only processes: a request mostly waits on PostgreSQL, and the live parts of the
pages poll every few seconds. Each thread holds its own database connection, so PostgreSQL
needs WEB_CONCURRENCY x GUNICORN_THREADS connections for the web (README, "Production").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = _int("WEB_CONCURRENCY", 2)
worker_class = "gthread"
threads = _int("GUNICORN_THREADS", 4)
# A request the web answers takes milliseconds; anything slow (a sync, a connection test)
# runs in a Celery worker. A worker stuck this long is restarted.
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
# Longer than the proxy's idle timeout in front would close a kept-alive connection first.
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Replace each worker after this many requests (0: never). Off by default: each new worker
# process adds its own files under PROMETHEUS_MULTIPROC_DIR, which every scrape reads until
# the folder is emptied at boot.
max_requests = _int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 0)
# The workers' heartbeat files on a RAM disk where there is one (a slow disk stalls them).
worker_tmp_dir = "/dev/shm" if Path("/dev/shm").is_dir() else None
# The application's own log lines (JSON, config/settings.py LOGGING) go to stderr; gunicorn's
# access log is off unless asked for ("-" for stderr), since the proxy in front keeps one.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
proc_name = "voluntary-ledger-web"


def _json_logs() -> bool:
    """As config/settings.py decides LOG_FORMAT: JSON unless DEBUG, or as set."""
    chosen = os.environ.get("LOG_FORMAT", "").strip().lower()
    if chosen:
        return chosen == "json"
    return os.environ.get("DEBUG", "").strip().lower() not in {"1", "true", "yes", "on"}


if _json_logs():
    # gunicorn's own lines (start, workers, timeouts) in the same JSON as the application's,
    # so a log collector reads one format; gunicorn keeps its loggers and handler names.
    logconfig_dict = {
        # Its loggers print through their own handlers; the root's would print each twice.
        "root": {"level": "INFO", "handlers": []},
        "formatters": {"json": {"()": "config.logging.JsonLines"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            },
            "error_console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            },
        },
    }


def child_exit(server: Any, worker: Any) -> None:
    """prometheus-client's multiprocess mode: a worker that exits no longer counts in the
    live gauges (its counters stay summed, as counters should)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
