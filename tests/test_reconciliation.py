"""Issue 15 item 2: every record and every ERP entry of a period, classified.

What the ERP answers is given here by a stand-in connector (the sandbox tests of `entries`
are in tests/test_reconciliation_erp.py); the records, the classification, the evidence
kept and the hand-over to the sync engine are the real ones.
"""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounting_sync.models import FinancialRecord, SyncLog, SyncRun
from alerts.models import Alert
from audit.models import AdminAction
from core import chain
from core.events import TrailKind
from integrations.clients.base import ConnectorError, EntrySource, ErpEntry, Outcome
from integrations.models import CategoryMapping, Integration
from integrations.notes import NoteCode, note
from reconciliation import actions, engine, nightly
from reconciliation.models import Item, Reconciliation
from tests.factories import make_records
from tests.reconciliation_fakes import Ledger, entry, set_state, stand_in

State = FinancialRecord.State
Klass = Item.Klass


@pytest.fixture
def ledger(monkeypatch) -> Ledger:
    return stand_in(monkeypatch)


@pytest.fixture
def mapped(org) -> Integration:
    integration = org.integration
    integration.payable_account = "2910"
    integration.save()
    CategoryMapping.objects.create(
        integration=integration, category="travel", account_code="7140", cost_center_code="300"
    )
    return integration


def reconcile(org, start: date | None = None, end: date | None = None) -> Reconciliation:
    yesterday = timezone.localdate() - timedelta(days=1)
    queued = engine.request(org, start or yesterday, end or yesterday)
    done = engine.run(queued.pk)
    assert done is not None
    return done


def classes(reconciliation: Reconciliation) -> dict[str, str]:
    """Each record's class (an unexplained entry of a record is looked at on its own)."""
    items = reconciliation.items.exclude(klass=Klass.UNEXPLAINED, record__isnull=False)
    return dict(items.values_list("reference", "klass"))


@pytest.mark.django_db
def test_issue15_item2_every_record_and_entry_gets_its_class(org, mapped, ledger):
    (matched, journal, missing, different, there, not_sent, sending, moved) = make_records(org, 8)
    for record in (matched, journal, missing, different, moved):
        set_state(record, State.SYNCED)
    set_state(sending, State.SENDING)
    set_state(there, State.FAILED, retry_count=3)
    # Finance moved `moved` out of the period: the entry of a record of this organization
    # still belongs to it, and the date differs.
    FinancialRecord.objects.filter(pk=moved.pk).update(
        approved_at=moved.approved_at - timedelta(days=40)
    )
    moved.refresh_from_db()
    ledger.entries_held = [
        entry(matched),
        entry(journal, source=EntrySource.JOURNAL_LINE),
        entry(different, amount=Decimal("999.00"), cost_center="400"),
        entry(there),
        entry(sending),
        entry(moved, posting_date=timezone.localdate() - timedelta(days=1)),
        entry(matched, erp_id="keyed-by-hand"),  # a second entry under one reference
        ErpEntry(
            f"{engine.prefix_of(org.pk)}999999", "stray", EntrySource.LEDGER_ENTRY,
            timezone.localdate() - timedelta(days=1), Decimal("5.00"), "7140",
        ),
    ]  # fmt: skip

    done = reconcile(org)

    assert done.status == Reconciliation.Status.DONE
    found = classes(done)
    assert found[matched.reference] == Klass.MATCHED
    assert found[journal.reference] == Klass.NOT_POSTED
    assert found[missing.reference] == Klass.MISSING_THERE
    assert found[different.reference] == Klass.DIFFERENT
    assert found[there.reference] == Klass.THERE_NOT_HERE
    assert found[not_sent.reference] == Klass.NOT_SENT
    assert found[sending.reference] == Klass.IN_FLIGHT
    assert found[moved.reference] == Klass.DIFFERENT
    assert found[f"{engine.prefix_of(org.pk)}999999"] == Klass.UNEXPLAINED
    duplicate = done.items.get(theirs__erp_id="keyed-by-hand")
    assert (duplicate.klass, duplicate.record_id) == (Klass.UNEXPLAINED, matched.pk)
    # Both values of a difference, and only the fields that differ.
    item = done.items.get(reference=different.reference)
    assert item.differences == ["amount", "cost_center"]
    assert (item.ours["amount"], item.theirs["amount"]) == (f"{different.amount:.2f}", "999.00")
    assert (item.ours["cost_center"], item.theirs["cost_center"]) == ("300", "400")
    assert done.items.get(reference=moved.reference).differences == ["posting_date"]
    assert done.counts == done.tally()
    assert done.problems == 6  # missing, two different, there-not-here, two unexplained
    assert done.entries_read == 8 and done.pages_read == 4


@pytest.mark.django_db
def test_issue15_item2_a_record_there_but_not_marked_sent_goes_to_the_engines_lookup(
    org, mapped, ledger
):
    """Corrected through the engine: marked for a lookup, never sent again blindly."""
    integration = mapped
    integration.enabled = True
    integration.save()
    pending, failed = make_records(org, 2)
    set_state(failed, State.FAILED, retry_count=5, last_error="HTTP 503")
    ledger.entries_held = [entry(pending), entry(failed)]

    done = reconcile(org)

    for record in (pending, failed):
        record.refresh_from_db()
        assert record.state == State.FAILED and record.needs_lookup
        assert record.next_retry_at is not None and record.next_retry_at <= timezone.now()
        assert record.last_note["code"] == NoteCode.RECONCILIATION_LOOKUP
    assert set(
        done.items.filter(klass=Klass.THERE_NOT_HERE).values_list("resolution", flat=True)
    ) == {Item.Resolution.CORRECTED}
    run = SyncRun.objects.get()
    assert (run.trigger, sorted(run.record_ids or [])) == ("retry", sorted([pending.pk, failed.pk]))


@pytest.mark.django_db
def test_issue15_item2_a_record_sent_meanwhile_is_left_alone(org, mapped, ledger):
    """Read as pending, synced by a run before the correction: the conditional update skips it."""
    (record,) = make_records(org, 1)
    assert engine.mark_for_lookup([record.pk], from_states={State.SYNCED}) == []
    set_state(record, State.SENDING)
    assert engine.mark_for_lookup([record.pk], from_states=engine.CORRECTABLE) == []
    record.refresh_from_db()
    assert record.state == State.SENDING and not record.needs_lookup


@pytest.mark.django_db
def test_issue15_item3_the_evidence_is_kept_with_the_reading(org, mapped, ledger):
    (record,) = make_records(org, 1)
    set_state(record, State.SYNCED)
    ledger.entries_held = [entry(record)]

    first = reconcile(org)
    second = reconcile(org)

    assert first.erp_digest and first.erp_digest == second.erp_digest  # the same answers
    assert first.attempts_head == chain.head(SyncLog, org.pk)
    assert len(first.trail_head) == 64
    ledger.entries_held = [entry(record, amount=Decimal("1.00"))]
    assert reconcile(org).erp_digest != first.erp_digest
    assert Reconciliation.objects.filter(organization=org).count() == 3  # every run is kept
    (start, end, prefix) = ledger.asked[0]
    assert prefix == f"VH-{org.pk}-" and start == end == timezone.localdate() - timedelta(days=1)


@pytest.mark.django_db
def test_issue15_one_reconciliation_at_a_time_and_a_task_delivered_twice_runs_once(
    org, mapped, ledger
):
    day = timezone.localdate()
    queued = engine.request(org, day, day)
    with pytest.raises(engine.AlreadyReconciling) as refused:
        engine.request(org, day, day)
    assert refused.value.running == queued
    assert engine.run(queued.pk) is not None
    assert engine.run(queued.pk) is None  # the second delivery finds it claimed
    assert engine.request(org, day, day).status == Reconciliation.Status.QUEUED


@pytest.mark.django_db
def test_issue15_an_erp_that_cannot_answer_fails_the_reading_with_its_reason(org, mapped, ledger):
    ledger.fail = ConnectorError(
        Outcome.TRANSIENT, note(NoteCode.ADMIN_ERP_PROBLEM, erp="Xledger", status=503),
        erp_words="Service Unavailable",
    )  # fmt: skip
    (record,) = make_records(org, 1)
    set_state(record, State.SYNCED)

    done = reconcile(org)

    assert done.status == Reconciliation.Status.FAILED
    assert done.failure_note["code"] == NoteCode.ADMIN_ERP_PROBLEM
    assert done.failure_words == "Service Unavailable"
    assert not done.items.exists()  # nothing half-written: no class without the ERP's answer


# --- item 5: what an admin does about it ---------------------------------------------------


@pytest.mark.django_db
def test_issue15_item5_a_record_confirmed_missing_is_sent_again_through_the_engine(
    org, mapped, ledger, org_admin
):
    integration = mapped
    integration.enabled = True
    integration.save()
    (record,) = make_records(org, 1)
    set_state(record, State.SYNCED, erp_document_id="gone-1")
    item = reconcile(org).items.get(reference=record.reference)
    assert item.klass == Klass.MISSING_THERE

    run = actions.resend(item, org_admin)

    record.refresh_from_db()
    # Looked up first by the engine's run (it may have arrived since), then sent if absent.
    assert record.state == State.FAILED and record.needs_lookup
    assert run is not None and run.record_ids == [record.pk] and run.trigger == "retry"
    item.refresh_from_db()
    assert (item.resolution, item.resolved_by) == (Item.Resolution.RESENT, org_admin)
    trail = AdminAction.objects.get(kind=TrailKind.RECORD_RESENT)
    assert trail.detail == {"reconciliation": item.reconciliation_id, "reference": record.reference}
    with pytest.raises(actions.NotAllowed) as twice:
        actions.resend(item, org_admin)
    assert twice.value.code == "already_resolved"


@pytest.mark.django_db
def test_issue15_item5_a_difference_is_accepted_with_a_comment_once(org, mapped, ledger, org_admin):
    (record,) = make_records(org, 1)
    set_state(record, State.SYNCED)
    ledger.entries_held = [entry(record, account="7130")]
    item = reconcile(org).items.get(reference=record.reference)
    assert item.klass == Klass.DIFFERENT

    with pytest.raises(actions.NotAllowed) as empty:
        actions.accept(item, org_admin, "   ")
    assert empty.value.code == "comment_required"
    actions.accept(item, org_admin, "Finance moved it to 7130 on purpose (Bufdir grant).")

    item.refresh_from_db()
    assert item.resolution == Item.Resolution.ACCEPTED
    assert item.comment == "Finance moved it to 7130 on purpose (Bufdir grant)."
    trail = AdminAction.objects.get(kind=TrailKind.DIFFERENCE_ACCEPTED)
    assert trail.detail["comment"] == item.comment
    with pytest.raises(actions.NotAllowed):
        actions.accept(item, org_admin, "again")
    with pytest.raises(actions.NotAllowed) as matched:
        actions.resend(item, org_admin)  # a difference is not a missing record
    assert matched.value.code == "not_missing"


# --- item 4: the nightly reading ---------------------------------------------------------------


def at_local(org, hour: int, minute: int = 0, days_ago: int = 0):
    zone = zoneinfo.ZoneInfo(org.time_zone)
    day = timezone.now().astimezone(zone).date() - timedelta(days=days_ago)
    return datetime.combine(day, time(hour, minute), tzinfo=zone)


@pytest.mark.django_db
def test_issue15_item4_nightly_once_per_local_night_after_the_hour_and_the_schedule(
    org, mapped, ledger, settings
):
    settings.RECONCILIATION_NIGHTLY_HOUR = 4
    settings.RECONCILIATION_NIGHTLY_DAYS = 31
    integration = mapped
    integration.enabled = True
    integration.connection_verified_at = timezone.now()
    integration.schedule, integration.schedule_time = "daily", time(4, 30)
    integration.save()

    assert nightly.start_due(at_local(org, 3, 59)) == []  # before the hour
    assert nightly.start_due(at_local(org, 5, 0)) == []  # the 04:30 sync plus an hour
    (queued,) = nightly.start_due(at_local(org, 5, 30))
    local_today = at_local(org, 0).date()
    assert (queued.trigger, queued.period_end) == ("nightly", local_today - timedelta(days=1))
    assert queued.period_start == local_today - timedelta(days=31)
    engine.run(queued.pk)
    assert nightly.start_due(at_local(org, 23, 45)) == []  # once a night


@pytest.mark.django_db
def test_issue15_item4_a_disabled_or_untested_connector_is_not_read_at_night(org, mapped, ledger):
    integration = mapped
    integration.enabled, integration.connection_verified_at = False, timezone.now()
    integration.save()
    assert nightly.start_due(at_local(org, 6)) == []
    integration.enabled, integration.connection_verified_at = True, None
    integration.save()
    assert nightly.start_due(at_local(org, 6)) == []


@pytest.mark.django_db
def test_issue15_item4_findings_open_one_alert_resolved_once_they_are_cleared(
    org, mapped, ledger, org_admin
):
    (record,) = make_records(org, 1)
    set_state(record, State.SYNCED)
    ledger.entries_held = [entry(record, account="7130")]

    reconcile(org)
    reconcile(org)  # the same finding again: still one alert

    (alert,) = Alert.objects.filter(organization=org, kind=Alert.Kind.RECONCILIATION_FINDINGS)
    assert alert.is_open and alert.details["count"] == 1
    assert "found 1 record or entry that the application and the accounting system" in (
        alert.message
    )
    item = Reconciliation.objects.latest("pk").items.get(reference=record.reference)
    actions.accept(item, org_admin, "Moved to 7130 by finance on purpose.")
    alert.refresh_from_db()
    assert not alert.is_open  # cleared: the latest reading has nothing open
    # A later reading that agrees keeps it closed; a new finding opens a new one.
    ledger.entries_held = [entry(record)]
    reconcile(org)
    assert not Alert.objects.filter(kind=Alert.Kind.RECONCILIATION_FINDINGS, resolved_at=None)
    ledger.entries_held = []
    reconcile(org)
    assert Alert.objects.filter(kind=Alert.Kind.RECONCILIATION_FINDINGS, resolved_at=None)
