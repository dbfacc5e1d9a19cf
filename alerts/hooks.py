"""Where the alerts hear what the sync engine did: receivers of core/events.py's signals,
connected in alerts/apps.py (the engine does not import the alerts).

An alert must never break a sync: every hook runs in its own savepoint, so a database
error rolls back only the alert's work, and any error is logged and swallowed. The
periodic check (alerts/tasks.py) catches up on whatever a failed hook missed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec

from django.db import transaction

from accounting_sync.models import SyncEvent, SyncLog, SyncRun
from alerts import rules

logger = logging.getLogger(__name__)
P = ParamSpec("P")


def _never_raises(hook: Callable[P, None]) -> Callable[P, None]:
    @functools.wraps(hook)
    def safe(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            with transaction.atomic():
                hook(*args, **kwargs)
        except Exception:
            logger.exception("alert hook %s failed; the sync goes on", hook.__name__)

    return safe


@_never_raises
def attempts_recorded(
    organization_id: int, attempts: Iterable[SyncLog], **signal_args: Any
) -> None:
    """After a batch of attempts is written: S7.1 for records that have now failed at
    least three times, S7.2 when anything failed. Nothing is queried for a clean batch."""
    failed = [a for a in attempts if a.status == SyncLog.Status.FAILED]
    if not failed:
        return
    third_or_later = {a.record_id for a in failed if a.attempt_number >= rules.FAILED_IN_A_ROW}
    rules.check_failing_records(organization_id, third_or_later)
    rules.check_many_errors(organization_id)


@_never_raises
def run_ended(run_id: int, **signal_args: Any) -> None:
    rules.after_run(SyncRun.objects.get(pk=run_id))


@_never_raises
def event_recorded(event: SyncEvent, **signal_args: Any) -> None:
    rules.alert_for_event(event)
