"""Every trigger of a sync goes through Celery (DESIGN.md, "Triggers")."""

from __future__ import annotations

import logging
from functools import partial

from celery import shared_task
from celery.exceptions import MaxRetriesExceededError
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounting_sync.models import FinancialRecord, SyncEvent, SyncRun, WorkerHeartbeat
from accounting_sync.orchestrator import (
    RunAlreadyGoing,
    backoff_seconds,
    execute_run,
    recover_stale_runs,
    sendable,
    start_run,
)
from alerts import hooks as alert_hooks
from integrations.models import Integration, Organization

logger = logging.getLogger(__name__)

# A scheduled run that fails on a network error is tried again this many times (S9.4).
SCHEDULED_RETRIES = 3
SCHEDULED_FIRST_RETRY_SECONDS = 60


@shared_task(bind=True, ignore_result=True)
def record_worker_heartbeat(self) -> str:
    hostname = self.request.hostname or "unknown"
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname, defaults={"seen_at": timezone.now()}
    )
    return hostname


@shared_task(bind=True, ignore_result=True)
def run_sync(self, run_id: int) -> None:
    """Carry out a run opened elsewhere (manual trigger, retry, the sweep)."""
    run = execute_run(run_id, worker=self.request.hostname or "worker")
    if run is not None:
        follow_up(run)


@shared_task(bind=True, ignore_result=True)
def sync_after_approval(self, organization_id: int) -> None:
    """Approvals close together share one run: the first task starts it, later ones
    find it running and leave their records to it or to the follow-up run."""
    integration = Integration.objects.filter(organization_id=organization_id).first()
    if integration is None or not (integration.enabled and integration.sync_after_approval):
        return
    try:
        run = start_run(integration.organization, SyncRun.Trigger.APPROVAL)
    except RunAlreadyGoing:
        return
    run = execute_run(run.pk, worker=self.request.hostname or "worker")
    if run is not None:
        follow_up(run)


@shared_task(bind=True, ignore_result=True, max_retries=SCHEDULED_RETRIES)
def scheduled_sync(self, organization_id: int) -> None:
    integration = Integration.objects.select_related("organization").get(
        organization_id=organization_id
    )
    if not integration.enabled or not integration.is_schedule_day(timezone.now()):
        return
    # A retry takes what the failed attempt left, even where the records' own backoff
    # has not run out yet: otherwise it could find nothing due, end "succeeded", and
    # the failure would never be reported (S9.4).
    record_ids = retry_candidates(integration) if self.request.retries else None
    if record_ids == []:
        return
    try:
        run = start_run(integration.organization, SyncRun.Trigger.SCHEDULE, record_ids=record_ids)
    except RunAlreadyGoing:
        return  # the running one takes the records
    run = execute_run(run.pk, worker=self.request.hostname or "worker")
    if run is None or run.error_class != "network":
        return
    try:
        countdown = backoff_seconds(self.request.retries + 1, SCHEDULED_FIRST_RETRY_SECONDS)
        raise self.retry(countdown=countdown)
    except MaxRetriesExceededError:
        event = SyncEvent.objects.create(
            organization_id=organization_id,
            run=run,
            kind=SyncEvent.Kind.SCHEDULED_RUN_FAILED,
            message=f"The scheduled sync could not reach the accounting system, also after "
            f"{SCHEDULED_RETRIES} retries: {run.message}",
        )
        alert_hooks.event_recorded(event)  # S9.4: the admins get an in-app alert


def retry_candidates(integration: Integration) -> list[int]:
    """Records a retried scheduled sync takes: waiting or failed, but not refused for good."""
    State = FinancialRecord.State
    return list(
        FinancialRecord.objects.filter(
            organization_id=integration.organization_id,
            kind__in=integration.included_kinds(),
            state__in=[State.PENDING, State.FAILED],
        )
        .exclude(state=State.FAILED, next_retry_at__isnull=True)
        .values_list("pk", flat=True)
    )


@shared_task(ignore_result=True)
def sweep() -> None:
    """Close runs whose worker died, then start runs for failed records that are due,
    and import checks for records sent but awaiting the ERP's import."""
    recover_stale_runs()
    retries = _organizations_due(FinancialRecord.State.FAILED)
    checks = _organizations_due(FinancialRecord.State.AWAITING) - retries
    for trigger, due in ((SyncRun.Trigger.RETRY, retries), (SyncRun.Trigger.CHECK, checks)):
        for organization in Organization.objects.filter(pk__in=due):
            try:
                run = start_run(organization, trigger)
            except RunAlreadyGoing:
                continue
            run_sync.delay(run.pk)


def _organizations_due(state: str) -> set[int]:
    """Organizations with an enabled connector and a record in `state` whose time has come."""
    return set(
        FinancialRecord.objects.filter(
            state=state,
            next_retry_at__lte=timezone.now(),
            organization__integration__enabled=True,
        )
        .values_list("organization_id", flat=True)
        .distinct()
    )


def follow_up(run: SyncRun) -> None:
    """Records approved while the run was going are sent by a next run, not left waiting."""
    integration = Integration.objects.get(organization_id=run.organization_id)
    if not (integration.enabled and integration.sync_after_approval):
        return
    if run.error_class in ("authentication", "abandoned"):
        return  # a person has to act first; do not loop on it
    still_pending = FinancialRecord.objects.filter(
        sendable(integration.organization, integration), state=FinancialRecord.State.PENDING
    ).exists()
    if still_pending:
        sync_after_approval.apply_async(
            (run.organization_id,), countdown=settings.SYNC_APPROVAL_DELAY_SECONDS
        )


def request_approval_sync(organization: Organization) -> None:
    """Called by the inbound API once new records are committed."""
    integration = Integration.objects.filter(organization=organization).first()
    if integration and integration.enabled and integration.sync_after_approval:
        transaction.on_commit(
            lambda: sync_after_approval.apply_async(
                (organization.pk,), countdown=settings.SYNC_APPROVAL_DELAY_SECONDS
            )
        )


class SyncRefused(Exception):
    """Why a person's request to sync cannot start now, in words for the page."""


def request_run(
    organization: Organization, trigger: str, *, user, record_ids: list[int] | None = None
) -> SyncRun:
    """A person asks for a sync (Trigger Sync Now, Retry Selected / All): start it and queue it.

    Refused, with the reason, when the connector is off or a sync is already running
    (S3.4). The request is recorded in the administrative trail (S3.6).
    """
    from audit.models import AdminAction  # audit builds on the sync models

    integration = Integration.objects.filter(organization=organization).first()
    if integration is None or not integration.enabled:
        raise SyncRefused(_("The connector is not enabled, so nothing can be sent."))
    try:
        run = start_run(organization, trigger, user=user, record_ids=record_ids)
    except RunAlreadyGoing:
        raise SyncRefused(_("A sync is already running for this organization.")) from None
    transaction.on_commit(partial(run_sync.delay, run.pk))
    AdminAction.record(
        user,
        organization,
        AdminAction.Kind.SYNC_TRIGGERED,
        run=run.pk,
        trigger=trigger,
        records=len(record_ids or []),
    )
    return run
