"""How a sync is asked for: by a person (Trigger Sync Now, Retry) or by new records.

Both answer at once; a worker carries the run out (accounting_sync/tasks.py).
"""

from __future__ import annotations

from functools import partial

from django.db import transaction
from django.utils.translation import gettext as _

from accounting_sync.models import SyncRun
from accounting_sync.orchestrator import RunAlreadyGoing, start_run
from accounting_sync.tasks import enqueue_approval_sync, run_sync
from core.events import TrailKind, record_action
from integrations.models import Integration
from organizations.models import Organization


def request_approval_sync(organization: Organization) -> None:
    """Called by the inbound API once new records are committed."""
    integration = Integration.objects.filter(organization=organization).first()
    if integration and integration.enabled and integration.sync_after_approval:
        transaction.on_commit(partial(enqueue_approval_sync, organization.pk))


class SyncRefused(Exception):
    """Why a person's request to sync cannot start now, in words for the page."""


def request_run(
    organization: Organization, trigger: str, *, user, record_ids: list[int] | None = None
) -> SyncRun:
    """A person asks for a sync (Trigger Sync Now, Retry Selected / All): start it and queue it.

    Refused, with the reason, when the connector is off or a sync is already running
    (S3.4). The request is recorded in the administrative trail (S3.6).
    """

    integration = Integration.objects.filter(organization=organization).first()
    if integration is None or not integration.enabled:
        raise SyncRefused(_("The connector is not enabled, so nothing can be sent."))
    try:
        run = start_run(organization, trigger, user=user, record_ids=record_ids)
    except RunAlreadyGoing:
        raise SyncRefused(_("A sync is already running for this organization.")) from None
    transaction.on_commit(partial(run_sync.delay, run.pk))
    record_action(
        user,
        organization,
        TrailKind.SYNC_TRIGGERED,
        run=run.pk,
        trigger=trigger,
        records=len(record_ids or []),
    )
    return run
