"""The readiness checks behind /readyz: can this installation send records now?

Each check is one cheap round trip (a `SELECT 1`, a Redis PING, two indexed one-row reads),
so a load balancer may ask every 10 s; `make bench` measures it (bench/ops_bench.py). A check
says ok or fail and how long it took, and on failure only the exception's class: its text
can hold a URL with a password or a host name, and /readyz is answered to anyone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Max
from django.utils import timezone

from accounting_sync.models import WorkerHeartbeat

# A worker runs the heartbeat task every 60 s (CELERY_BEAT_SCHEDULE); five missed beats and
# it counts as gone (issue 16).
WORKER_LATE_AFTER = timedelta(minutes=5)
# Beat sends that task every HEARTBEAT_INTERVAL and writes down when (CELERY_BEAT_SYNC_EVERY
# = 1): one missed send plus some slack for a slow tick, and beat counts as stopped.
HEARTBEAT_TASK = "worker-heartbeat"
BEAT_GRACE = timedelta(seconds=30)
# A broker that does not answer in this long is as good as down for a probe.
BROKER_TIMEOUT_SECONDS = 2


@dataclass
class Check:
    name: str
    ok: bool
    took_ms: float
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "fail", "took_ms": self.took_ms, **self.detail}


def _timed(name: str, probe: Callable[[], dict[str, Any]]) -> Check:
    started = time.perf_counter()
    try:
        detail = probe()
        ok = detail.pop("ok", True)
    except Exception as problem:  # any failure of a dependency is "not ready"
        detail, ok = {"error": type(problem).__name__}, False
    took = round((time.perf_counter() - started) * 1000, 2)
    return Check(name, ok, took, detail)


def _database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {}


@cache
def _redis(url: str) -> Any:
    """One client (and its connection pool) per process: a probe reuses the connection."""
    import redis

    return redis.Redis.from_url(
        url, socket_timeout=BROKER_TIMEOUT_SECONDS, socket_connect_timeout=BROKER_TIMEOUT_SECONDS
    )


def _broker() -> dict[str, Any]:
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://")):
        _redis(url).ping()
    elif url.startswith("filesystem://"):
        # The demo's folder broker: reachable when its queue folder is there.
        folder = Path(str(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]))
        if not folder.is_dir():
            raise FileNotFoundError
    else:
        from kombu import Connection

        with Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS) as broker:
            broker.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
    return {}


def _seen(at: datetime | None, late_after: timedelta, now: datetime) -> dict[str, Any]:
    if at is None:
        return {"ok": False, "last_seen": None, "limit_seconds": int(late_after.total_seconds())}
    age = (now - at).total_seconds()
    return {
        "ok": age <= late_after.total_seconds(),
        "last_seen": at.isoformat(),
        "age_seconds": round(age, 1),
        "limit_seconds": int(late_after.total_seconds()),
    }


def _worker() -> dict[str, Any]:
    latest = WorkerHeartbeat.objects.aggregate(latest=Max("seen_at"))["latest"]
    return _seen(latest, WORKER_LATE_AFTER, timezone.now())


def heartbeat_interval() -> timedelta:
    schedule = settings.CELERY_BEAT_SCHEDULE[HEARTBEAT_TASK]["schedule"]
    assert isinstance(schedule, float)  # seconds (config/settings.py)
    return timedelta(seconds=schedule)


def _beat() -> dict[str, Any]:
    from django_celery_beat.models import PeriodicTask

    sent = (
        PeriodicTask.objects.filter(name=HEARTBEAT_TASK, enabled=True)
        .values_list("last_run_at", flat=True)
        .first()
    )
    return _seen(sent, heartbeat_interval() + BEAT_GRACE, timezone.now())


def readiness() -> list[Check]:
    results = [_timed("database", _database), _timed("broker", _broker)]
    if results[0].ok:  # the last two read the database: a down one is said once
        results += [_timed("worker", _worker), _timed("beat", _beat)]
    else:
        results += [Check(name, False, 0.0, {"error": "database"}) for name in ("worker", "beat")]
    return results
