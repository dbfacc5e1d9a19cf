"""The alert rules (S7.1-S7.4, S7.6, S9.4): one small function per condition.

Each check both opens an alert when its condition holds and resolves the open one
when it no longer does (S7.4), so running a check again, or twice at once, changes
nothing: `open_alert` leaves an open alert alone, and the database's partial unique
index refuses a second open one for the same problem.

They are called from alerts/hooks.py when the engine writes attempts, ends a run or
records an event, and from the periodic task (alerts/tasks.py) for what time alone
changes: records that have waited 48 hours, failures leaving the 24-hour window.

Opening and resolving also queue the e-mails about it (alerts/mail.py), after the commit.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from accounting_sync.models import ErrorClass, FinancialRecord, SyncEvent, SyncLog, SyncRun
from alerts.models import Alert, AlertEmail, AlertRecipient
from organizations.models import Membership, Organization

logger = logging.getLogger(__name__)

Kind = Alert.Kind
FAILED = SyncLog.Status.FAILED
# S7.1: this many failed attempts in a row for one record.
FAILED_IN_A_ROW = 3
# S7.2: more failed attempts than this within the window, for one organization.
MANY_ERRORS_LIMIT = 10
MANY_ERRORS_WINDOW = timedelta(hours=24)
# S7.3: approved records not sent after this long, with the connector enabled.
PENDING_LIMIT = timedelta(hours=48)
# An authentication failure is the credentials' problem, alerted on its own (S7.6): it
# does not make a record "keep failing".
AUTHENTICATION = ErrorClass.AUTHENTICATION


# --- opening and resolving -------------------------------------------------------------------


def recipients_for(organization_id: int, *, global_admins: bool = False) -> list[int]:
    """The organization's admins, and the global admins when asked (S7.2).

    An organization without an admin would hear nothing, so its alerts go to the global
    admins instead.
    """
    users = get_user_model().objects.filter(is_active=True)
    admins = list(
        users.filter(
            memberships__organization_id=organization_id,
            memberships__role=Membership.Role.ADMIN,
        ).values_list("pk", flat=True)
    )
    if global_admins or not admins:
        admins += list(users.filter(is_superuser=True).values_list("pk", flat=True))
    return sorted(set(admins))


def open_alert(
    organization_id: int,
    kind: str,
    details: dict,
    *,
    key: str = "",
    global_admins: bool = False,
    now: datetime | None = None,
) -> Alert | None:
    """Open an alert for this problem unless one is open already; None if one was."""
    still_open = Alert.objects.filter(
        organization_id=organization_id, kind=kind, key=key, resolved_at__isnull=True
    )
    if still_open.exists():  # the usual case on a repeated check: no insert attempted
        return None
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                organization_id=organization_id,
                kind=kind,
                key=key,
                details=details,
                opened_at=now or timezone.now(),
            )
            AlertRecipient.objects.bulk_create(
                AlertRecipient(alert=alert, user_id=user_id, organization_id=organization_id)
                for user_id in recipients_for(organization_id, global_admins=global_admins)
            )
    except IntegrityError:
        # Another worker opened it between our look and our insert: the index said no.
        return None
    logger.info("alert %s opened: organization %s %s %s", alert.pk, organization_id, kind, key)
    email_after_commit([alert.pk], AlertEmail.Kind.OPENED)
    return alert


def resolve(
    organization_ids: Iterable[int] | None,
    kind: str,
    *,
    keys: Iterable[str] | None = None,
    opened_before: datetime | None = None,
    now: datetime | None = None,
) -> int:
    """Close the open alerts of this kind (for these organizations / keys); how many."""
    alerts = Alert.objects.filter(kind=kind, resolved_at__isnull=True)
    if organization_ids is not None:
        alerts = alerts.filter(organization_id__in=list(organization_ids))
    if keys is not None:
        alerts = alerts.filter(key__in=list(keys))
    if opened_before is not None:
        alerts = alerts.filter(opened_at__lt=opened_before)
    closed = Alert.resolve(alerts, now or timezone.now())
    email_after_commit(closed, AlertEmail.Kind.RESOLVED)
    return len(closed)


def email_after_commit(alert_ids: list[int], change: str) -> None:
    """Queue the e-mails about these alerts once the transaction that opened or resolved
    them commits: an alert rolled back with its sync (or its hook's savepoint) mails
    nobody. `robust`: a broker that is down costs the e-mail, never the sync."""
    if alert_ids and settings.ALERT_EMAILS_ENABLED:
        transaction.on_commit(partial(_queue_emails, alert_ids, change), robust=True)


def _queue_emails(alert_ids: list[int], change: str) -> None:
    from alerts.tasks import queue_alert_emails  # the tasks module imports this one

    for alert_id in alert_ids:
        queue_alert_emails(alert_id, change)


# --- S7.1: a record fails three attempts in a row ------------------------------------------------


def record_key(record_id: int) -> str:
    return f"record:{record_id}"


def check_failing_records(organization_id: int, record_ids: Iterable[int], now=None) -> None:
    """Open an alert for each record whose last three attempts all failed; close the
    alerts of those that no longer do (a later attempt went through, or it was synced)."""
    record_ids = set(record_ids)
    if not record_ids:
        return
    latest = (
        SyncLog.objects.filter(record_id__in=record_ids)
        .annotate(
            rank=Window(
                RowNumber(), partition_by=[F("record_id")], order_by=F("attempt_number").desc()
            )
        )
        .filter(rank__lte=FAILED_IN_A_ROW)
        .values(
            "record_id",
            "status",
            "error_class",
            "error_message",
            "note",
            "reference",
            "record__kind",
            "record__state",
        )
    )
    attempts: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for row in latest:
        attempts[row["record_id"]].append(row)
    failing = {record_id: rows for record_id, rows in attempts.items() if _keeps_failing(rows)}
    for record_id, rows in failing.items():
        last = rows[0]
        open_alert(
            organization_id,
            Kind.RECORD_FAILING,
            {
                "record_id": record_id,
                "reference": last["reference"],
                "record_kind": last["record__kind"],  # its word is chosen when shown
                "attempts": FAILED_IN_A_ROW,
                "error": last["error_message"],
                "note": last["note"],
            },
            key=record_key(record_id),
            now=now,
        )
    recovered = record_ids - set(failing)
    if recovered:
        resolve([organization_id], Kind.RECORD_FAILING, keys=map(record_key, recovered), now=now)


def _keeps_failing(latest_first: list[Mapping[str, Any]]) -> bool:
    return (
        len(latest_first) == FAILED_IN_A_ROW
        and all(r["status"] == FAILED and r["error_class"] != AUTHENTICATION for r in latest_first)
        and latest_first[0]["record__state"] != FinancialRecord.State.SYNCED
    )


def recheck_failing_records(organization_id: int, now=None) -> None:
    """Look again at every record with an open S7.1 alert (after a run, periodically)."""
    keys = Alert.objects.filter(
        organization_id=organization_id, kind=Kind.RECORD_FAILING, resolved_at__isnull=True
    ).values_list("key", flat=True)
    record_ids = {int(key.removeprefix("record:")) for key in keys}
    check_failing_records(organization_id, record_ids, now=now)


# --- S7.2: more than 10 failed attempts in 24 hours ----------------------------------------------


def _failures_in_window(now: datetime):
    return SyncLog.objects.filter(created_at__gt=now - MANY_ERRORS_WINDOW, status=FAILED)


def check_many_errors(organization_id: int, now=None) -> None:
    """Open (to the organization's and the global admins) or resolve the S7.2 alert."""
    now = now or timezone.now()
    failures = _failures_in_window(now).filter(organization_id=organization_id).order_by()
    # Counting stops at the limit: the answer is only "more than 10 or not".
    over = failures[: MANY_ERRORS_LIMIT + 1].count() > MANY_ERRORS_LIMIT
    if over:
        _open_many_errors(organization_id, failures, now)
    else:
        resolve([organization_id], Kind.MANY_ERRORS, now=now)


def _open_many_errors(organization_id: int, failures, now: datetime) -> None:
    if Alert.objects.filter(
        organization_id=organization_id, kind=Kind.MANY_ERRORS, resolved_at__isnull=True
    ).exists():
        return  # counting them again would change nothing
    last = failures.order_by("-created_at", "-id").values("error_message", "note").first() or {}
    open_alert(
        organization_id,
        Kind.MANY_ERRORS,
        {
            "count": failures.count(),
            "limit": MANY_ERRORS_LIMIT,
            "error": last.get("error_message", ""),
            "note": last.get("note") or {},
        },
        global_admins=True,
        now=now,
    )


# --- S7.3: records pending more than 48 hours with the connector enabled ----------------------


def check_waiting_records(organization_id: int, now=None) -> None:
    """Open the S7.3 alert if records have waited too long; close it once none has any
    more (sent, or the connector turned off)."""
    now = now or timezone.now()
    # Not yet sent counts one being sent right now: it has still waited, and counting it
    # keeps a check that runs during a sync from closing the alert only to open it again.
    waiting = (
        FinancialRecord.objects.not_yet_sent()
        .filter(
            organization_id=organization_id,
            received_at__lt=now - PENDING_LIMIT,
            organization__integration__enabled=True,
        )
        .count()
    )
    if waiting:
        hours = int(PENDING_LIMIT.total_seconds() // 3600)
        open_alert(
            organization_id, Kind.PENDING_TOO_LONG, {"count": waiting, "hours": hours}, now=now
        )
    else:
        resolve([organization_id], Kind.PENDING_TOO_LONG, now=now)


# --- S7.6 and S9.4: events the engine records ----------------------------------------------------


def alert_for_event(event: SyncEvent) -> Alert | None:
    """An authentication failure (S7.6) or a scheduled sync out of retries (S9.4), at once."""
    if event.kind == SyncEvent.Kind.AUTHENTICATION_FAILED:
        return open_alert(
            event.organization_id,
            Kind.AUTHENTICATION_FAILED,
            {"error": event.message, "note": event.note, "run": event.run_id},
        )
    if event.kind == SyncEvent.Kind.SCHEDULED_RUN_FAILED:
        from accounting_sync.tasks import SCHEDULED_RETRIES  # tasks imports the hooks

        return open_alert(
            event.organization_id,
            Kind.SCHEDULED_SYNC_FAILED,
            {"retries": SCHEDULED_RETRIES, **_run_error(event.run), "run": event.run_id},
        )
    return None


def _run_error(run: SyncRun | None) -> dict[str, Any]:
    """The run's last failure: the ERP's words ("error") and our note on it; both empty
    when it has none to give (the alert then words the run's own outcome when shown, in
    its reader's language)."""
    last = None
    if run is not None:
        last = (
            SyncLog.objects.filter(run=run, status=FAILED)
            .order_by("-id")
            .values("error_message", "note")
            .first()
        )
    if last is None:
        return {"error": "", "note": {}}
    return {"error": last["error_message"], "note": last["note"]}


def resolve_by_run(run: SyncRun, now=None) -> None:
    """A later run that sent something proves the ERP is reachable and takes the
    credentials: the scheduled-sync and authentication alerts opened before it close."""
    if run.sent == 0:
        return
    if SyncEvent.objects.filter(run=run, kind=SyncEvent.Kind.AUTHENTICATION_FAILED).exists():
        return  # it sent a batch, then the credentials were refused: still the problem
    for kind in (Kind.SCHEDULED_SYNC_FAILED, Kind.AUTHENTICATION_FAILED):
        resolve([run.organization_id], kind, opened_before=run.started_at, now=now)


# --- the entry points ---------------------------------------------------------------------------


def check_organization(organization_id: int, now=None) -> None:
    """Every rule that a check can decide, for one organization."""
    now = now or timezone.now()
    recheck_failing_records(organization_id, now)
    check_many_errors(organization_id, now)
    check_waiting_records(organization_id, now)


def after_run(run: SyncRun, now=None) -> None:
    """Everything a finished run may have changed for its organization."""
    now = now or timezone.now()
    resolve_by_run(run, now)
    check_organization(run.organization_id, now)


def periodic_check(now=None) -> None:
    """What time alone changes (the beat task). One organization at a time: each query
    then stays on that organization's index entries (the last 24 hours of its attempts,
    its pending records) however long sync_logs grows."""
    now = now or timezone.now()
    for organization_id in Organization.objects.order_by("pk").values_list("pk", flat=True):
        check_organization(organization_id, now)
