"""Issue 13 item 9: fair turns. A run sends at most SYNC_BATCHES_PER_TURN batches per task,
then parks and queues its next turn at the back of the queue, so one large organization
cannot hold the workers while small ones wait.

The tasks are called here in the order a FIFO broker would deliver them: the test keeps
the queue (a list) in place of Celery's, and each "delivery" calls the task function as a
worker would (`tasks.run_sync(run_id)`). Against the ERP sandbox over HTTPS; the batch
size is made 10 so a few dozen records make several turns. The real worker processes,
Redis and PostgreSQL are exercised by bench/night_bench.py (`make bench`).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.db.models import Count
from django.utils import timezone

from accounting_sync import tasks
from accounting_sync.models import FinancialRecord, SyncEvent, SyncLog, SyncRun
from accounting_sync.orchestrator import TURN, is_parked, recover_stale_runs, start_run
from erp_sandbox.client import SandboxProcess
from integrations.clients.xledger import XledgerConnector
from organizations.models import Organization
from tests.factories import configure, ledger_counts, make_due, make_records, states

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("trust_erp_sandbox"),
]

State = FinancialRecord.State
BATCH = 10


class Queue:
    """The broker's queue of run_sync messages, delivered first in, first out."""

    def __init__(self) -> None:
        self.messages: list[int] = []
        self.delivered: list[tuple[int, str, int, int]] = []  # run, status, done, total

    def put(self, run_id: int, *args: Any, **kwargs: Any) -> None:
        self.messages.append(run_id)

    def deliver_all(self, limit: int = 100) -> None:
        while self.messages:
            assert len(self.delivered) < limit, "the runs never ended"
            run_id = self.messages.pop(0)
            tasks.run_sync(run_id)
            run = SyncRun.objects.get(pk=run_id)
            self.delivered.append((run_id, run.status, run.done, run.total))


@pytest.fixture
def queue(monkeypatch, settings) -> Queue:
    settings.SYNC_BATCHES_PER_TURN = 1
    monkeypatch.setattr(XledgerConnector, "batch_size", BATCH)
    fifo = Queue()
    monkeypatch.setattr(tasks, "_queue_turn", fifo.put)
    monkeypatch.setattr(tasks.run_sync, "delay", fifo.put)
    return fifo


def small_org(sandbox: SandboxProcess) -> Organization:
    from integrations.models import Integration

    organization = Organization.objects.create(name="Lite lag", slug="lite-lag")
    Integration.objects.create(organization=organization, connector="xledger")
    configure(organization, sandbox, "xledger")
    return organization


def attempts_per_record(run: SyncRun) -> Counter[int]:
    rows = SyncLog.objects.filter(run=run).values("record").annotate(n=Count("id"))
    return Counter({row["record"]: row["n"] for row in rows})


def test_issue13_item9_a_large_run_yields_after_a_turn_and_a_small_run_queued_after_it_goes_first(
    org: Organization, erp_sandbox: SandboxProcess, queue: Queue
) -> None:
    """Task functions called in FIFO order: the large organization's run (40 records,
    4 batches) is queued first, the small one's (5 records) after it. The large run sends
    one batch, parks and goes behind the small run, which ends before the large run's
    second turn. The large run stays one run, its total known from its first turn."""
    configure(org, erp_sandbox)
    big = make_records(org, 40)
    little = small_org(erp_sandbox)
    small = make_records(little, 5)
    big_run = start_run(org, SyncRun.Trigger.MANUAL)
    small_run = start_run(little, SyncRun.Trigger.MANUAL)
    queue.put(big_run.pk)
    queue.put(small_run.pk)

    queue.deliver_all()

    assert queue.delivered == [
        (big_run.pk, "running", 10, 40),  # parked: one batch sent, all 40 counted
        (small_run.pk, "succeeded", 5, 5),
        (big_run.pk, "running", 20, 40),
        (big_run.pk, "running", 30, 40),
        (big_run.pk, "succeeded", 40, 40),
    ]
    big_run.refresh_from_db()
    assert (big_run.sent, big_run.failed, big_run.detail_code) == (40, 0, "")
    assert TURN not in big_run.detail_params
    assert SyncRun.objects.filter(organization=org).count() == 1  # one run, to the end
    first_small = SyncLog.objects.filter(run=small_run).earliest("created_at").created_at
    last_big = SyncLog.objects.filter(run=big_run).latest("created_at").created_at
    assert first_small < last_big
    # Exactly once: every record in the ERP once, each tried once.
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in big + small}
    assert set(attempts_per_record(big_run).values()) == {1}
    assert states(org) == {State.SYNCED: 40}


def test_issue13_item9_a_parked_run_holds_nothing_and_the_sweep_leaves_it_waiting(
    org: Organization, erp_sandbox: SandboxProcess, queue: Queue, settings
) -> None:
    """Between turns the run is running with no worker, nothing `sending` and nothing in
    flight: though it has not beaten for longer than the stale limit (a long queue), the
    sweep neither closes it nor hands anything back."""
    configure(org, erp_sandbox)
    make_records(org, 25)
    run = start_run(org, SyncRun.Trigger.MANUAL)
    tasks.run_sync(run.pk)
    run.refresh_from_db()
    assert is_parked(run) and run.worker == "" and run.in_flight == []
    assert queue.messages == [run.pk]
    assert states(org) == {State.SYNCED: 10, State.PENDING: 15}
    assert not FinancialRecord.objects.filter(claimed_by__isnull=False).exists()

    old = timezone.now() - timedelta(seconds=settings.SYNC_STALE_AFTER_SECONDS + 60)
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=old)
    assert recover_stale_runs() == []
    tasks.sweep()
    run.refresh_from_db()
    assert is_parked(run) and run.heartbeat_at == old
    assert queue.messages == [run.pk]  # nothing started or queued besides its own turn
    assert not SyncEvent.objects.filter(run=run).exists()

    queue.deliver_all()
    run.refresh_from_db()
    assert (run.status, run.sent, run.total) == ("succeeded", 25, 25)


def test_issue13_item9_s3_4_a_run_queued_behind_a_long_night_is_not_closed_as_abandoned(
    org: Organization, erp_sandbox: SandboxProcess, queue: Queue, settings
) -> None:
    """Sync Now at 02:00: the run waits for its first turn behind every organization's
    turns, longer than the stale limit. It has no worker yet, so it is not dead: the
    sweep neither closes it (a failed "abandoned" run, an alert) nor starts another.
    Past SYNC_PARKED_REQUEUE_SECONDS its message is queued again, in case it was lost."""
    configure(org, erp_sandbox)
    records = make_records(org, 15)
    run = start_run(org, SyncRun.Trigger.MANUAL)
    queue.put(run.pk)

    waited = timezone.now() - timedelta(seconds=settings.SYNC_STALE_AFTER_SECONDS + 60)
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=waited)
    assert recover_stale_runs() == []
    tasks.sweep()
    run.refresh_from_db()
    assert (run.status, run.worker, run.heartbeat_at) == ("running", "", waited)
    assert queue.messages == [run.pk]
    assert not SyncEvent.objects.filter(run=run).exists()

    long_ago = timezone.now() - timedelta(seconds=settings.SYNC_PARKED_REQUEUE_SECONDS + 1)
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=long_ago)
    tasks.sweep()
    assert queue.messages == [run.pk, run.pk]  # the first may have been lost

    queue.deliver_all()
    run.refresh_from_db()
    assert (run.status, run.sent, run.total) == ("succeeded", 15, 15)
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in records}
    assert SyncRun.objects.filter(organization=org).count() == 1


def test_issue13_item9_a_parked_run_whose_message_was_lost_is_queued_again_by_the_sweep(
    org: Organization, erp_sandbox: SandboxProcess, queue: Queue, settings
) -> None:
    """The broker lost the next turn's message. After SYNC_PARKED_REQUEUE_SECONDS the
    sweep queues it again; the run goes on where it stopped. A stray second message
    (the lost one delivered after all) finds the run taken or ended and does nothing."""
    configure(org, erp_sandbox)
    records = make_records(org, 25)
    run = start_run(org, SyncRun.Trigger.MANUAL)
    tasks.run_sync(run.pk)
    queue.messages.clear()  # lost

    tasks.sweep()
    assert queue.messages == []  # not yet: it may only be waiting behind a long queue
    long_ago = timezone.now() - timedelta(seconds=settings.SYNC_PARKED_REQUEUE_SECONDS + 1)
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=long_ago)
    tasks.sweep()
    assert queue.messages == [run.pk]
    tasks.sweep()
    assert queue.messages == [run.pk]  # once a period, not once a sweep

    queue.deliver_all()
    tasks.run_sync(run.pk)  # the lost message, delivered late
    run.refresh_from_db()
    assert (run.status, run.sent, run.done, run.total) == ("succeeded", 25, 25, 25)
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in records}
    assert SyncRun.objects.filter(organization=org).count() == 1


def test_issue13_item9_a_run_closed_between_turns_leaves_its_rest_to_a_run_the_sweep_starts(
    org: Organization, erp_sandbox: SandboxProcess, queue: Queue, settings
) -> None:
    """A worker took the parked run's next turn and died before claiming anything: the
    sweep closes the run (stale, its lock free) and, since its later turns' records are
    still pending, which no due retry or lost-trigger rule would take, starts a run for
    them at once. The old turn's message, delivered late, does nothing."""
    configure(org, erp_sandbox)
    records = make_records(org, 25)
    run = start_run(org, SyncRun.Trigger.MANUAL)
    tasks.run_sync(run.pk)
    queue.messages.clear()
    old = timezone.now() - timedelta(seconds=settings.SYNC_STALE_AFTER_SECONDS + 60)
    SyncRun.objects.filter(pk=run.pk).update(worker="dead@host", heartbeat_at=old)

    tasks.sweep()

    run.refresh_from_db()
    assert (run.status, run.error_class) == ("failed", "abandoned")
    assert TURN not in run.detail_params
    [retry] = SyncRun.objects.filter(organization=org, status="running")
    assert retry.trigger == SyncRun.Trigger.RETRY and queue.messages == [retry.pk]
    tasks.run_sync(run.pk)  # the closed run's own turn
    queue.deliver_all()
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in records}
    assert states(org) == {State.SYNCED: 25}


def test_issue13_item9_exactly_once_across_turns_with_the_erps_faults(
    org: Organization, erp_sandbox: SandboxProcess, queue: Queue
) -> None:
    """60 records in turns of one batch, while the ERP fails, rate-limits and drops
    answers after committing. No turn takes a record an earlier turn of the same run
    tried; what failed is retried by the sweep's runs (lookup first where uncertain).
    In the end every record is in the ERP once."""
    configure(org, erp_sandbox, first_retry_delay_seconds=1, automatic_retries=20)
    records = make_records(org, 60)
    erp_sandbox.set_faults(
        seed=913, error_rate=0.15, drop_after_commit_rate=0.2, rate_limit_rate=0.05
    )
    run = start_run(org, SyncRun.Trigger.MANUAL)
    queue.put(run.pk)
    queue.deliver_all()
    run.refresh_from_db()
    assert run.status != "running" and run.done == run.total == 60
    assert set(attempts_per_record(run).values()) == {1}  # each tried once by the run

    for _ in range(30):
        if states(org) == {State.SYNCED: 60}:
            break
        make_due(org)
        tasks.sweep()
        queue.deliver_all()
    assert erp_sandbox.requests()["xledger"]["dropped"], "the faults never struck"
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in records}
    assert states(org) == {State.SYNCED: 60}


def test_issue13_item9_skip_reasons_and_retry_selected_carry_over_turns(
    org: Organization, erp_sandbox: SandboxProcess, queue: Queue
) -> None:
    """What the run's outcome names is counted over all its turns (records skipped for a
    missing mapping in two turns: one line of 15), and a person's Retry of chosen records
    goes in turns too, sending exactly those."""
    configure(org, erp_sandbox)
    make_records(org, 30)
    make_records(org, 15, category="mystery")  # no mapping: skipped
    run = start_run(org, SyncRun.Trigger.MANUAL)
    queue.put(run.pk)
    queue.deliver_all()
    run.refresh_from_db()
    assert (run.status, run.sent, run.skipped, run.done, run.total) == (
        "succeeded",
        30,
        15,
        45,
        45,
    )
    assert run.skip_reasons == [{"code": "no_mapping", "count": 15, "category": "mystery"}]

    chosen = make_records(org, 25, category="honorarium")
    FinancialRecord.objects.filter(pk__in=[r.pk for r in chosen]).update(
        state=State.FAILED, retry_count=3, next_retry_at=None, last_error="HTTP 500"
    )
    unchosen = make_records(org, 3, start=500)[-3:]  # pending, not chosen: left alone
    retry = start_run(org, SyncRun.Trigger.RETRY, record_ids=[r.pk for r in chosen])
    queue.put(retry.pk)
    queue.deliver_all()
    retry.refresh_from_db()
    assert [d[2:] for d in queue.delivered[-3:]] == [(10, 25), (20, 25), (25, 25)]
    assert (retry.status, retry.sent) == ("succeeded", 25)
    counts = ledger_counts(erp_sandbox)
    assert all(counts[r.reference] == 1 for r in chosen)
    assert not any(counts[r.reference] for r in unchosen)


def test_issue13_item9_a_turn_of_a_scheduled_run_keeps_its_retries(
    org: Organization, erp_sandbox: SandboxProcess, queue: Queue, monkeypatch
) -> None:
    """S9.4 across turns: a scheduled run whose last turn (in run_sync) fails on the
    network is retried as scheduled_sync's own retry would be, counting its retries."""
    configure(org, erp_sandbox)
    make_records(org, 15)
    sent: list[tuple[str, tuple, dict]] = []

    def send_task(name: str, args: tuple, **options: Any) -> None:
        sent.append((name, args, options))

    monkeypatch.setattr(tasks.scheduled_sync.app, "send_task", send_task)
    erp_sandbox.set_faults(error_rate=1.0)  # the ERP is down all night
    run = start_run(org, SyncRun.Trigger.SCHEDULE)
    tasks.run_sync(run.pk, 1)  # the first turn (of scheduled_sync's first retry): parks
    assert queue.messages == [run.pk] and not sent
    tasks.run_sync(run.pk, 1)  # the last turn

    run.refresh_from_db()
    assert (run.status, run.error_class, run.failed) == ("failed", "network", 15)
    assert [(name, args, options["retries"]) for name, args, options in sent] == [
        (tasks.scheduled_sync.name, (org.pk,), 2)
    ]


def test_issue13_item5_what_a_dead_run_left_awaiting_import_is_asked_about_by_the_next_run(
    org: Organization, erp_sandbox: SandboxProcess, settings
) -> None:
    """Xledger: a run sends, then its worker dies before asking about the import. The run
    that takes over asks at once, not SYNC_IMPORT_CHECK_SECONDS later."""
    from accounting_sync.orchestrator import Orchestrator

    configure(org, erp_sandbox)
    records = make_records(org, 3)
    run = start_run(org, SyncRun.Trigger.MANUAL)
    orchestrator = Orchestrator(SyncRun.objects.get(pk=run.pk))
    orchestrator.settles_later = True
    claimed = orchestrator._claim()
    orchestrator.mappings = {m.category: m for m in orchestrator.integration.mappings.all()}
    assert orchestrator._mark_in_flight(claimed)
    connector = orchestrator.integration.build_connector()
    results = connector.post([orchestrator._posting(record) for record in claimed])
    orchestrator._write_results(list(zip(claimed, results, strict=True)))
    assert states(org) == {State.AWAITING: 3}
    old = timezone.now() - timedelta(seconds=settings.SYNC_STALE_AFTER_SECONDS + 60)
    SyncRun.objects.filter(pk=run.pk).update(worker="dead@host", heartbeat_at=old)

    [_closed] = recover_stale_runs()
    assert FinancialRecord.objects.awaiting().filter(next_retry_at__lte=timezone.now()).count() == 3
    tasks.run_sync(tasks.start_run(org, SyncRun.Trigger.RETRY).pk)

    assert states(org) == {State.SYNCED: 3}
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in records}
