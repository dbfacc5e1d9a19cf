"""Every trigger of a sync goes through Celery (docs/architecture.md,
"A record's way from the API to the ERP")."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from celery import shared_task
from celery.exceptions import MaxRetriesExceededError
from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable
from redis.exceptions import RedisError

from accounting_sync.models import (
    ErrorClass,
    FinancialRecord,
    SyncEvent,
    SyncRun,
    WorkerHeartbeat,
)
from accounting_sync.orchestrator import (
    RunAlreadyGoing,
    backoff_seconds,
    execute_run,
    is_parked,
    recover_stale_runs,
    start_run,
    waiting_runs,
)
from core import events
from integrations.models import Integration
from integrations.schedule import last_firing
from organizations.models import Organization

logger = logging.getLogger(__name__)

# A scheduled run that fails on a network error is tried again this many times (S9.4).
SCHEDULED_RETRIES = 3
SCHEDULED_FIRST_RETRY_SECONDS = 60
# What publishing a task raises when the broker cannot be reached: kombu wraps most
# connection errors, redis-py's and socket errors can still come through unwrapped.
BROKER_ERRORS = (BrokerUnavailable, RedisError, OSError)
# One quick retry only: the caller may be an HTTP request, and a lost trigger is
# picked up by the sweep anyway (`_organizations_with_lost_triggers`).
ENQUEUE_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5}


@shared_task(bind=True, ignore_result=True)
def record_worker_heartbeat(self) -> str:
    hostname = self.request.hostname or "unknown"
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname, defaults={"seen_at": timezone.now()}
    )
    return hostname


@shared_task(bind=True, ignore_result=True)
def run_sync(self, run_id: int, scheduled_retries: int = 0) -> None:
    """Carry out a run opened elsewhere (manual trigger, retry, the sweep), or the next
    turn of a parked one (issue 13 item 9). `scheduled_retries`: a scheduled run's turns
    carry the retries its scheduled_sync task had, for S9.4's retries at its end."""
    run = take_turn(run_id, self.request.hostname, scheduled_retries)
    if run is None or run.is_running:
        return
    if run.trigger == SyncRun.Trigger.SCHEDULE:
        _scheduled_run_ended(run, scheduled_retries)
    follow_up(run)


def take_turn(run_id: int, hostname: str | None, scheduled_retries: int = 0) -> SyncRun | None:
    """One turn of the run: at most SYNC_BATCHES_PER_TURN batches. A run with records left
    parks and queues its next turn at the back of the queue, behind the other
    organizations' runs queued meanwhile, so a large organization cannot hold the workers
    while small ones wait. None: another delivery of the task has the run."""
    run = execute_run(run_id, worker=hostname or "worker", batches=settings.SYNC_BATCHES_PER_TURN)
    if run is not None and is_parked(run):
        _queue_turn(run.pk, scheduled_retries)
    return run


def _queue_turn(run_id: int, scheduled_retries: int = 0) -> None:
    """Queue a waiting run's turn (its next, or its first). A lost message (broker down)
    leaves the run waiting: the sweep queues it again (`_requeue_waiting`); a second
    delivery finds it taken."""
    try:
        run_sync.apply_async((run_id, scheduled_retries), retry_policy=ENQUEUE_RETRY_POLICY)
    except BROKER_ERRORS as problem:
        logger.warning(
            "Could not queue the next turn of sync %s (broker unreachable: %s); "
            "the sweep will queue it.",
            run_id,
            problem,
        )


@shared_task(bind=True, ignore_result=True)
def sync_after_approval(self, organization_id: int) -> None:
    """Approvals close together share one run: the first task starts it, later ones
    find it running and leave their records to it or to the follow-up run."""
    integration = Integration.objects.filter(organization_id=organization_id).first()
    if integration is None or not (integration.enabled and integration.sync_after_approval):
        return
    run: SyncRun | None  # execute_run gives None to a second delivery of the task
    try:
        run = start_run(integration.organization, SyncRun.Trigger.APPROVAL)
    except RunAlreadyGoing:
        return
    run = take_turn(run.pk, self.request.hostname)
    if run is not None and not run.is_running:
        follow_up(run)


@shared_task(bind=True, ignore_result=True, max_retries=SCHEDULED_RETRIES)
def scheduled_sync(self, organization_id: int) -> None:
    integration = Integration.objects.select_related("organization").get(
        organization_id=organization_id
    )
    if not integration.enabled or not integration.is_schedule_day(timezone.now()):
        return
    if not self.request.retries and _already_ran_for_this_firing(integration):
        return  # a message that waited in the queue while workers were down (issue 13)
    # A retry takes what the failed attempt left, even where the records' own backoff
    # has not run out yet: otherwise it could find nothing due, end "succeeded", and
    # the failure would never be reported (S9.4).
    record_ids = retry_candidates(integration) if self.request.retries else None
    if record_ids == []:
        return
    run: SyncRun | None  # execute_run gives None to a second delivery of the task
    try:
        run = start_run(integration.organization, SyncRun.Trigger.SCHEDULE, record_ids=record_ids)
    except RunAlreadyGoing:
        return  # the running one takes the records
    run = take_turn(run.pk, self.request.hostname, self.request.retries)
    if run is None or run.is_running or run.error_class != ErrorClass.NETWORK:
        return  # a parked run's last turn decides on the retries (run_sync)
    try:
        countdown = backoff_seconds(self.request.retries + 1, SCHEDULED_FIRST_RETRY_SECONDS)
        raise self.retry(countdown=countdown)
    except MaxRetriesExceededError:
        _scheduled_run_failed(run)


def _scheduled_run_ended(run: SyncRun, retries: int) -> None:
    """The last turn of a scheduled run that parked: S9.4's retries, as scheduled_sync's."""
    if run.error_class != ErrorClass.NETWORK:
        return
    if retries >= SCHEDULED_RETRIES:
        _scheduled_run_failed(run)
        return
    countdown = backoff_seconds(retries + 1, SCHEDULED_FIRST_RETRY_SECONDS)
    # Sent as scheduled_sync's own retry would be: its request then counts the retries.
    scheduled_sync.app.send_task(
        scheduled_sync.name, (run.organization_id,), countdown=countdown, retries=retries + 1
    )


def _scheduled_run_failed(run: SyncRun) -> None:
    event = SyncEvent.objects.create(
        organization_id=run.organization_id,
        run=run,
        kind=SyncEvent.Kind.SCHEDULED_RUN_FAILED,
        # The alert words the problem for its readers from the run and its retries.
        message="",
    )
    # S9.4: the admins get an in-app alert.
    events.event_recorded.send(sender=SyncEvent, event=event)


def _already_ran_for_this_firing(integration: Integration) -> bool:
    """True when a scheduled run has started since beat's latest firing.

    Beat keeps firing while workers are down, and on restart every queued message
    arrives at once: all but the first find the run the first one started and stand
    down, so each due schedule runs once. Without a schedule (Manual only) there is
    no firing to compare with, and the task runs as asked.
    """
    fired = last_firing(integration, timezone.now())
    if fired is None:
        return False
    return SyncRun.objects.filter(
        organization_id=integration.organization_id,
        trigger=SyncRun.Trigger.SCHEDULE,
        started_at__gte=fired,
    ).exists()


def retry_candidates(integration: Integration) -> list[int]:
    """Records a retried scheduled sync takes: waiting or failed, but not refused for good."""
    return list(
        FinancialRecord.objects.resendable()
        .filter(
            organization_id=integration.organization_id,
            kind__in=integration.included_kinds(),
        )
        .values_list("pk", flat=True)
    )


@shared_task(ignore_result=True)
def sweep() -> None:
    """Close runs whose worker died, then start runs for failed records that are due,
    for pending records whose approval trigger was lost, and import checks for records
    sent but awaiting the ERP's import."""
    closed = recover_stale_runs()
    _requeue_waiting()
    records = FinancialRecord.objects
    retries = _organizations_due(records.due_for_retry(timezone.now()))
    # A closed run's organization gets its retry run now: besides what the run held (due
    # now), a run in turns leaves the records of its later turns pending, which neither
    # the due retries nor the lost-trigger check would take (issue 13 item 9).
    retries |= _organizations_due(
        records.filter(organization__in={run.organization_id for run in closed}).pending()
    )
    lost = _organizations_with_lost_triggers() - retries
    checks = _organizations_due(records.due_for_import_check(timezone.now())) - retries - lost
    for trigger, due in (
        (SyncRun.Trigger.RETRY, retries),
        # An approval run: it stands in for the approval trigger that never arrived and
        # takes the same records (all sendable); "Retry" would suggest a failure.
        (SyncRun.Trigger.APPROVAL, lost),
        (SyncRun.Trigger.CHECK, checks),
    ):
        for organization in Organization.objects.filter(pk__in=due):
            try:
                run = start_run(organization, trigger)
            except RunAlreadyGoing:
                continue
            run_sync.delay(run.pk)


def _requeue_waiting() -> None:
    """Queue again the turn of runs waiting longer than SYNC_PARKED_REQUEUE_SECONDS.

    A run waits in the queue for its first turn, or parked for its next, behind other
    organizations' turns, holding nothing, so the sweep does not close it for want of a
    beat; but its message may be lost (the broker down as it was queued, or since, or the
    worker gone between opening the run and taking it). A second message is harmless: the
    first delivery takes the run (`execute_run`), the other finds it taken or parked
    further on. Each re-queue moves its beat on, so a run is queued again at most once a
    period.
    """
    now = timezone.now()
    limit = now - timedelta(seconds=settings.SYNC_PARKED_REQUEUE_SECONDS)
    for run_id in waiting_runs().filter(heartbeat_at__lt=limit).values_list("pk", flat=True):
        if waiting_runs().filter(pk=run_id, heartbeat_at__lt=limit).update(heartbeat_at=now):
            _queue_turn(run_id)


def _organizations_due(due: QuerySet[FinancialRecord]) -> set[int]:
    """Organizations with an enabled connector and one of these records (due ones)."""
    return set(
        due.filter(organization__integration__enabled=True)
        .values_list("organization_id", flat=True)
        .distinct()
    )


# Older than any arrival time: stands in for "no run yet" in a comparison.
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _organizations_with_lost_triggers() -> set[int]:
    """Organizations syncing after each approval whose approval trigger went missing
    (broker down at enqueue, a message lost): a pending record older than
    SYNC_LOST_TRIGGER_SECONDS that arrived after the last run that could have taken it,
    while no run is going or has just finished (a follow-up may be on its way).

    "Arrived after the last run" keeps the sweep from looping on records a run left
    pending on purpose (expired credentials, a kind not included). One query; each
    correlated part is a range probe on an index: pending records by
    (organization, state, received_at), runs by (organization, started_at), the running
    one by its partial unique index and recent ones by (organization, finished_at).
    """
    cutoff = timezone.now() - timedelta(seconds=settings.SYNC_LOST_TRIGGER_SECONDS)
    runs = SyncRun.objects.filter(organization=OuterRef("organization_id"))
    # Import checks and Retry Selected never take new pending records.
    last_start = (
        runs.filter(record_ids__isnull=True)
        .exclude(trigger=SyncRun.Trigger.CHECK)
        .order_by("-started_at")
        .values("started_at")[:1]
    )
    waiting = FinancialRecord.objects.pending().filter(
        organization=OuterRef("organization_id"),
        received_at__lt=cutoff,
        received_at__gt=Coalesce(OuterRef("last_start"), Value(EPOCH)),
    )
    busy = runs.filter(Q(status=SyncRun.Status.RUNNING) | Q(finished_at__gte=cutoff))
    return set(
        Integration.objects.filter(enabled=True, sync_after_approval=True)
        .annotate(last_start=Subquery(last_start))
        .filter(Exists(waiting))
        .exclude(Exists(busy))
        .values_list("organization_id", flat=True)
    )


def enqueue_approval_sync(organization_id: int) -> bool:
    """Queue an approval sync after the usual delay; False when the broker is unreachable.

    Never raises for the broker: the records are stored, and the sweep starts the run
    once they have waited SYNC_LOST_TRIGGER_SECONDS. One warning line, no traceback:
    during an outage every approval would otherwise log a page of it.
    """
    try:
        sync_after_approval.apply_async(
            (organization_id,),
            countdown=settings.SYNC_APPROVAL_DELAY_SECONDS,
            retry_policy=ENQUEUE_RETRY_POLICY,
        )
    except BROKER_ERRORS as problem:
        logger.warning(
            "Could not queue the approval sync of organization %s (broker unreachable: %s: %s); "
            "the sweep will start it.",
            organization_id,
            type(problem).__name__,
            problem,
        )
        return False
    return True


def follow_up(run: SyncRun) -> None:
    """Records approved while the run was going are sent by a next run, not left waiting."""
    integration = Integration.objects.get(organization_id=run.organization_id)
    if not (integration.enabled and integration.sync_after_approval):
        return
    if run.error_class in (ErrorClass.AUTHENTICATION, ErrorClass.ABANDONED):
        return  # a person has to act first; do not loop on it
    still_pending = (
        FinancialRecord.objects.sendable(integration.organization, integration).pending().exists()
    )
    if still_pending:
        enqueue_approval_sync(run.organization_id)
