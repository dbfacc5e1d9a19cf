"""The sync engine in-process against the ERP sandbox: `start_run` + `execute_run`, no worker.

Each test is named after the criterion it proves (docs/stories.md S2, S3, S6, S9 and
docs/architecture.md, "Exactly once"). The builders it shares
with the other sync tests are in tests/factories.py.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connections
from django.utils import timezone

from accounting_sync import tasks
from accounting_sync.models import ErrorClass, FinancialRecord, SyncEvent, SyncLog, SyncRun
from accounting_sync.orchestrator import (
    BACKOFF_CAP_SECONDS,
    RunAlreadyGoing,
    backoff_seconds,
    execute_run,
    recover_stale_runs,
    start_run,
)
from accounting_sync.outcomes import RunDetail, SkipReason
from alerts.models import Alert
from integrations.forms import MappingsForm
from integrations.models import Integration
from organizations.models import Organization
from tests.factories import (
    PAYABLE,
    State,
    configure,
    ledger_counts,
    make_due,
    make_records,
    states,
    sync,
)

pytestmark = pytest.mark.usefixtures("trust_erp_sandbox")


# --- S2: the connector's toggle ------------------------------------------------------------------


def test_s2_2_a_disabled_connector_sends_nothing_and_records_stay_pending(org, erp_sandbox):
    configure(org, erp_sandbox, enabled=False)
    make_records(org, 5)

    run = sync(org)

    assert run.status == SyncRun.Status.FAILED
    assert run.detail_code == RunDetail.CONNECTOR_DISABLED and run.message == ""
    assert run.outcome_text() == (
        "The connector is disabled; records stay pending until it is enabled."
    )
    assert states(org) == {State.PENDING: 5}
    assert ledger_counts(erp_sandbox) == {}
    assert not SyncLog.objects.exists()


def test_s2_3_enabled_again_the_next_run_takes_every_record_queued_while_disabled(org, erp_sandbox):
    integration = configure(org, erp_sandbox, enabled=False)
    records = make_records(org, 7)
    sync(org)
    integration.enabled = True
    integration.save()

    run = sync(org)

    assert run.status == SyncRun.Status.SUCCEEDED
    assert (run.total, run.sent) == (7, 7)
    assert states(org) == {State.SYNCED: 7}
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in records}


@pytest.mark.django_db(transaction=True)
def test_s2_6_disabling_during_a_run_finishes_the_batch_in_flight_and_sends_no_more(
    org, erp_sandbox
):
    configure(org, erp_sandbox)
    make_records(org, 600)  # three Xledger batches of 250, 250, 100
    # The first batch's mutation waits in the sandbox until this test lets it go, so the
    # connector is disabled while it is in flight on any machine, not after a guessed sleep.
    erp_sandbox.hold("addGLImportItems")
    run = start_run(org, "manual")

    def disable_while_the_first_batch_is_in_flight() -> None:
        try:
            erp_sandbox.wait_until_held()
            Integration.objects.filter(organization=org).update(enabled=False)
        finally:
            erp_sandbox.release()  # also if the wait failed: the run must not hang on it
            connections.close_all()

    toggler = threading.Thread(target=disable_while_the_first_batch_is_in_flight)
    toggler.start()
    finished = execute_run(run.pk, worker="test")
    toggler.join()

    assert finished is not None
    assert (finished.total, finished.sent, finished.failed) == (600, 250, 0)
    assert finished.detail_code == RunDetail.DISABLED_DURING_RUN
    assert finished.detail_params == {"left": 350}
    assert finished.outcome_text() == (
        "250 sent. The connector was disabled during the sync; 350 records were not sent "
        "and stay pending."
    )
    assert states(org) == {State.SYNCED: 250, State.PENDING: 350}
    synced = FinancialRecord.objects.filter(organization=org, state=State.SYNCED)
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in synced}
    assert not FinancialRecord.objects.filter(claimed_by__isnull=False).exists()


# --- S3: a run -----------------------------------------------------------------------------------


def test_s3_5_a_partial_failure_leaves_sent_records_in_the_ledger_and_queues_only_the_failed(
    org, erp_sandbox
):
    configure(org, erp_sandbox)
    records = make_records(org, 60)
    erp_sandbox.set_faults(permanent_error_rate=0.2, seed=7)

    run = sync(org)

    assert run.status == SyncRun.Status.PARTIAL
    assert run.sent > 0 and run.failed > 0 and run.sent + run.failed == 60
    synced = {r.reference for r in FinancialRecord.objects.filter(state=State.SYNCED)}
    failed = FinancialRecord.objects.filter(state=State.FAILED)
    assert len(synced) == run.sent and failed.count() == run.failed
    assert ledger_counts(erp_sandbox) == {ref: 1 for ref in synced}
    for record in failed:
        assert "Period is closed" in record.last_error
        assert record.next_retry_at is None  # permanent: a person must act
    assert {r.reference for r in records} == synced | {r.reference for r in failed}


def test_s3_6_the_run_records_trigger_user_time_count_and_outcome(org, org_admin, erp_sandbox):
    configure(org, erp_sandbox)
    make_records(org, 3)
    make_records(org, 2, category="unmapped")
    before = timezone.now()

    run = sync(org, "manual", user=org_admin)

    assert run.trigger == SyncRun.Trigger.MANUAL
    assert run.triggered_by == org_admin
    assert run.started_at is not None and run.finished_at is not None
    assert before <= run.started_at <= run.finished_at <= timezone.now()
    assert (run.total, run.done, run.sent, run.failed, run.skipped) == (5, 5, 3, 0, 2)
    assert run.status == SyncRun.Status.SUCCEEDED
    # Stored as codes and numbers, worded when shown: no English sentence in the row.
    assert run.message == "" and run.detail_code == ""
    assert run.skip_reasons == [{"code": SkipReason.NO_MAPPING, "category": "unmapped", "count": 2}]
    assert run.outcome_text() == "3 sent, 2 skipped."
    assert run.skip_texts() == ["2 waiting for a mapping: unmapped"]
    assert run.connector == "xledger" and run.worker == "test"


# --- S6: retries ---------------------------------------------------------------------------------


def fail_all(org, erp_sandbox, count: int, **faults: Any) -> list[FinancialRecord]:
    records = make_records(org, count)
    erp_sandbox.set_faults(error_rate=1.0, **faults)
    sync(org)
    erp_sandbox.set_faults()
    assert states(org) == {State.FAILED: count}
    return records


def test_s6_2_retry_selected_sends_exactly_those_records(org, erp_sandbox):
    configure(org, erp_sandbox, first_retry_delay_seconds=1)
    records = fail_all(org, erp_sandbox, 6)
    chosen = [records[1].pk, records[4].pk]

    run = sync(org, "retry", record_ids=chosen)

    assert (run.total, run.sent) == (2, 2)
    assert set(FinancialRecord.objects.filter(state=State.SYNCED).values_list("pk", flat=True)) == (
        set(chosen)
    )
    assert ledger_counts(erp_sandbox) == {records[1].reference: 1, records[4].reference: 1}
    assert states(org) == {State.FAILED: 4, State.SYNCED: 2}


def test_s6_3_retry_all_failed_sends_every_failed_record_as_one_run(org, erp_sandbox):
    configure(org, erp_sandbox)
    records = fail_all(org, erp_sandbox, 8)
    failed = list(FinancialRecord.objects.filter(state=State.FAILED).values_list("pk", flat=True))

    run = sync(org, "retry", record_ids=failed)

    assert (run.total, run.sent, run.status) == (8, 8, SyncRun.Status.SUCCEEDED)
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in records}
    assert SyncRun.objects.filter(trigger="retry").count() == 1


def test_s6_4_a_successful_retry_is_synced_and_its_attempt_points_at_the_one_it_retries(
    org, erp_sandbox
):
    configure(org, erp_sandbox)
    (record,) = fail_all(org, erp_sandbox, 1)
    first = SyncLog.objects.get(record=record)

    sync(org, "retry", record_ids=[record.pk])

    record.refresh_from_db()
    assert record.state == State.SYNCED and record.erp_document_id
    assert (record.last_error, record.next_retry_at) == ("", None)
    second = SyncLog.objects.exclude(pk=first.pk).get(record=record)
    assert second.status == SyncLog.Status.SUCCEEDED
    assert second.retry_of == first and first.retried_by == second
    assert second.attempt_number == 2 and second.trigger == "retry"
    first_again = SyncLog.objects.get(pk=first.pk)
    assert first_again.status == SyncLog.Status.FAILED  # never rewritten


def test_s6_5_a_failed_retry_stays_failed_appends_its_error_and_counts_the_retry(org, erp_sandbox):
    configure(org, erp_sandbox)
    (record,) = fail_all(org, erp_sandbox, 1)
    record.refresh_from_db()
    assert record.retry_count == 1
    first = SyncLog.objects.get(record=record)
    erp_sandbox.set_faults(permanent_error_rate=1.0)

    sync(org, "retry", record_ids=[record.pk])

    record.refresh_from_db()
    assert record.state == State.FAILED and record.retry_count == 2
    assert "Period is closed" in record.last_error
    rows = list(SyncLog.objects.filter(record=record).order_by("attempt_number"))
    assert [r.status for r in rows] == ["failed", "failed"]
    assert rows[0].error_message == first.error_message  # the old error is kept
    assert rows[1].retry_of == rows[0]
    assert "Period is closed" in rows[1].error_message
    assert rows[0].error_message != rows[1].error_message
    assert ledger_counts(erp_sandbox) == {}


def test_s6_6_a_manual_retry_goes_ahead_of_the_backoff_and_the_timer_restarts_from_it(
    org, erp_sandbox
):
    configure(org, erp_sandbox, first_retry_delay_seconds=3600)
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        (record,) = fail_all(org, erp_sandbox, 1)
        record.refresh_from_db()
        first_due = record.next_retry_at
        assert first_due is not None and first_due > timezone.now() + timedelta(minutes=29)

        traveller.shift(timedelta(minutes=10))
        automatic = sync(org, "schedule")
        assert automatic.total == 0  # the backoff holds it back from automatic runs

        erp_sandbox.set_faults(error_rate=1.0)
        manual_at = timezone.now()
        manual = sync(org, "retry", record_ids=[record.pk])
        assert manual.total == 1

        record.refresh_from_db()
        assert record.retry_count == 2
        # Backoff for the second failure (2 x 3600 s with jitter 0.5-1) counted from the
        # manual attempt, not from the first failure.
        assert record.next_retry_at is not None
        assert manual_at + timedelta(seconds=3600) <= record.next_retry_at
        assert record.next_retry_at <= timezone.now() + timedelta(seconds=7200)
        assert record.next_retry_at != first_due

        erp_sandbox.set_faults()
        traveller.shift(timedelta(seconds=3599))
        assert sync(org, "schedule").total == 0  # not due yet after the restart
        traveller.shift(record.next_retry_at - timezone.now() + timedelta(seconds=1))
        due = sync(org, "schedule")
    assert (due.total, due.sent) == (1, 1)
    assert ledger_counts(erp_sandbox) == {record.reference: 1}


# --- skipped, authentication, uncertain ----------------------------------------------------------


def test_an_unmapped_category_is_skipped_with_the_reason_and_mapping_it_returns_it_to_pending(
    org, org_admin, erp_sandbox
):
    integration = configure(org, erp_sandbox)
    records = make_records(org, 3, category="meals")

    run = sync(org)

    assert run.skipped == 3 and run.sent == 0
    for record in FinancialRecord.objects.all():
        assert record.state == State.SKIPPED
        assert record.skip_reason == SkipReason.NO_MAPPING
    assert ledger_counts(erp_sandbox) == {}

    categories = ["honorarium", "meals", "travel"]
    form = MappingsForm(
        {
            "account_0": "5330",
            "cost_center_0": "200",
            "account_1": "7130",
            "cost_center_1": "300",
            "account_2": "7130",
            "cost_center_2": "300",
            "payable_account": PAYABLE,
        },
        integration=integration,
        categories=categories,
    )
    assert form.is_valid(), form.errors
    form.save_for(org_admin)
    assert states(org) == {State.PENDING: 3}
    assert set(FinancialRecord.objects.values_list("skip_reason", flat=True)) == {""}

    run = sync(org)

    assert (run.total, run.sent) == (3, 3)
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in records}


def test_an_authentication_failure_fails_the_run_and_returns_records_to_pending_unburned(
    org, erp_sandbox
):
    configure(org, erp_sandbox)
    make_records(org, 300)  # two batches: the second is never sent
    erp_sandbox.set_faults(expired_credentials=True)

    run = sync(org)

    assert run.status == SyncRun.Status.FAILED
    assert run.error_class == ErrorClass.AUTHENTICATION == "authentication"
    assert run.detail_code == RunDetail.CREDENTIALS_REFUSED and run.message == ""
    # The ERP's own words are kept verbatim, as the parameter of our sentence.
    erp_words = run.detail_params["error"]
    assert erp_words and erp_words in run.outcome_text()
    assert "The accounting system refused the credentials: " in run.outcome_text()
    assert states(org) == {State.PENDING: 300}
    assert set(FinancialRecord.objects.values_list("retry_count", flat=True)) == {0}
    assert not FinancialRecord.objects.filter(claimed_by__isnull=False).exists()
    event = SyncEvent.objects.get()
    assert event.kind == SyncEvent.Kind.AUTHENTICATION_FAILED and event.run == run
    assert erp_sandbox.requests()["xledger"]["error"] == 1  # it stopped after one call
    assert ledger_counts(erp_sandbox) == {}


def test_an_uncertain_send_is_looked_up_by_reference_and_not_sent_again(org, erp_sandbox):
    configure(org, erp_sandbox)
    records = make_records(org, 4)
    erp_sandbox.set_faults(drop_after_commit_rate=1.0)

    first = sync(org)

    assert first.failed == 4
    for record in FinancialRecord.objects.all():
        assert record.state == State.FAILED and record.needs_lookup
    assert set(SyncLog.objects.values_list("status", flat=True)) == {"uncertain"}
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in records}  # it did arrive

    erp_sandbox.set_faults()
    with time_machine.travel(timezone.now() + timedelta(minutes=10), tick=True):
        second = sync(org)

    assert (second.total, second.sent) == (4, 4)
    for record in FinancialRecord.objects.all():
        assert record.state == State.SYNCED and not record.needs_lookup
        assert record.erp_document_id
        last = record.attempts.order_by("-attempt_number").first()
        assert last is not None and last.status == SyncLog.Status.SUCCEEDED
        assert last.payload == {"lookup": record.reference}  # found, not sent
        assert last.retry_of is not None and last.retry_of.status == "uncertain"
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in records}
    # Reads only: the lookup asks for import items, then for posted transactions (the
    # import job had already posted them), and the settle confirms them posted. No mutation.
    assert erp_sandbox.requests()["xledger"]["ok"] == 3


def test_a_stale_run_is_closed_and_its_sending_records_are_looked_up_first(org, erp_sandbox):
    configure(org, erp_sandbox)
    make_records(org, 5)
    run = start_run(org, "manual")
    FinancialRecord.objects.update(state=State.SENDING, claimed_by=run)
    SyncRun.objects.filter(pk=run.pk).update(
        worker="dead@host", heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    other = Organization.objects.create(name="Other", slug="other")
    configure(other, erp_sandbox)
    alive = start_run(other, "manual")  # beating just now: left alone

    closed = recover_stale_runs()

    assert [r.pk for r in closed] == [run.pk]
    run.refresh_from_db()
    assert run.status == SyncRun.Status.FAILED and run.error_class == "abandoned"
    assert run.finished_at is not None
    for record in FinancialRecord.objects.all():
        assert record.state == State.FAILED and record.needs_lookup
        assert record.claimed_by is None and record.next_retry_at is not None
        assert record.next_retry_at <= timezone.now()
    assert SyncEvent.objects.get().kind == SyncEvent.Kind.RUN_ABANDONED
    alive.refresh_from_db()
    assert alive.status == SyncRun.Status.RUNNING
    assert recover_stale_runs() == []


def test_only_one_run_per_organization_can_be_running(org, other_org, erp_sandbox):
    configure(org, erp_sandbox)
    first = start_run(org, "manual")

    with pytest.raises(RunAlreadyGoing) as refused:
        start_run(org, "schedule")
    assert refused.value.run == first
    assert start_run(other_org, "manual").status == SyncRun.Status.RUNNING

    execute_run(first.pk, worker="test")
    assert start_run(org, "manual").status == SyncRun.Status.RUNNING


# --- backoff and the scheduled retry -------------------------------------------------------------


def test_backoff_grows_exponentially_with_jitter_has_a_cap_and_honours_retry_after():
    rng = random.Random(1234)
    for retry_count in range(1, 8):
        base = 10 * 2 ** (retry_count - 1)
        samples = [backoff_seconds(retry_count, 10, rng=rng) for _ in range(200)]
        assert all(base * 0.5 <= s <= base for s in samples)
        assert len(set(samples)) > 100  # jittered, not one value
    assert backoff_seconds(40, 10, rng=rng) <= BACKOFF_CAP_SECONDS
    assert backoff_seconds(40, 10, rng=rng) >= BACKOFF_CAP_SECONDS * 0.5
    assert backoff_seconds(1, 10, retry_after=120, rng=rng) == 120
    assert 5 <= backoff_seconds(1, 10, retry_after=1, rng=rng) <= 10
    same = random.Random(5), random.Random(5)
    assert backoff_seconds(3, 60, rng=same[0]) == backoff_seconds(3, 60, rng=same[1])


def test_a_failed_record_is_due_again_after_its_backoff_and_not_before(org, erp_sandbox):
    configure(org, erp_sandbox, first_retry_delay_seconds=120)
    with time_machine.travel(datetime(2026, 3, 2, 9, 0, tzinfo=UTC), tick=True) as traveller:
        before = timezone.now()
        (record,) = fail_all(org, erp_sandbox, 1)
        record.refresh_from_db()
        # First retry: 120 s with jitter 0.5-1.
        assert record.next_retry_at is not None
        assert before + timedelta(seconds=60) <= record.next_retry_at
        assert record.next_retry_at <= timezone.now() + timedelta(seconds=120)

        traveller.shift(timedelta(seconds=50))
        assert sync(org, "retry").total == 0
        traveller.shift(record.next_retry_at - timezone.now() + timedelta(seconds=1))
        run = sync(org, "retry")
    assert (run.total, run.sent) == (1, 1)
    assert ledger_counts(erp_sandbox) == {record.reference: 1}


def test_scheduled_sync_on_a_network_error_retries_3_times_then_records_scheduled_run_failed(
    org, erp_sandbox, monkeypatch
):
    configure(org, erp_sandbox, first_retry_delay_seconds=60)
    make_records(org, 3)
    erp_sandbox.set_faults(error_rate=1.0)
    real_start_run = tasks.start_run

    with time_machine.travel(timezone.now(), tick=True) as traveller:

        def start_an_hour_later(*args: Any, **kwargs: Any) -> SyncRun:
            # An eager retry runs at once; the hour its countdown and the records'
            # backoff would take in production passes here.
            traveller.shift(timedelta(hours=1))
            return real_start_run(*args, **kwargs)

        monkeypatch.setattr(tasks, "start_run", start_an_hour_later)
        tasks.scheduled_sync.apply(args=(org.pk,))

    runs = list(SyncRun.objects.order_by("pk"))
    assert len(runs) == 1 + tasks.SCHEDULED_RETRIES
    assert {(r.trigger, r.status, r.error_class) for r in runs} == {
        ("schedule", "failed", "network")
    }
    event = SyncEvent.objects.get()
    assert event.kind == SyncEvent.Kind.SCHEDULED_RUN_FAILED and event.run == runs[-1]
    # Stored as facts (the run, its retries); the alert words them for each reader.
    alert = Alert.objects.get(organization=org, kind=Alert.Kind.SCHEDULED_SYNC_FAILED)
    assert "also after 3 retries" in alert.message
    assert set(FinancialRecord.objects.values_list("retry_count", flat=True)) == {4}
    assert ledger_counts(erp_sandbox) == {}


def test_s9_4_a_scheduled_retry_takes_the_failed_records_before_their_own_backoff_ends(
    org, erp_sandbox
):
    """The retry comes after 30-60 s, the records' own backoff after 30-60 s too: the retry
    must not find "nothing due", end succeeded and leave the failure unreported."""
    configure(org, erp_sandbox, first_retry_delay_seconds=3600)
    make_records(org, 2)
    erp_sandbox.set_faults(error_rate=1.0)

    tasks.scheduled_sync.apply(args=(org.pk,))  # eager: the retries run at once

    runs = list(SyncRun.objects.order_by("pk"))
    assert [(r.total, r.error_class) for r in runs] == [(2, "network")] * 4
    assert SyncEvent.objects.get().kind == SyncEvent.Kind.SCHEDULED_RUN_FAILED


def test_scheduled_sync_that_succeeds_raises_no_event(org, erp_sandbox):
    configure(org, erp_sandbox)
    make_records(org, 2)

    tasks.scheduled_sync.apply(args=(org.pk,))

    assert SyncRun.objects.get().status == SyncRun.Status.SUCCEEDED
    assert not SyncEvent.objects.exists()


def test_a_run_closed_by_the_sweep_while_alive_leaves_its_records_for_lookup(
    org, erp_sandbox, settings
) -> None:
    """A worker that was only slow, not dead, must not overwrite what recovery decided."""
    configure(org, erp_sandbox)
    make_records(org, 3)
    run = start_run(org, "manual")
    orchestrator, posted = posted_as_the_sweep_closes_the_run(run)

    orchestrator._write_results(posted)

    assert SyncLog.objects.filter(run=run, status="succeeded").count() == 3  # logged
    assert set(
        FinancialRecord.objects.filter(organization=org).values_list("state", "needs_lookup")
    ) == {("failed", True)}  # left for the next run's lookup, which will find them


def test_issue13_item7_s6_4_a_closed_run_numbers_its_attempts_after_the_run_that_took_over(
    org, erp_sandbox
) -> None:
    """A run reads its records' earlier attempts once, when it claims them. Closed by the
    sweep while the ERP answered, it writes its attempt after those of the run that took
    its records over meanwhile: numbered after them, each retrying the one before."""
    configure(org, erp_sandbox)
    make_records(org, 3)
    run = start_run(org, "manual")
    slow, posted = posted_as_the_sweep_closes_the_run(run)
    make_due(org)
    took_over = sync(org)  # looks them up, finds them: its attempts come first
    assert took_over.sent == 3

    slow._write_results(posted)

    for record, _ in posted:
        attempts = list(SyncLog.objects.filter(record=record).order_by("id"))
        assert [a.run_id for a in attempts] == [took_over.pk, run.pk]
        assert [a.attempt_number for a in attempts] == [1, 2]
        assert attempts[1].retry_of_id == attempts[0].pk
    assert states(org) == {State.SYNCED: 3}
    assert ledger_counts(erp_sandbox) == {record.reference: 1 for record, _ in posted}


def posted_as_the_sweep_closes_the_run(run: SyncRun) -> tuple[Any, list]:
    """A run's orchestrator, driven by hand, that claimed and posted its records; while
    the ERP answered, the sweep decided the run was dead. Returns it and what it posted,
    not yet written."""
    from accounting_sync.orchestrator import Orchestrator, recover_stale_runs

    orchestrator = Orchestrator(SyncRun.objects.get(pk=run.pk))
    records = orchestrator._claim()
    orchestrator.mappings = {m.category: m for m in orchestrator.integration.mappings.all()}
    assert orchestrator._mark_in_flight(records)  # as `_send_all` does before posting
    results = orchestrator.integration.build_connector().post(
        [orchestrator._posting(record) for record in records]
    )
    SyncRun.objects.filter(pk=run.pk).update(
        worker="dead@host", heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    recover_stale_runs()
    return orchestrator, list(zip(records, results, strict=True))


@pytest.mark.django_db(transaction=True)
def test_issue13_item5_a_slow_batch_keeps_its_run_alive_past_the_stale_limit(
    org, erp_sandbox, settings
):
    """The run's own heartbeat thread beats while a batch waits on the ERP: the sweep
    leaves a slow but live run alone, though the batch outlasts SYNC_STALE_AFTER_SECONDS."""
    settings.SYNC_STALE_AFTER_SECONDS = 3  # a beat every second
    configure(org, erp_sandbox)
    make_records(org, 3)
    run = start_run(org, "manual")
    erp_sandbox.hold("addGLImportItems")
    worker = threading.Thread(target=execute_run, args=(run.pk, "slow@host"))
    worker.start()
    try:
        erp_sandbox.wait_until_held(1)
        time.sleep(settings.SYNC_STALE_AFTER_SECONDS + 1.5)
        assert recover_stale_runs() == []
    finally:
        erp_sandbox.release()
        worker.join(timeout=30)
    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED
    assert states(org) == {State.SYNCED: 3}


def _execute_in_thread(run_id: int, worker: str) -> threading.Thread:
    def execute() -> None:
        try:
            execute_run(run_id, worker=worker)
        finally:
            connections.close_all()

    thread = threading.Thread(target=execute)
    thread.start()
    return thread


@pytest.mark.postgres_only(
    reason="a live worker is told from a dead one by the advisory lock its session holds"
)
@pytest.mark.django_db(transaction=True)
def test_s3_4_a_live_run_whose_heartbeat_stalls_is_not_closed_and_no_second_run_resends_its_batch(
    org, erp_sandbox, settings
):
    """A worker whose heartbeat stalls (a starved thread, a stalled database) while its
    batch is on its way to the ERP is alive. The sweep used to close its run on the stale
    beat alone and hand the batch back for lookup; the retry run it started asked the ERP
    before that batch arrived, found nothing and posted it again: two of each voucher.
    Now the sweep leaves the run alone while its worker's session holds the run's lock,
    so no second run of the organization starts (S3.4) and each record is posted once."""
    configure(org, erp_sandbox)
    records = make_records(org, 3)
    settings.SYNC_STALE_AFTER_SECONDS = 3600  # the run's heartbeat thread: starved
    run = start_run(org, "manual")
    erp_sandbox.hold("addGLImportItems")
    worker = _execute_in_thread(run.pk, "slow@host")
    try:
        erp_sandbox.wait_until_held(1)
        # The batch is in the ERP's hands and the run's last beat is past the stale limit.
        settings.SYNC_STALE_AFTER_SECONDS = 15
        SyncRun.objects.filter(pk=run.pk).update(
            heartbeat_at=timezone.now() - timedelta(seconds=60)
        )

        assert recover_stale_runs() == []
        with pytest.raises(RunAlreadyGoing):
            start_run(org, SyncRun.Trigger.RETRY)  # what the sweep starts for handed-back records
    finally:
        erp_sandbox.release()
        worker.join(timeout=60)

    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED and run.sent == 3
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in records}
    assert states(org) == {State.SYNCED: 3}
    # Once the worker is done its lock is gone: a run left stale now is closed.
    stale = start_run(org, "manual")
    SyncRun.objects.filter(pk=stale.pk).update(
        worker="dead@host", heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    assert [r.pk for r in recover_stale_runs()] == [stale.pk]


@pytest.mark.django_db(transaction=True)
def test_s3_5_lines_written_before_their_cost_centers_were_refused_for_rate_are_not_sent_again(
    org, erp_sandbox
):
    """Business Central created the lines, then refused the batch adding their cost
    centers with a 429. Every result is then "rate-limited", but something was taken:
    the run used to wait and post the whole batch again, creating every line twice (the
    multi-worker fault test's duplicated waves). The lines stay, once; the next run
    finds them and adds the cost centers."""
    configure(org, erp_sandbox, "business_central")
    records = make_records(org, 3)
    erp_sandbox.hold("dimensionSetLines")  # the second step of the posting
    run = start_run(org, "manual")

    def refuse_only_the_cost_centers_for_rate() -> None:
        try:
            erp_sandbox.wait_until_held()
            erp_sandbox.set_faults(rate_limit_rate=1.0, retry_after_s=2)
        finally:
            erp_sandbox.release()
        try:
            deadline = time.monotonic() + 30
            while not erp_sandbox.requests()["business_central"]["rate_limited"]:
                assert time.monotonic() < deadline, "the cost centers were never refused"
                time.sleep(0.05)
        finally:
            # From here the ERP takes everything: a resend would be stored.
            erp_sandbox.set_faults()

    refuser = threading.Thread(target=refuse_only_the_cost_centers_for_rate)
    refuser.start()
    finished = execute_run(run.pk, worker="test")
    refuser.join()

    assert ledger_counts(erp_sandbox, "business_central") == {r.reference: 1 for r in records}
    assert finished is not None and finished.sent == 0
    assert set(
        FinancialRecord.objects.filter(organization=org).values_list("state", "needs_lookup")
    ) == {(State.FAILED, True)}

    make_due(org)
    sync(org)
    assert states(org) == {State.SYNCED: 3}
    assert ledger_counts(erp_sandbox, "business_central") == {r.reference: 1 for r in records}
    lines = erp_sandbox.ledger()["business_central"]["HLF"]
    assert all(lines["dimensionSetLines"].get(line["id"]) for line in lines["journalLines"])


@pytest.mark.django_db(transaction=True)
def test_s3_4_a_run_closed_while_it_waits_out_a_rate_limit_does_not_send_its_batch_again(
    org, erp_sandbox
):
    """A batch the ERP refused for rate is resent after the wait only by a run that is
    still running: once closed, its records may be another run's."""
    configure(org, erp_sandbox)
    make_records(org, 3)
    erp_sandbox.set_faults(rate_limit_rate=1.0, retry_after_s=2)
    run = start_run(org, "manual")

    def close_during_the_wait() -> None:
        try:
            deadline = time.monotonic() + 30
            while not erp_sandbox.requests()["xledger"]["rate_limited"]:
                assert time.monotonic() < deadline, "the batch was never refused for rate"
                time.sleep(0.05)
            SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.FAILED)
        finally:
            connections.close_all()

    closer = threading.Thread(target=close_during_the_wait)
    closer.start()
    execute_run(run.pk, worker="test")
    closer.join()

    assert erp_sandbox.requests()["xledger"]["rate_limited"] == 1  # sent once, not again
    assert SyncRun.objects.get(pk=run.pk).detail_code == RunDetail.CLOSED_BY_SWEEP
