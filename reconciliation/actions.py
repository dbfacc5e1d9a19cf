"""What an admin does about a reconciliation's findings (issue 15 item 5), each in the trail.

- Send again a record the ERP does not hold: through the normal engine, which looks it up
  first (it may have arrived since the reading) and sends it only if it is still not there.
- Accept a difference with a comment: the item is closed, the comment kept; nothing is
  sent or changed in the ERP.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from accounting_sync.models import FinancialRecord, SyncRun
from accounting_sync.triggers import SyncRefused, request_run
from core.events import TrailKind, record_action
from reconciliation.engine import mark_for_lookup, review_findings
from reconciliation.models import Item

State = FinancialRecord.State
Klass = Item.Klass

RESENDABLE = {Klass.MISSING_THERE}
ACCEPTABLE = {Klass.DIFFERENT, Klass.UNEXPLAINED, Klass.MISSING_THERE}


class NotAllowed(Exception):
    """Why the action cannot be taken on this item now; `code` names the reason."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def resend(item: Item, user: Any) -> SyncRun | None:
    """Send again a record confirmed missing; returns the run, or None when the connector
    is off or a run is going (the record is then due and the next run takes it)."""
    if item.klass not in RESENDABLE or item.record_id is None:
        raise NotAllowed("not_missing")
    with transaction.atomic():
        if not _close(item, Item.Resolution.RESENT, user):
            raise NotAllowed("already_resolved")
        marked = mark_for_lookup([item.record_id], from_states={State.SYNCED, State.AWAITING})
        if not marked:
            raise NotAllowed("record_moved_on")  # being sent, or no longer marked sent
        record_action(
            user,
            item.reconciliation.organization,
            TrailKind.RECORD_RESENT,
            reconciliation=item.reconciliation_id,
            reference=item.reference,
        )
    review_findings(item.reconciliation.organization_id)
    try:
        return request_run(
            item.reconciliation.organization, SyncRun.Trigger.RETRY, user=user, record_ids=marked
        )
    except SyncRefused:
        return None


def accept(item: Item, user: Any, comment: str) -> None:
    """Close a difference as accepted, with the admin's reason."""
    comment = comment.strip()
    if not comment:
        raise NotAllowed("comment_required")
    if item.klass not in ACCEPTABLE:
        raise NotAllowed("nothing_to_accept")
    with transaction.atomic():
        if not _close(item, Item.Resolution.ACCEPTED, user, comment):
            raise NotAllowed("already_resolved")
        record_action(
            user,
            item.reconciliation.organization,
            TrailKind.DIFFERENCE_ACCEPTED,
            reconciliation=item.reconciliation_id,
            reference=item.reference,
            comment=comment,
        )
    review_findings(item.reconciliation.organization_id)


def _close(item: Item, resolution: str, user: Any, comment: str = "") -> bool:
    """Conditional: two admins acting at once close it once."""
    now = timezone.now()
    closed = Item.objects.filter(pk=item.pk, resolution=Item.Resolution.NONE).update(
        resolution=resolution, resolved_by=user, resolved_at=now, comment=comment
    )
    if closed:
        item.resolution, item.resolved_by, item.resolved_at, item.comment = (
            resolution,
            user,
            now,
            comment,
        )
    return bool(closed)
