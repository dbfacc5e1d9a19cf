"""The record state rules, named once on FinancialRecord's queryset (issue 14 item 3).

Each method is what a run, a page or the sweep asks: which records a run may take (S2,
S3), what the Failed Records page lists (S6.1), which failures are due for a retry (S6.6),
what a run holds (docs/architecture.md, "Exactly once"). A record in every state is made
once, and each test checks exactly which of them a rule picks.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounting_sync.models import ErrorClass, FinancialRecord, SyncRun
from integrations.clients.base import Outcome
from integrations.models import CategoryMapping, Integration

State = FinancialRecord.State
NOW = timezone.now()
PAST, FUTURE = NOW - timedelta(minutes=5), NOW + timedelta(minutes=5)


def make(org, name: str, state: str, **fields) -> FinancialRecord:
    defaults = {
        "kind": "reimbursement",
        "category": "travel",
        "amount": Decimal("100.00"),
        "expense_date": NOW.date(),
        "approved_at": NOW,
        "claimant_reference": "V-1",
        "claimant_name": "Kari Nordmann",
    }
    return FinancialRecord.objects.create(
        organization=org, source_id=name, state=state, **{**defaults, **fields}
    )


def names(queryset) -> set[str]:
    return set(queryset.values_list("source_id", flat=True))


@pytest.fixture
def run(org) -> SyncRun:
    return SyncRun.objects.create(organization=org, connector="xledger", trigger="manual")


@pytest.fixture
def records(org, other_org, run) -> dict[str, FinancialRecord]:
    made = [
        make(org, "pending", State.PENDING),
        make(org, "pending-honorarium", State.PENDING, kind="honorarium"),
        make(org, "failed-due", State.FAILED, next_retry_at=PAST, retry_count=1),
        make(org, "failed-later", State.FAILED, next_retry_at=FUTURE, retry_count=1),
        make(org, "failed-for-good", State.FAILED, next_retry_at=None, retry_count=1),
        make(org, "skipped-mapped", State.SKIPPED, category="travel"),
        make(org, "skipped-unmapped", State.SKIPPED, category="parking"),
        make(org, "awaiting-due", State.AWAITING, next_retry_at=PAST),
        make(org, "awaiting-later", State.AWAITING, next_retry_at=FUTURE),
        make(org, "sending-first", State.SENDING, claimed_by=run),
        make(org, "sending-retry", State.SENDING, claimed_by=run, retry_count=2),
        make(org, "synced", State.SYNCED),
        make(other_org, "other-pending", State.PENDING),
        make(other_org, "other-failed-due", State.FAILED, next_retry_at=PAST),
    ]
    return {record.source_id: record for record in made}


def test_s3_1_sendable_is_pending_due_failures_and_skipped_records_now_mapped(org, records):
    integration = Integration.objects.get(organization=org)
    CategoryMapping.objects.create(
        integration=integration, category="travel", account_code="7130", cost_center_code="300"
    )
    sendable = FinancialRecord.objects.sendable(org, integration, NOW)
    assert names(sendable) == {"pending", "pending-honorarium", "failed-due", "skipped-mapped"}

    integration.include_honorariums = False  # a kind left out is never sent (S1)
    assert names(FinancialRecord.objects.sendable(org, integration, NOW)) == {
        "pending",
        "failed-due",
        "skipped-mapped",
    }


def test_s6_2_retry_selected_takes_the_chosen_records_not_sent_or_held(org, other_org, records):
    chosen = [record.pk for record in records.values()]
    picked = FinancialRecord.objects.chosen_for_retry(org, chosen)
    assert names(picked) == {
        "pending",
        "pending-honorarium",
        "failed-due",
        "failed-later",
        "failed-for-good",
        "skipped-mapped",
        "skipped-unmapped",
    }
    assert names(FinancialRecord.objects.chosen_for_retry(org, [records["synced"].pk])) == set()


def test_a_run_holds_what_it_claimed_and_is_still_sending(run, records):
    assert names(FinancialRecord.objects.held_by(run)) == {"sending-first", "sending-retry"}
    assert names(FinancialRecord.objects.held_by(run.pk)) == {"sending-first", "sending-retry"}
    FinancialRecord.objects.filter(source_id="sending-first").update(state=State.FAILED)
    assert names(FinancialRecord.objects.held_by(run)) == {"sending-retry"}


def test_s6_1_the_failed_queue_lists_failures_and_records_being_retried_newest_first(org, records):
    FinancialRecord.objects.filter(source_id="failed-due").update(approved_at=PAST)
    queue = FinancialRecord.objects.filter(organization=org).failed_queue()
    assert list(queue.values_list("source_id", flat=True)) == [
        "sending-retry",  # a re-send of a failed record stays listed ("retrying now")
        "failed-for-good",
        "failed-later",
        "failed-due",
    ]


def test_s6_6_due_for_retry_is_failed_records_whose_time_has_come(records):
    assert names(FinancialRecord.objects.due_for_retry(NOW)) == {"failed-due", "other-failed-due"}
    assert names(FinancialRecord.objects.due_for_retry(FUTURE)) == {
        "failed-due",
        "failed-later",
        "other-failed-due",
    }


def test_due_for_import_check_is_awaiting_records_whose_time_has_come(records):
    assert names(FinancialRecord.objects.due_for_import_check(NOW)) == {"awaiting-due"}


def test_s9_4_a_retried_schedule_resends_waiting_and_failed_but_not_refused_for_good(org, records):
    resendable = FinancialRecord.objects.filter(organization=org).resendable()
    assert names(resendable) == {"pending", "pending-honorarium", "failed-due", "failed-later"}


def test_s7_3_not_yet_sent_counts_pending_and_sending(org, records):
    waiting = FinancialRecord.objects.filter(organization=org).not_yet_sent()
    assert names(waiting) == {"pending", "pending-honorarium", "sending-first", "sending-retry"}
    assert names(FinancialRecord.objects.filter(organization=org).pending()) == {
        "pending",
        "pending-honorarium",
    }
    assert names(FinancialRecord.objects.filter(organization=org).awaiting()) == {
        "awaiting-due",
        "awaiting-later",
    }


def test_the_error_classes_are_the_connector_outcomes_and_the_runs_own_two() -> None:
    failures = {outcome.value for outcome in Outcome if outcome != Outcome.SUCCEEDED}
    assert set(ErrorClass.values) == failures | {"network", "abandoned"}
    # The audit exports write these codes: they must stay the strings they always were.
    assert ErrorClass.of(Outcome.PERMANENT) == "permanent"
    assert ErrorClass.of(Outcome.RATE_LIMITED) == "rate_limited"
