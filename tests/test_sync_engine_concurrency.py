"""S3.4 and "at most one running run per organization", under real concurrency.

Twenty manual triggers, the approval task and the sweep all try to start a run for
the same organization at the same moment, each from its own thread with its own
database connection. The database's partial unique index must let exactly one run be
`running` at any time (the rest get RunAlreadyGoing), and the ERP's ledger must hold
every record once. On SQLite the write lock serializes the inserts; on PostgreSQL
the index does.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from django.db import connections
from django.utils import timezone

from accounting_sync import tasks
from accounting_sync.models import FinancialRecord, SyncRun
from accounting_sync.orchestrator import RunAlreadyGoing, execute_run, start_run
from tests.factories import configure, ledger_counts, make_records

pytestmark = pytest.mark.django_db(transaction=True)

State = FinancialRecord.State
MANUAL_TRIGGERS = 20


@pytest.fixture(autouse=True)
def _trust_the_sandbox(erp_sandbox, settings) -> None:
    settings.ERP_CA_BUNDLE = str(erp_sandbox.ca_bundle)


def in_thread(target: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)
        finally:
            connections.close_all()

    return threading.Thread(target=run)


@pytest.mark.slow  # twenty-two threads racing on real transactions
@pytest.mark.timeout(120)
def test_twenty_manual_triggers_approval_and_sweep_at_once_make_one_running_run(
    org, erp_sandbox, monkeypatch
) -> None:
    configure(org, erp_sandbox, first_retry_delay_seconds=1)
    records = make_records(org, 400)  # two Xledger batches
    # A few failed records already due, so the sweep has a reason to start a run too.
    FinancialRecord.objects.filter(pk__in=[r.pk for r in records[:10]]).update(
        state=State.FAILED, retry_count=1, next_retry_at=timezone.now(), last_error="HTTP 503"
    )
    erp_sandbox.set_faults(latency_ms=300)  # each batch is in flight a while

    # The sweep and the manual triggers hand the run to a worker; here each thread is
    # that worker, so the run is executed where it was started.
    monkeypatch.setattr(
        tasks.run_sync, "delay", lambda run_id: tasks.run_sync.apply(args=(run_id,))
    )
    monkeypatch.setattr(
        tasks.sync_after_approval,
        "apply_async",
        lambda *args, **kwargs: None,  # follow-ups: not part of this moment
    )

    barrier = threading.Barrier(MANUAL_TRIGGERS + 2)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []
    most_running = 0
    watching = threading.Event()
    watching.set()

    def manual() -> None:
        barrier.wait()
        try:
            run = start_run(org, SyncRun.Trigger.MANUAL)
        except RunAlreadyGoing as refused:
            assert refused.run is None or refused.run.status == SyncRun.Status.RUNNING
            with lock:
                outcomes["refused"] += 1
            return
        with lock:
            outcomes["started"] += 1
        execute_run(run.pk, worker=threading.current_thread().name)

    def approval() -> None:
        barrier.wait()
        tasks.sync_after_approval.apply(args=(org.pk,))

    def sweep() -> None:
        barrier.wait()
        tasks.sweep.apply()

    def watch() -> None:
        nonlocal most_running
        while watching.is_set():
            running = SyncRun.objects.filter(organization=org, status="running").count()
            most_running = max(most_running, running)
            time.sleep(0.005)

    watcher = in_thread(watch, errors)
    watcher.start()
    threads = [in_thread(manual, errors) for _ in range(MANUAL_TRIGGERS)]
    threads += [in_thread(approval, errors), in_thread(sweep, errors)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    watching.clear()
    watcher.join(timeout=10)

    assert not errors, errors
    assert outcomes["started"] + outcomes["refused"] == MANUAL_TRIGGERS
    assert outcomes["refused"] >= 1, "no manual trigger met a running run"
    assert most_running == 1, f"{most_running} runs were running at once"

    runs = list(SyncRun.objects.filter(organization=org))
    assert all(run.status != SyncRun.Status.RUNNING for run in runs)
    # Every run that was started was carried out (none stayed unclaimed).
    assert all(run.worker for run in runs)
    assert sum(run.sent for run in runs) == 400
    assert Counter(FinancialRecord.objects.values_list("state", flat=True)) == {State.SYNCED: 400}
    assert ledger_counts(erp_sandbox) == {record.reference: 1 for record in records}
