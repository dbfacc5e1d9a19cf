"""One reconciliation: read what the ERP holds, compare it record by record, keep the result.

The order matters (issue 15, item 2). The records are read first, then the ERP: a record
sent in between is "there, not recorded as sent here" at worst, and the correction that
follows is a conditional update that leaves a record alone once it is synced. Read the
other way round, a record sent in between would look "sent here, missing there".

A record the ERP holds but the application has not marked as sent is corrected through
the sync engine, never here: it is marked for a lookup and a run is started for it, so
the engine finds it by its reference, marks it synced with that answer as its evidence
in the attempt log, and never sends it again (accounting_sync/orchestrator.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounting_sync.models import FinancialRecord, SyncLog, SyncRun
from accounting_sync.orchestrator import RunAlreadyGoing, start_run
from alerts import rules
from alerts.models import Alert
from audit.models import AdminAction
from core import chain
from integrations.clients.base import ConnectorError, ErpEntry
from integrations.notes import NoteCode, note
from organizations.models import Organization
from reconciliation.models import Item, Reconciliation

logger = logging.getLogger(__name__)

State = FinancialRecord.State
Klass = Item.Klass
COMPARED = ("amount", "account", "cost_center", "posting_date")
SENT_HERE = {State.SYNCED, State.AWAITING}
CORRECTABLE: set[str] = {State.PENDING, State.FAILED}


class AlreadyReconciling(Exception):
    """A reconciliation of this organization is queued or running."""

    def __init__(self, running: Reconciliation | None) -> None:
        super().__init__("a reconciliation is already queued or running")
        self.running = running


def prefix_of(organization_id: int) -> str:
    """The start every reference of this organization's records carries (VH-<org>-)."""
    return f"VH-{organization_id}-"


def record_id_of(reference: str, organization_id: int) -> int | None:
    rest = reference.upper().removeprefix(prefix_of(organization_id).upper())
    return int(rest) if rest != reference.upper() and rest.isdigit() else None


def request(
    organization: Organization,
    start: date,
    end: date,
    *,
    user: Any = None,
    trigger: str = Reconciliation.Trigger.MANUAL,
) -> Reconciliation:
    """Queue a reconciliation; the worker task runs it once the transaction commits."""
    from reconciliation.tasks import run_reconciliation

    try:
        with transaction.atomic():
            queued = Reconciliation.objects.create(
                organization=organization,
                connector=organization.integration.connector,
                period_start=start,
                period_end=end,
                trigger=trigger,
                requested_by=user if getattr(user, "is_authenticated", False) else None,
            )
    except IntegrityError:
        busy = Reconciliation.objects.filter(
            organization=organization, status__in=["queued", "running"]
        ).first()
        raise AlreadyReconciling(busy) from None
    transaction.on_commit(lambda: run_reconciliation.delay(queued.pk))
    return queued


def run(reconciliation_id: int) -> Reconciliation | None:
    """Carry out a queued reconciliation; a second delivery of the task does nothing."""
    claimed = Reconciliation.objects.filter(
        pk=reconciliation_id, status=Reconciliation.Status.QUEUED
    ).update(status=Reconciliation.Status.RUNNING, started_at=timezone.now())
    if not claimed:
        return None
    reconciliation = Reconciliation.objects.select_related("organization__integration").get(
        pk=reconciliation_id
    )
    Reading(reconciliation).carry_out()
    reconciliation.refresh_from_db()
    return reconciliation


@dataclass(frozen=True)
class Ours:
    """What a record says the ERP should hold."""

    record: FinancialRecord
    amount: str
    account: str
    cost_center: str
    posting_date: str

    def values(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in COMPARED}


class Reading:
    """Reads the ERP for one reconciliation and writes its items."""

    def __init__(self, reconciliation: Reconciliation) -> None:
        self.reconciliation = reconciliation
        self.organization = reconciliation.organization
        self.integration = self.organization.integration
        self.prefix = prefix_of(self.organization.pk)

    def carry_out(self) -> None:
        rec = self.reconciliation
        Reconciliation.objects.filter(pk=rec.pk).update(
            attempts_head=chain.head(SyncLog, self.organization.pk),
            trail_head=chain.head(AdminAction, self.organization.pk),
        )
        ours = self._records_in_period()
        try:
            entries, erp_digest = self._read_erp()
        except ConnectorError as error:
            self._fail(error.note.stored(), error.erp_words)
            return
        except Exception:
            logger.exception("reconciliation %s failed unexpectedly", rec.pk)
            self._fail(note(NoteCode.RECONCILIATION_UNEXPECTED_ERROR).stored(), "")
            return
        items = self._classify(ours, entries)
        counts = Counter(item.klass for item in items)
        with transaction.atomic():
            Item.objects.bulk_create(items, batch_size=2000)
            Reconciliation.objects.filter(pk=rec.pk).update(
                status=Reconciliation.Status.DONE,
                finished_at=timezone.now(),
                counts=dict(counts),
                erp_digest=erp_digest,
            )
        self._correct([item for item in items if item.klass == Klass.THERE_NOT_HERE])
        review_findings(self.organization.pk)
        Organization.touch(self.organization.pk)  # live pages (the overview) show the result

    # --- reading ---------------------------------------------------------------------------

    def _records_in_period(self) -> dict[int, Ours]:
        rec = self.reconciliation
        zone = timezone.get_current_timezone()
        since = datetime.combine(rec.period_start, time.min, tzinfo=zone)
        until = datetime.combine(rec.period_end + timedelta(days=1), time.min, tzinfo=zone)
        records = FinancialRecord.objects.filter(
            organization=self.organization, approved_at__gte=since, approved_at__lt=until
        )
        return self._expected(records)

    def _expected(self, records) -> dict[int, Ours]:
        mappings = {m.category: m for m in self.integration.mappings.all()}
        found: dict[int, Ours] = {}
        for record in records.iterator(chunk_size=5000):
            mapping = mappings.get(record.category)
            found[record.pk] = Ours(
                record=record,
                amount=f"{record.amount:.2f}",
                # The mapping in force now: a record sent before its mapping changed shows
                # the change as a difference, which an admin can accept with a comment.
                account=mapping.account_code if mapping else "",
                cost_center=mapping.cost_center_code if mapping else "",
                posting_date=timezone.localtime(record.approved_at).date().isoformat(),
            )
        return found

    def _read_erp(self) -> tuple[list[ErpEntry], str]:
        rec = self.reconciliation
        connector = self.integration.build_connector()
        hasher = hashlib.sha256()
        entries: list[ErpEntry] = []
        for page in connector.entries(rec.period_start, rec.period_end, self.prefix):
            for entry in page:
                hasher.update(_canonical(entry).encode())
                hasher.update(b"\n")
            entries.extend(page)
            Reconciliation.objects.filter(pk=rec.pk).update(
                entries_read=len(entries), pages_read=rec.pages_read + 1
            )
            rec.pages_read += 1
        return entries, hasher.hexdigest()

    # --- classifying -----------------------------------------------------------------------

    def _classify(self, ours: dict[int, Ours], entries: list[ErpEntry]) -> list[Item]:
        by_record: dict[int, list[ErpEntry]] = defaultdict(list)
        strangers: list[ErpEntry] = []
        for entry in entries:
            record_id = record_id_of(entry.reference, self.organization.pk)
            if record_id is None:
                strangers.append(entry)
            else:
                by_record[record_id].append(entry)
        # Entries of records outside the period (finance moved the date): still theirs.
        outside = set(by_record) - set(ours)
        if outside:
            ours = {
                **ours,
                **self._expected(
                    FinancialRecord.objects.filter(organization=self.organization, pk__in=outside)
                ),
            }
        items = [self._item(expected, by_record.get(pk, [])) for pk, expected in ours.items()]
        for pk, extra in by_record.items():
            if pk in ours:
                # A second entry under one reference: no record explains it (a duplicate).
                items += [self._unexplained(entry, ours[pk].record) for entry in extra[1:]]
            else:
                strangers += extra
        items += [self._unexplained(entry) for entry in strangers]
        return items

    def _unexplained(self, entry: ErpEntry, record: FinancialRecord | None = None) -> Item:
        return Item(
            reconciliation=self.reconciliation,
            record=record,
            reference=entry.reference,
            klass=Klass.UNEXPLAINED,
            theirs=_theirs(entry),
        )

    def _item(self, expected: Ours, found: list[ErpEntry]) -> Item:
        record = expected.record
        entry = found[0] if found else None
        theirs = _theirs(entry) if entry is not None else {}
        differences = [
            name
            for name in COMPARED
            if entry is not None and theirs[name] != getattr(expected, name)
        ]
        if record.state == State.SENDING:
            klass = Klass.IN_FLIGHT
        elif record.state in SENT_HERE:
            if entry is None:
                klass = Klass.MISSING_THERE
            elif differences:
                klass = Klass.DIFFERENT
            elif not entry.posted:
                klass = Klass.NOT_POSTED
            else:
                klass = Klass.MATCHED
        else:
            klass = Klass.THERE_NOT_HERE if entry is not None else Klass.NOT_SENT
        return Item(
            reconciliation=self.reconciliation,
            record=record,
            reference=record.reference,
            klass=klass,
            ours=expected.values(),
            theirs=theirs,
            differences=differences,
        )

    # --- acting on what was found ----------------------------------------------------------

    def _correct(self, items: list[Item]) -> None:
        """Hand the records the ERP holds, unmarked here, to the engine's lookup."""
        ids = [item.record_id for item in items if item.record_id is not None]
        if not ids:
            return
        marked = mark_for_lookup(ids, from_states=CORRECTABLE)
        if not marked:
            return
        Item.objects.filter(reconciliation=self.reconciliation, record_id__in=marked).update(
            resolution=Item.Resolution.CORRECTED, resolved_at=timezone.now()
        )
        start_lookup_run(self.organization, marked)

    def _fail(self, failure_note: dict[str, Any], erp_words: str) -> None:
        Reconciliation.objects.filter(pk=self.reconciliation.pk).update(
            status=Reconciliation.Status.FAILED,
            finished_at=timezone.now(),
            failure_note=failure_note,
            failure_words=erp_words,
        )
        Organization.touch(self.organization.pk)


def review_findings(organization_id: int) -> None:
    """Open the findings alert while the latest reading has open findings; resolve it once
    they are cleared (a later reading without any, or each one corrected, resent or
    accepted). One open alert at most: alerts/rules.py dedupes."""
    latest = (
        Reconciliation.objects.filter(
            organization_id=organization_id, status=Reconciliation.Status.DONE
        )
        .order_by("-created_at", "-id")
        .first()
    )
    if latest is None:
        return
    open_findings = latest.items.filter(
        klass__in=Klass.problems(), resolution=Item.Resolution.NONE
    ).count()
    if open_findings:
        rules.open_alert(
            organization_id,
            Alert.Kind.RECONCILIATION_FINDINGS,
            {
                "count": open_findings,
                "start": latest.period_start.isoformat(),
                "end": latest.period_end.isoformat(),
                "reconciliation": latest.pk,
            },
        )
    else:
        rules.resolve([organization_id], Alert.Kind.RECONCILIATION_FINDINGS)


def mark_for_lookup(record_ids: list[int], *, from_states: set[str]) -> list[int]:
    """Make these records due for a lookup before any send; returns those it marked.

    Conditional: a record being sent, or no longer in one of `from_states`, is left alone.
    No retry is spent (a lookup sends nothing).
    """
    now = timezone.now()
    candidates = FinancialRecord.objects.filter(
        pk__in=record_ids, state__in=from_states, claimed_by__isnull=True
    )
    with transaction.atomic():
        marked = list(candidates.select_for_update().values_list("pk", flat=True))
        FinancialRecord.objects.filter(pk__in=marked).update(
            state=State.FAILED,
            needs_lookup=True,
            lookup_failures=0,
            next_retry_at=now,
            last_note=note(NoteCode.RECONCILIATION_LOOKUP).stored(),
            updated_at=now,
        )
    return marked


def start_lookup_run(organization: Organization, record_ids: list[int]) -> SyncRun | None:
    """A run for exactly these records; when one is running, the next run takes them (due)."""
    from accounting_sync.tasks import run_sync

    if not organization.integration.enabled:
        return None  # they wait, marked for lookup, until the connector is enabled
    try:
        run = start_run(organization, SyncRun.Trigger.RETRY, record_ids=record_ids)
    except RunAlreadyGoing:
        return None
    transaction.on_commit(lambda: run_sync.delay(run.pk))
    return run


def _theirs(entry: ErpEntry) -> dict[str, str]:
    return {
        "amount": f"{entry.amount:.2f}",
        "account": entry.account,
        "cost_center": entry.cost_center,
        "posting_date": entry.posting_date.isoformat(),
        "erp_id": entry.erp_id,
        "source": str(entry.source),
        "currency": entry.currency,
    }


def _canonical(entry: ErpEntry) -> str:
    return json.dumps(
        {"reference": entry.reference, **_theirs(entry)},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
