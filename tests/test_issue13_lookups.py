"""Issue 13 items 3 and 5 ("Survive the infrastructure"): lookups, in-process against the
ERP sandbox.

An uncertain record is always resolved by a lookup, whatever its retry budget, and a
failed lookup spends no retry (item 1); a dead run's records it never sent go back
without a lookup, only the batch it was posting is looked up (item 2); lookups go in
chunks whose answers are written as they come, so a failed call holds back one chunk
(item 3).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounting_sync import orchestrator as engine
from accounting_sync.models import FinancialRecord, SyncEvent, SyncLog, SyncRun
from accounting_sync.orchestrator import Orchestrator, recover_stale_runs, start_run
from erp_sandbox.client import SandboxProcess
from integrations.notes import words
from organizations.models import Organization
from tests.factories import (
    configure,
    ledger_counts,
    make_due,
    make_records,
    states,
    sync,
)

# The connectors trust the sandbox and start with no cached token, in every test here.
pytestmark = pytest.mark.usefixtures("trust_erp_sandbox")

State = FinancialRecord.State


def uncertain(organization: Organization, **fields) -> None:
    """Every record as after a send whose answer was lost: failed, to be looked up, due."""
    FinancialRecord.objects.filter(organization=organization).update(
        state=State.FAILED,
        needs_lookup=True,
        retry_count=1,
        next_retry_at=timezone.now() - timedelta(seconds=1),
        erp_document_id="",
        synced_at=None,
        last_error="The connection dropped after sending.",
        **fields,
    )


def sent_by_the_erp(organization: Organization, sandbox: SandboxProcess, connector: str) -> None:
    """Post every record for real, then forget the answers: the ERP holds them all once."""
    records = list(FinancialRecord.objects.filter(organization=organization))
    assert sync(organization).sent == len(records)
    assert ledger_counts(sandbox, connector) == {r.reference: 1 for r in records}
    uncertain(organization)


def found_by_lookup(record: FinancialRecord) -> bool:
    last = record.attempts.order_by("-attempt_number").first()
    assert last is not None
    return last.status == SyncLog.Status.SUCCEEDED and last.payload == {"lookup": record.reference}


# --- item 1: an uncertain record is always resolved by a lookup --------------------------------


def test_issue13_item1_a_failed_lookup_spends_no_retry_and_keeps_the_record_due(
    org, erp_sandbox
) -> None:
    configure(org, erp_sandbox, "business_central", automatic_retries=2)
    records = make_records(org, 3)
    sent_by_the_erp(org, erp_sandbox, "business_central")
    erp_sandbox.set_faults(error_rate=1.0)

    gaps = []
    for failed_lookups in range(1, 5):  # more failed lookups than the retry budget
        before = timezone.now()
        run = sync(org, "retry")
        assert (run.total, run.sent, run.failed) == (3, 0, 3)
        for record in FinancialRecord.objects.filter(organization=org):
            assert record.state == State.FAILED and record.needs_lookup
            assert record.retry_count == 1  # as the lost send left it
            assert record.lookup_failures == failed_lookups
            assert record.next_retry_at is not None and record.next_retry_at > before
            assert "Could not check the accounting system" in record.error_text
        gaps.append(
            min(
                r.next_retry_at
                for r in FinancialRecord.objects.filter(organization=org)
                if r.next_retry_at is not None  # each one is, asserted above
            )
            - before
        )
        make_due(org)
    # Backoff: 60 s, then up to 120, 240, 480 s with jitter 0.5-1.
    assert gaps[0] <= timedelta(seconds=61) and gaps[-1] >= timedelta(seconds=240)

    erp_sandbox.set_faults()
    run = sync(org, "retry")

    assert (run.sent, run.failed) == (3, 0)
    assert states(org) == {State.SYNCED: 3}
    assert all(found_by_lookup(r) for r in FinancialRecord.objects.filter(organization=org))
    assert set(FinancialRecord.objects.values_list("lookup_failures", flat=True)) == {0}
    assert ledger_counts(erp_sandbox, "business_central") == {r.reference: 1 for r in records}


def test_issue13_item1_an_uncertain_record_whose_retries_are_spent_is_still_looked_up_and_synced(
    org, erp_sandbox
) -> None:
    configure(org, erp_sandbox, "xledger", automatic_retries=0)
    records = make_records(org, 4)
    erp_sandbox.set_faults(drop_after_commit_rate=1.0)

    first = sync(org)

    assert first.failed == 4
    for record in FinancialRecord.objects.filter(organization=org):
        # One failed send, no retry allowed: still planned, since only a lookup can say.
        assert record.needs_lookup and record.retry_count == 1
        assert record.next_retry_at is not None
    erp_sandbox.set_faults()
    make_due(org)

    second = sync(org, "retry")  # the sweep's run: no person chose these records

    assert (second.total, second.sent) == (4, 4)
    assert states(org) == {State.SYNCED: 4}
    assert all(found_by_lookup(r) for r in FinancialRecord.objects.filter(organization=org))
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in records}


def test_issue13_item1_an_uncertain_record_not_there_with_its_retries_spent_fails_for_good(
    org, org_admin, erp_sandbox
) -> None:
    configure(org, erp_sandbox, "business_central", automatic_retries=0)
    records = make_records(org, 2)
    uncertain(org)  # the lost send never arrived: the ERP holds nothing

    run = sync(org, "retry")

    assert (run.total, run.sent, run.failed) == (2, 0, 2)
    for record in FinancialRecord.objects.filter(organization=org):
        assert record.state == State.FAILED and record.next_retry_at is None
        assert not record.needs_lookup and record.retry_count == 1
        assert "Not in the accounting system" in record.error_text
    assert ledger_counts(erp_sandbox, "business_central") == {}

    # A person's Retry still sends them, once.
    again = sync(org, "retry", user=org_admin, record_ids=[r.pk for r in records])

    assert (again.total, again.sent) == (2, 2)
    assert ledger_counts(erp_sandbox, "business_central") == {r.reference: 1 for r in records}


def test_issue13_item1_a_refused_or_uncertain_send_never_leaves_a_lookup_unplanned(
    org, erp_sandbox
) -> None:
    """The budget check: partial (a line without its dimension) with no retry left."""
    configure(org, erp_sandbox, "business_central", automatic_retries=0)
    make_records(org, 3)
    erp_sandbox.set_faults(dimension_error_rate=1.0)

    sync(org)

    lost = FinancialRecord.objects.filter(needs_lookup=True, next_retry_at__isnull=True)
    assert FinancialRecord.objects.filter(needs_lookup=True).count() == 3
    assert not lost.exists()


# --- item 2: a dead run's never-sent records go back without a lookup -------------------------


def test_issue13_item2_a_dead_run_looks_up_only_its_batch_in_flight_and_hands_back_the_rest(
    org, erp_sandbox
) -> None:
    configure(org, erp_sandbox, "xledger")
    records = make_records(org, 10)
    earlier = timezone.now() - timedelta(minutes=5)
    # Two failed before for a plain reason, one whose earlier send was uncertain.
    FinancialRecord.objects.filter(pk__in=[records[8].pk, records[9].pk]).update(
        state=State.FAILED, retry_count=1, next_retry_at=earlier, last_error="HTTP 503"
    )
    FinancialRecord.objects.filter(pk=records[7].pk).update(
        state=State.FAILED, retry_count=1, needs_lookup=True, next_retry_at=earlier
    )
    run = start_run(org, "manual")
    orchestrator = Orchestrator(SyncRun.objects.get(pk=run.pk))
    claimed = orchestrator._claim()
    assert len(claimed) == 10
    orchestrator.mappings = {m.category: m for m in orchestrator.integration.mappings.all()}
    in_flight = claimed[:4]
    assert orchestrator._mark_in_flight(in_flight)
    # The batch reaches the ERP; the worker dies before it writes the answer.
    connector = orchestrator.integration.build_connector()
    connector.post([orchestrator._posting(record) for record in in_flight])
    SyncRun.objects.filter(pk=run.pk).update(
        worker="dead@host", heartbeat_at=timezone.now() - timedelta(hours=1)
    )

    (closed,) = recover_stale_runs()

    assert closed.pk == run.pk and closed.error_class == "abandoned"
    now = timezone.now()
    by_pk = {r.pk: r for r in FinancialRecord.objects.filter(organization=org)}
    for record in in_flight:
        back = by_pk[record.pk]
        assert back.state == State.FAILED and back.needs_lookup and back.next_retry_at is not None
        assert back.next_retry_at <= now
    for record in claimed[4:7]:  # never sent, never failed: due at once, nothing spent
        back = by_pk[record.pk]
        assert (back.state, back.needs_lookup, back.retry_count) == (State.FAILED, False, 0)
        assert back.next_retry_at is not None
        assert back.next_retry_at <= now and "before sending it" in back.error_text
    kept = by_pk[records[7].pk]  # its earlier lookup mark is kept
    assert kept.state == State.FAILED and kept.needs_lookup and kept.next_retry_at is not None
    assert kept.next_retry_at <= now
    for pk in (records[8].pk, records[9].pk):
        back = by_pk[pk]
        assert back.state == State.FAILED and not back.needs_lookup
        assert (back.retry_count, back.last_error) == (1, "HTTP 503")
        assert back.next_retry_at is not None
        assert back.next_retry_at <= now  # due: the dead run was about to send them
    assert not FinancialRecord.objects.filter(claimed_by__isnull=False).exists()
    event = SyncEvent.objects.get(kind=SyncEvent.Kind.RUN_ABANDONED)
    said = words(event.note)
    assert "4 records it was sending" in said and "6 it had not sent" in said

    # The next run finds the batch that arrived, and sends the others once.
    after = sync(org, "retry")

    assert (after.total, after.sent) == (10, 10)
    assert states(org) == {State.SYNCED: 10}
    assert all(found_by_lookup(by_pk[r.pk]) for r in in_flight)
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in records}


def test_issue13_item2_a_run_the_sweep_closed_cannot_mark_a_batch_in_flight(
    org, erp_sandbox
) -> None:
    configure(org, erp_sandbox, "xledger")
    make_records(org, 3)
    run = start_run(org, "manual")
    orchestrator = Orchestrator(SyncRun.objects.get(pk=run.pk))
    claimed = orchestrator._claim()
    SyncRun.objects.filter(pk=run.pk).update(
        worker="dead@host", heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    recover_stale_runs()

    assert not orchestrator._mark_in_flight(claimed)  # so `_send_all` posts nothing
    assert states(org) == {State.FAILED: 3}
    assert not FinancialRecord.objects.filter(needs_lookup=True).exists()


def test_issue13_item2_an_unexpected_error_looks_up_only_the_batch_in_flight(
    org, erp_sandbox, monkeypatch
) -> None:
    configure(org, erp_sandbox, "xledger")
    make_records(org, 300)  # Xledger: a batch of 250, then 50
    real_post = engine.Orchestrator._send

    def second_batch_breaks(self, lane, connector, postings, posting):
        if len(postings) < 250:
            raise RuntimeError("a bug while sending")
        return real_post(self, lane, connector, postings, posting)

    monkeypatch.setattr(engine.Orchestrator, "_send", second_batch_breaks)
    run = start_run(org, "manual")

    with pytest.raises(RuntimeError):
        engine.execute_run(run.pk, worker="test")

    # The first batch was written (awaiting Xledger's import); the second never left.
    assert states(org) == {State.AWAITING: 250, State.FAILED: 50}
    assert FinancialRecord.objects.filter(needs_lookup=True).count() == 50
    assert not FinancialRecord.objects.filter(claimed_by__isnull=False).exists()


# --- item 3: lookups in chunks ------------------------------------------------------------------

# Found by trying seeds: with error_rate 0.2, a request of the first Business Central lookup
# call fails and the next two calls succeed (setting faults restarts the random stream).
SEED_FIRST_CHUNK_FAILS = 1


def test_issue13_item3_a_failed_lookup_call_holds_back_its_chunk_and_the_other_chunks_resolve(
    org, erp_sandbox
) -> None:
    configure(org, erp_sandbox, "business_central")
    records = make_records(org, 150)  # three lookup calls of 50
    sent_by_the_erp(org, erp_sandbox, "business_central")
    # This seed fails the first lookup call and lets the other two through.
    erp_sandbox.set_faults(error_rate=0.2, seed=SEED_FIRST_CHUNK_FAILS)

    run = sync(org, "retry")

    by_pk = {r.pk: r for r in FinancialRecord.objects.filter(organization=org)}
    held = [by_pk[r.pk] for r in records[:50]]
    resolved = [by_pk[r.pk] for r in records[50:]]
    for record in held:
        assert record.state == State.FAILED and record.needs_lookup
        assert record.retry_count == 1 and record.lookup_failures == 1
        assert record.next_retry_at is not None and record.next_retry_at > timezone.now()
    for record in resolved:
        assert record.state == State.SYNCED and found_by_lookup(record)
    assert (run.sent, run.failed) == (100, 50)

    erp_sandbox.set_faults()
    make_due(org)
    sync(org, "retry")

    assert states(org) == {State.SYNCED: 150}
    assert ledger_counts(erp_sandbox, "business_central") == {r.reference: 1 for r in records}


def test_issue13_item3_after_two_failed_lookup_calls_in_a_row_the_rest_wait_unasked(
    org, erp_sandbox
) -> None:
    configure(org, erp_sandbox, "business_central")
    records = make_records(org, 150)
    sent_by_the_erp(org, erp_sandbox, "business_central")
    erp_sandbox.set_faults(error_rate=1.0)
    before = erp_sandbox.requests()["business_central"]["error"]

    run = sync(org, "retry")

    asked = erp_sandbox.requests()["business_central"]["error"] - before
    assert (run.sent, run.failed) == (0, 150)
    unasked = [FinancialRecord.objects.get(pk=r.pk) for r in records[2 * engine.LOOKUP_CHUNK :]]
    assert unasked and all("Not checked" in r.error_text for r in unasked)
    assert all(r.needs_lookup and r.retry_count == 1 and r.next_retry_at for r in unasked)
    assert asked == 2  # one failed request per lookup call; none for the third chunk
