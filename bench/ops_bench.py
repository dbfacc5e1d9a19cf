"""What the operators' endpoints cost, and the application server next to the development
server (issue 16).

    make bench            # or: .venv/bin/python bench/ops_bench.py [--repeat N] [--seconds S]

1. Creates a throw-away test database on PostgreSQL (`DATABASE_URL` or
   postgres://postgres@127.0.0.1:5432/bench) and fills it with `dataset.build()` (500
   organizations, 1,000,000 sync_logs rows, 200,000 records), with a worker heartbeat and
   beat's last send of it just now, so that /readyz answers 200.
2. Times /readyz and /metrics (with its token) through Django's test Client in this process,
   as pages_bench.py times the pages: the server's time, no network. A load balancer polls
   /readyz every 10 s; Prometheus scrapes /metrics every 15-60 s.
3. Starts gunicorn (config/gunicorn_conf.py: 2 processes x 4 threads) and then
   `manage.py runserver` on the same database with the same production settings, and sends
   /readyz to each from 8 client threads for a few seconds: requests per second of each.

Prints its figures, and as its last line one JSON object with `readyz_p50_ms`,
`readyz_p95_ms`, `metrics_p50_ms`, `metrics_p95_ms`, `readyz_rps_gunicorn`,
`readyz_rps_runserver` and more.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta

from boot import REPO, start_django

start_django()

import requests  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from dataset import build, test_database  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402
from report import emit  # noqa: E402

ORGANIZATIONS = 500
SYNC_LOGS = 1_000_000
LOAD_THREADS = 8
TOKEN = secrets.token_urlsafe(32)


def say(text: str) -> None:
    print(text, flush=True)


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def alive() -> None:
    """A worker heartbeat and beat's send of it, just now: /readyz is all green."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from accounting_sync.models import WorkerHeartbeat

    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(hostname="bench@host", defaults={"seen_at": now})
    every, _ = IntervalSchedule.objects.get_or_create(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(
        name="worker-heartbeat",
        defaults={
            "task": "accounting_sync.tasks.record_worker_heartbeat",
            "interval": every,
            "last_run_at": now - timedelta(seconds=5),
        },
    )


def timed(
    label: str, client: Client, path: str, repeat: int, headers: dict[str, str] | None = None
) -> dict:
    def get() -> None:
        response = client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])

    with CaptureQueriesContext(connection) as captured:
        get()
    queries = len(captured)
    for _ in range(5):
        get()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        get()
        samples.append((time.perf_counter() - started) * 1000)
    figures = {
        "queries": queries,
        "p50_ms": round(statistics.median(samples), 2),
        "p95_ms": round(percentile(samples, 0.95), 2),
    }
    say(
        f"  {label}: {queries} queries, p50 {figures['p50_ms']} ms, "
        f"p95 {figures['p95_ms']} ms over {repeat} requests"
    )
    return figures


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env(port: int) -> dict[str, str]:
    """Production settings on the benchmark's test database."""
    params = connection.settings_dict
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    host = params.get("HOST") or "127.0.0.1"
    db_port = f":{params['PORT']}" if params.get("PORT") else ""
    return {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": f"postgres://{params['USER']}{password}@{host}{db_port}/{params['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "LOG_LEVEL": "WARNING",
    }


def requests_per_second(
    label: str, command: list[str], port: int, seconds: float
) -> tuple[float, int]:
    """Start the server, send /readyz from LOAD_THREADS threads for `seconds`, stop it:
    answers 200 per second, and how many were not 200."""
    server = subprocess.Popen(
        command,
        cwd=REPO,
        env=server_env(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url, timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{label} did not start")
            time.sleep(0.3)
        counts = [0] * LOAD_THREADS
        refused: list[str] = []  # the failing checks of each answer that was not 200
        stop = time.monotonic() + seconds

        def load(slot: int) -> None:
            with requests.Session() as session:
                while time.monotonic() < stop:
                    response = session.get(url, timeout=10)
                    if response.status_code == 200:
                        counts[slot] += 1
                        continue
                    checks = response.json().get("checks", {})
                    refused.append(
                        ",".join(
                            f"{name}:{check.get('error', '')}"
                            for name, check in checks.items()
                            if check["status"] != "ok"
                        )
                    )

        threads = [threading.Thread(target=load, args=(n,)) for n in range(LOAD_THREADS)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rate = round(sum(counts) / (time.monotonic() - started), 1)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    say(f"  {label}: {rate} requests/s on /readyz from {LOAD_THREADS} client threads")
    if refused:
        common = max(set(refused), key=refused.count)
        say(f"    and {len(refused)} answered 503 (most often failing: {common})")
    return rate, len(refused)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--organizations", type=int, default=ORGANIZATIONS)
    parser.add_argument("--sync-logs", type=int, default=SYNC_LOGS)
    parser.add_argument("--repeat", type=int, default=200, help="requests per endpoint")
    parser.add_argument("--seconds", type=float, default=5.0, help="of load on each server")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        say(f"The benchmark needs PostgreSQL; DATABASE_URL names {connection.vendor}.")
        return 2

    with test_database() as name:
        say(f"database {name}")
        build(organizations=args.organizations, sync_logs=args.sync_logs)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
        alive()
        settings.METRICS_TOKEN = TOKEN
        client = Client()
        readyz = timed("/readyz", client, "/readyz", args.repeat)
        metrics = timed(
            "/metrics", client, "/metrics", args.repeat, {"Authorization": f"Bearer {TOKEN}"}
        )
        python = sys.executable
        gunicorn, gunicorn_errors = requests_per_second(
            "gunicorn",
            [python, "-m", "gunicorn", "-c", "config/gunicorn_conf.py", "config.wsgi"],
            port := free_port(),
            args.seconds,
        )
        runserver, runserver_errors = requests_per_second(
            "runserver",
            [python, "manage.py", "runserver", f"127.0.0.1:{(port := free_port())}", "--noreload"],
            port,
            args.seconds,
        )
        # The servers' connections must be gone before the test database is dropped.
        connection.close()
    emit(
        "ops",
        {
            "readyz_queries": readyz["queries"],
            "readyz_p50_ms": readyz["p50_ms"],
            "readyz_p95_ms": readyz["p95_ms"],
            "metrics_queries": metrics["queries"],
            "metrics_p50_ms": metrics["p50_ms"],
            "metrics_p95_ms": metrics["p95_ms"],
            "readyz_rps_gunicorn": gunicorn,
            "readyz_rps_runserver": runserver,
            "readyz_errors_gunicorn": gunicorn_errors,
            "readyz_errors_runserver": runserver_errors,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
