"""Issue 13 item 7: a run writes down what one batch did while the ERP takes the next
(accounting_sync/lane.py), and stays exactly-once doing so (S3.4, S3.5)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from accounting_sync.lane import DatabaseFromLane, Lane
from accounting_sync.models import FinancialRecord, SyncLog, SyncRun
from accounting_sync.orchestrator import Orchestrator, execute_run, start_run
from core import logcontext
from integrations.clients.xledger import XledgerConnector
from tests.factories import configure, ledger_counts, make_records, states, sync

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("trust_erp_sandbox")]
State = FinancialRecord.State


def test_issue13_item7_the_erp_takes_the_next_batch_while_the_run_writes_the_last(
    org, erp_sandbox, monkeypatch
) -> None:
    """The second batch is on its way before the first is written, and the run's in_flight
    names both meanwhile: a worker dying then has both looked up, not sent again."""
    configure(org, erp_sandbox)
    records = make_records(org, 500)  # Xledger: two batches of 250
    second_posting = threading.Event()
    real_post = XledgerConnector.post

    def post(self: XledgerConnector, postings: list) -> list:
        if postings[0].number == records[250].pk:
            second_posting.set()
        contexts.append(logcontext.current())
        return real_post(self, postings)

    seen: dict[str, Any] = {}
    contexts: list[dict] = []  # what the lane's log lines say they are about
    real_write = Orchestrator._write_results

    def write(self: Orchestrator, pairs: list, final: bool = False, posting=None) -> None:
        if posting and not seen:
            seen["in_flight"] = SyncRun.objects.get(pk=self.run.pk).in_flight
            seen["overlap"] = second_posting.wait(timeout=10)
        real_write(self, pairs, final, posting)

    monkeypatch.setattr(XledgerConnector, "post", post)
    monkeypatch.setattr(Orchestrator, "_write_results", write)
    run = start_run(org, "manual")
    finished = execute_run(run.pk, worker="test")

    assert seen["overlap"], "the second batch was not posted while the first was written"
    # The lane's log lines name the run and the organization, as the run's own do.
    assert contexts == [{"organization": org.slug, "run_id": run.pk}] * 2
    assert seen["in_flight"] == [record.pk for record in records]
    assert finished is not None
    assert (finished.sent, finished.failed, finished.in_flight) == (500, 0, [])
    assert states(org) == {State.SYNCED: 500}
    assert ledger_counts(erp_sandbox) == {record.reference: 1 for record in records}


def test_issue13_item7_s3_4_a_run_broken_between_two_batches_has_both_looked_up_and_sends_neither(
    org, erp_sandbox, monkeypatch
) -> None:
    configure(org, erp_sandbox)
    records = make_records(org, 500)

    def write_breaks(self: Orchestrator, pairs: list, final: bool = False, posting=None) -> None:
        raise RuntimeError("the database went away while the ERP took the second batch")

    with monkeypatch.context() as patched:
        patched.setattr(Orchestrator, "_write_results", write_breaks)
        run = start_run(org, "manual")
        with pytest.raises(RuntimeError):
            execute_run(run.pk, worker="test")
    # Both batches are in the ERP and neither is written: both are looked up.
    assert ledger_counts(erp_sandbox) == {record.reference: 1 for record in records}
    assert FinancialRecord.objects.filter(needs_lookup=True, state=State.FAILED).count() == 500

    retried = sync(org, "retry")

    assert (retried.sent, retried.failed) == (500, 0)
    assert states(org) == {State.SYNCED: 500}
    assert ledger_counts(erp_sandbox) == {record.reference: 1 for record in records}
    found = SyncLog.objects.filter(run=retried, payload__has_key="lookup").count()
    assert found == 500  # each found by its lookup, none posted again


def test_issue13_item7_the_lane_refuses_the_database_and_in_line_uses_it(org) -> None:
    """The lane's thread never touches the run's database; where pacing needs the
    database (integrations/pacing.py), the run makes its calls in line instead."""

    def read() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 'read'")
            return cursor.fetchone()[0]

    with Lane(concurrent=True) as lane:
        on_lane = lane.submit(threading.current_thread)
        refused = lane.submit(read)
        assert on_lane.result() is not threading.current_thread()
        with pytest.raises(DatabaseFromLane):
            refused.result()
    with Lane(concurrent=False) as in_line:
        assert in_line.submit(threading.current_thread).result() is threading.current_thread()
        assert in_line.submit(read).result() == "read"


# --- asking about Xledger's import behind the posts (Orchestrator._ask_behind) ---------------


def small_batches(
    monkeypatch,
    batch: int = 50,
    question: int = 100,
    asked: dict[str, threading.Event] | None = None,
) -> list[tuple[str, int]]:
    """Xledger's batches and import questions made small, so that a few hundred records
    take several of each; returns the ERP calls in the order the ERP received them.
    `asked`: an event per reference, set when a question about it reaches the ERP."""
    calls: list[tuple[str, int]] = []
    real_post, real_settle = XledgerConnector.post, XledgerConnector.settle

    def post(self: XledgerConnector, postings: list) -> list:
        calls.append(("post", len(postings)))
        return real_post(self, postings)

    def settle(self: XledgerConnector, held: dict[str, str]) -> dict:
        calls.append(("settle", len(held)))
        for reference in held:
            if asked and reference in asked:
                asked[reference].set()
        return real_settle(self, held)

    monkeypatch.setattr(XledgerConnector, "batch_size", batch)
    monkeypatch.setattr(XledgerConnector, "settle_chunk", property(lambda self: question))
    monkeypatch.setattr(XledgerConnector, "post", post)
    monkeypatch.setattr(XledgerConnector, "settle", settle)
    return calls


def test_issue13_item7_s3_5_the_run_asks_about_the_import_while_it_still_posts(
    org, erp_sandbox, monkeypatch
) -> None:
    """Each record is asked about once, most of them before the last post, the last batch
    while it is written; a voucher the import refused meanwhile is written as failed while
    the next batch is on its way, and that batch stays in the run's in_flight meanwhile."""
    configure(org, erp_sandbox)
    erp_sandbox.set_faults(
        late_rejection_rate=0.1, seed=3, assumptions={"xledger_import": "immediate"}
    )
    records = make_records(org, 400)
    last = threading.Event()
    calls = small_batches(monkeypatch, asked={records[-1].reference: last})
    in_flight_after_refusals: list[tuple[Any, list[int]]] = []
    seen: dict[str, bool] = {}
    real_write = Orchestrator._write_results

    def write(self: Orchestrator, pairs: list, final: bool = False, posting=None) -> None:
        if not final and pairs[-1][0].pk == records[-1].pk:
            seen["last_asked_while_written"] = last.wait(timeout=10)
        real_write(self, pairs, final, posting)
        if final and posting:
            stored = SyncRun.objects.get(pk=self.run.pk).in_flight
            in_flight_after_refusals.append((stored, [record.pk for record in posting]))

    monkeypatch.setattr(Orchestrator, "_write_results", write)

    run = sync(org)

    posts = [i for i, (kind, _) in enumerate(calls) if kind == "post"]
    asked = [(i, size) for i, (kind, size) in enumerate(calls) if kind == "settle"]
    assert len(posts) == 8
    assert asked[0][0] < posts[-1], f"every question waited for the last post: {calls}"
    assert sum(size for _, size in asked) == 400  # once each: the import posted at once
    assert seen["last_asked_while_written"]
    assert in_flight_after_refusals, "no refusal was written while a batch was on its way"
    assert all(stored == posting for stored, posting in in_flight_after_refusals)
    refused = FinancialRecord.objects.filter(organization=org, state=State.FAILED).count()
    assert 0 < refused < 400
    assert (run.sent, run.failed, run.done, run.total) == (400 - refused, refused, 400, 400)
    assert run.in_flight == []
    assert states(org) == {State.SYNCED: 400 - refused, State.FAILED: refused}
    assert ledger_counts(erp_sandbox) == {record.reference: 1 for record in records}


def test_issue13_item7_an_import_still_at_work_stops_the_questions_until_the_run_ends(
    org, erp_sandbox, monkeypatch
) -> None:
    """Where the import job has not run, the first question finds it so; the run asks no
    more until its end (one question there, about all), and nothing is sent again."""
    configure(org, erp_sandbox)
    erp_sandbox.set_faults(assumptions={"xledger_import": "deferred"})
    records = make_records(org, 400)
    calls = small_batches(monkeypatch)

    run = sync(org)

    asked = [size for kind, size in calls if kind == "settle"]
    assert asked == [100, 400], calls
    assert calls[-1] == ("settle", 400)
    assert (run.sent, run.failed, run.in_flight) == (400, 0, [])
    assert states(org) == {State.AWAITING: 400}
    assert ledger_counts(erp_sandbox) == {record.reference: 1 for record in records}
