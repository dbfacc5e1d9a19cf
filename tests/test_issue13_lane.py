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
        return real_post(self, postings)

    seen: dict[str, Any] = {}
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
