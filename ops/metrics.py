"""Prometheus metrics at /metrics (issue 16, item 3).

Two kinds, because web and workers are separate processes (gunicorn workers, Celery's
prefork children), and one scrape reaches one of them:

- What happens (records received, attempts by outcome, skips, runs and their durations, ERP
  request latency, pacing waits) is counted where it happens, by the receivers below, in
  prometheus-client's multiprocess mode: each process writes its counters to files under
  PROMETHEUS_MULTIPROC_DIR and the scrape adds up every file. Web and worker must share that
  folder, so they run on one host (README, "Production"). Without the variable (the demo,
  the tests) each process counts for itself, which is right for one process.
- What is (records waiting by state, open alerts, running syncs, the last worker heartbeat)
  is read from the database at scrape time: the same answer whichever process is asked, and
  never lost with a restart.

Labels are bounded: connector (two), outcome, operation, trigger, status, alert kind. No
organization label: there can be hundreds, and each would multiply every series.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import Count, Max
from django.utils import timezone
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from accounting_sync.models import FinancialRecord, SyncLog, SyncRun, WorkerHeartbeat
from alerts.models import Alert
from integrations.models import Integration

logger = logging.getLogger(__name__)

PREFIX = "voluntary_ledger"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# The states a record waits in; `synced` only grows and is counted by the attempts counter.
WAITING_STATES = [
    FinancialRecord.State.PENDING,
    FinancialRecord.State.SENDING,
    FinancialRecord.State.AWAITING,
    FinancialRecord.State.FAILED,
]

RECEIVED = Counter(
    f"{PREFIX}_records_received",
    "New records stored by the inbound API.",
    ["connector"],
)
ATTEMPTS = Counter(
    f"{PREFIX}_sync_attempts",
    "Attempts to send or look up a record (sync_logs rows), by outcome: succeeded (the "
    "record is synced or accepted for import) or the error class.",
    ["connector", "outcome"],
)
# Without the reason: the run's reasons are sentences naming a category, which is free text
# from the volunteer app (unbounded); the dashboard shows them.
SKIPPED = Counter(
    f"{PREFIX}_records_skipped",
    "Records a sync run left unsent (no mapping for their category, no payable account).",
    ["connector"],
)
RUNS = Counter(
    f"{PREFIX}_sync_runs",
    "Sync runs finished, by how they ended.",
    ["connector", "trigger", "status"],
)
RUN_SECONDS = Histogram(
    f"{PREFIX}_sync_run_duration_seconds",
    "How long a sync run took, from start to finish.",
    ["connector", "trigger"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
ERP_SECONDS = Histogram(
    f"{PREFIX}_erp_request_duration_seconds",
    "ERP request latency, by connector, operation and outcome (ok or error).",
    ["connector", "operation", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
PACING_WAITS = Counter(
    f"{PREFIX}_erp_rate_limit_waits",
    "ERP requests that waited for a slot in their credential's shared request window.",
)
PACING_WAIT_SECONDS = Counter(
    f"{PREFIX}_erp_rate_limit_wait_seconds",
    "Seconds ERP requests waited for a slot in their credential's shared request window.",
)
PACING_REFUSED = Counter(
    f"{PREFIX}_erp_rate_limit_refusals",
    "ERP requests not sent because their slot was further away than "
    "ERP_PACING_MAX_WAIT_SECONDS (the run retries them later).",
)


# --- the receivers (connected in ops.apps) -------------------------------------------------
# Never raise: a metric must not fail a request or a sync.


def _connector_of(organization_id: int) -> str:
    connector = (
        Integration.objects.filter(organization_id=organization_id)
        .values_list("connector", flat=True)
        .first()
    )
    return connector or "none"


def records_received(sender: Any, organization_id: int, created: int, **kwargs: Any) -> None:
    try:
        RECEIVED.labels(_connector_of(organization_id)).inc(created)
    except Exception:
        logger.exception("counting received records failed")


def attempts_recorded(sender: Any, attempts: Iterable[SyncLog], **kwargs: Any) -> None:
    try:
        for attempt in attempts:
            succeeded = attempt.status == SyncLog.Status.SUCCEEDED
            outcome = "succeeded" if succeeded else attempt.error_class or attempt.status
            ATTEMPTS.labels(attempt.connector, outcome).inc()
            if not succeeded:
                # The reference and the class only: an ERP's message may quote the claimant.
                logger.warning(
                    "record %s: attempt %d %s",
                    attempt.reference,
                    attempt.attempt_number,
                    outcome,
                    extra={"record": attempt.reference},
                )
    except Exception:
        logger.exception("counting sync attempts failed")


def run_ended(sender: Any, run_id: int, **kwargs: Any) -> None:
    try:
        run = SyncRun.objects.only(
            "connector", "trigger", "status", "started_at", "finished_at", "skipped"
        ).get(pk=run_id)
        RUNS.labels(run.connector, run.trigger, run.status).inc()
        if run.finished_at is not None:
            seconds = (run.finished_at - run.started_at).total_seconds()
            RUN_SECONDS.labels(run.connector, run.trigger).observe(max(0.0, seconds))
        if run.skipped:
            SKIPPED.labels(run.connector).inc(run.skipped)
    except Exception:
        logger.exception("counting sync run %s failed", run_id)


def erp_called(
    sender: Any, erp: str, operation: str, status: str, seconds: float, **kwargs: Any
) -> None:
    # Statuses carry error codes and vary; the outcome is what a graph needs.
    outcome = "ok" if status == "ok" or (status.isdigit() and status.startswith("2")) else "error"
    # The connectors log their display name ("Business Central"); the label is the
    # connector's key, as in every other metric ("business_central").
    connector = erp.lower().replace(" ", "_")
    try:
        ERP_SECONDS.labels(connector, operation, outcome).observe(seconds)
    except Exception:
        logger.exception("counting an ERP request failed")


def erp_paced(sender: Any, seconds: float, refused: bool, **kwargs: Any) -> None:
    if refused:
        PACING_REFUSED.inc()
    else:
        PACING_WAITS.inc()
        PACING_WAIT_SECONDS.inc(seconds)


# --- read at scrape time -------------------------------------------------------------------


class DatabaseCollector(Collector):
    """Gauges read from the database when Prometheus asks: four grouped counts."""

    def collect(self) -> Iterator[Metric]:
        connectors = [str(value) for value in Integration.Connector.values]
        waiting = GaugeMetricFamily(
            f"{PREFIX}_records",
            "Records not yet synced, by connector and state (pending, sending, awaiting the "
            "ERP's import, failed).",
            labels=["connector", "state"],
        )
        counts = {
            (row["organization__integration__connector"], row["state"]): row["n"]
            for row in FinancialRecord.objects.filter(state__in=WAITING_STATES)
            .values("organization__integration__connector", "state")
            .annotate(n=Count("id"))
            .order_by()
        }
        for connector in connectors:
            for state in WAITING_STATES:
                waiting.add_metric([connector, str(state)], counts.get((connector, state), 0))
        yield waiting

        alerts = GaugeMetricFamily(
            f"{PREFIX}_alerts_open", "Open alerts, by kind.", labels=["kind"]
        )
        open_alerts = dict(
            Alert.objects.filter(resolved_at__isnull=True)
            .values_list("kind")
            .annotate(n=Count("id"))
            .order_by()
        )
        for kind in Alert.Kind.values:
            alerts.add_metric([str(kind)], open_alerts.get(kind, 0))
        yield alerts

        running = GaugeMetricFamily(
            f"{PREFIX}_sync_runs_running", "Sync runs going now.", labels=["connector"]
        )
        going = dict(
            SyncRun.objects.filter(status=SyncRun.Status.RUNNING)
            .values_list("connector")
            .annotate(n=Count("id"))
            .order_by()
        )
        for connector in connectors:
            running.add_metric([connector], going.get(connector, 0))
        yield running

        latest = WorkerHeartbeat.objects.aggregate(latest=Max("seen_at"))["latest"]
        age = GaugeMetricFamily(
            f"{PREFIX}_worker_heartbeat_age_seconds",
            "Seconds since a Celery worker last ran the heartbeat task (NaN: never).",
        )
        age.add_metric([], (timezone.now() - latest).total_seconds() if latest else float("nan"))
        yield age


def multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def exposition() -> bytes:
    """The text Prometheus reads: the counters of every process (or of this one), then the
    database's gauges."""
    if multiprocess_dir():
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    database = CollectorRegistry()
    database.register(DatabaseCollector())
    return generate_latest(counted) + generate_latest(database)
