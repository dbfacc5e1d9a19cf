"""Celery: a real task through a real worker process, and beat's database schedule."""

from __future__ import annotations

import os
import time

import pytest
from django.conf import settings
from django.db import connection

from accounting_sync.models import WorkerHeartbeat
from accounting_sync.tasks import record_worker_heartbeat


@pytest.mark.worker
def test_a_task_sent_through_the_broker_is_run_by_a_real_worker(celery_worker) -> None:
    # .ci/run promises Redis with PostgreSQL; hold it to that (its second pass runs on
    # the embedded defaults: SQLite and the folder broker).
    if os.environ.get("CI") == "true" and connection.vendor == "postgresql":
        assert settings.CELERY_BROKER_URL.startswith("redis://")
    assert not WorkerHeartbeat.objects.exists()

    record_worker_heartbeat.delay()

    deadline = time.monotonic() + 30
    while not WorkerHeartbeat.objects.exists():
        assert time.monotonic() < deadline, celery_worker.log_path.read_text()
        time.sleep(0.2)
    heartbeat = WorkerHeartbeat.objects.get()
    assert heartbeat.hostname.startswith("test-worker@")
    assert "record_worker_heartbeat" in celery_worker.log_path.read_text()


@pytest.mark.django_db(transaction=True)  # the scheduler closes its connection
def test_beat_keeps_its_schedule_in_the_database() -> None:
    from django_celery_beat.models import PeriodicTask
    from django_celery_beat.schedulers import DatabaseScheduler

    from config.celery import app

    DatabaseScheduler(app=app, lazy=False)

    task = PeriodicTask.objects.get(name="worker-heartbeat")
    assert task.task == "accounting_sync.tasks.record_worker_heartbeat"
    assert task.interval.every == 60 and task.interval.period == "seconds"
    assert task.enabled
