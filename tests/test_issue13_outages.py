"""Issue 13 item 11: the infrastructure-outage experiments, kept as tests.

Real Celery worker processes sync against the ERP sandbox over HTTP while the test takes
away what they stand on: PostgreSQL (connections dropped mid-run), Redis (the broker, and
the approvals' triggers with it), the worker itself (SIGKILL), or shares the work between
two or three workers on five organizations with the ERP's faults on. Outages go through
tests/outage_proxy.py, a TCP forwarder between the processes and the service which the
test cuts and restores; nothing is restarted but what a test kills.

Recovery is driven as in production, by the sweep (called here in-process, once a second,
as beat would; not while the infrastructure is down, since beat's sweep could not run
then either). Each test ends with the same invariant, once service is back and the sweep
has run: 0 duplicates in the ERP's ledger, 0 lost (every record synced, or failed only
where the ERP refused it), 0 "failed but in the ERP", 0 stuck pending, sending or awaiting.

The measured times are printed (`pytest -s`): the drain after an outage, and how soon a
killed worker's run is closed and its records are in the ERP.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounting_sync import tasks
from accounting_sync.models import FinancialRecord, SyncEvent, SyncRun
from accounting_sync.orchestrator import start_run
from erp_sandbox.client import SandboxProcess
from erp_sandbox.faults import FaultInjector, Faults
from organizations.models import ApiKey, Organization
from tests.conftest import BASE_DIR, _database_url_for_worker, worker_command
from tests.factories import configure, ledger_counts, make_records
from tests.outage_proxy import OutageProxy
from tests.test_inbound_api import post, records

State = FinancialRecord.State

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres_only(
        reason="outages of PostgreSQL and Redis, cut under worker processes: the embedded "
        "SQLite file and folder broker have no connection to drop"
    ),
]

# The sweep's period here (beat's SYNC_SWEEP_SECONDS is 30 in production).
SWEEP_EVERY = 1.0
# Seconds without a beat before the sweep closes a run. The smallest the settings allow
# where a test measures recovery from a dead worker; more where no worker dies, so a busy
# CI machine never has a live run closed under it.
STALE_FAST = 5
STALE_SAFE = 15
ERP_FAULTS = {
    "seed": 1313,
    "error_rate": 0.08,
    "rate_limit_rate": 0.04,
    "retry_after_s": 1,
    "drop_after_commit_rate": 0.12,
    "permanent_error_rate": 0.02,
}


# --- worker processes ------------------------------------------------------------------------


class WorkerProcess:
    """`celery -A config worker` as its own process, named, which a test may kill."""

    def __init__(self, name: str, log_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def hostname(self) -> str:
        return f"{self.name}@{os.uname().nodename}"

    def spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                worker_command(self.name),
                cwd=BASE_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 90) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while b"ready." not in self.log_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start:\n{self.logs()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no acknowledgement, the run left `running` mid-batch."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if not self.alive:
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)

    def logs(self, tail: int = 4000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name}\n{text[-tail:]}"


class Pool:
    """The worker processes of one test, started together and always stopped."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.workers: list[WorkerProcess] = []

    def start(self, count: int, env: dict[str, str], prefix: str = "outage-worker") -> None:
        started = [
            WorkerProcess(f"{prefix}-{len(self.workers) + n + 1}", self.log_dir, env)
            for n in range(count)
        ]
        for worker in started:  # side by side: each takes seconds to import Django
            worker.spawn()
        self.workers.extend(started)
        for worker in started:
            worker.wait_ready()

    def stop(self) -> None:
        for worker in self.workers:  # all asked at once: each takes a moment to shut down
            if worker.alive:
                assert worker.process is not None
                worker.process.terminate()
        for worker in self.workers:
            worker.stop()

    def logs(self) -> str:
        return "\n".join(worker.logs() for worker in self.workers)


def worker_env(
    settings: Any, *, database_url: str, broker_url: str, stale: int, pacing_url: str = "off"
) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "VAR_DIR": str(settings.VAR_DIR),
        "DEBUG": "true",
        "ERP_CA_BUNDLE": settings.ERP_CA_BUNDLE,
        "ERP_PACING_URL": pacing_url,
        "SYNC_STALE_AFTER_SECONDS": str(stale),
        "SYNC_APPROVAL_DELAY_SECONDS": str(settings.SYNC_APPROVAL_DELAY_SECONDS),
        "SYNC_LOST_TRIGGER_SECONDS": str(settings.SYNC_LOST_TRIGGER_SECONDS),
        # Records Xledger accepted are asked about again after a second, not two minutes.
        "SYNC_IMPORT_CHECK_SECONDS": "1",
        "LOG_LEVEL": "INFO",
    }


def proxied_database_url(proxy: OutageProxy) -> str:
    """The test database's URL, through the proxy."""
    params = connection.settings_dict
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    return (
        f"postgres://{params.get('USER') or ''}{password}@127.0.0.1:{proxy.port}/{params['NAME']}"
    )


def broker_address(url: str) -> tuple[str, int, str]:
    """(host, port, "/db") of a redis:// URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379, parts.path or "/0"


@pytest.fixture
def pool(transactional_db, tmp_path, settings, erp_sandbox) -> Iterator[Pool]:
    """Worker processes that trust the sandbox; the broker emptied before and after."""
    from config.celery import app

    assert settings.CELERY_BROKER_URL.startswith("redis://"), (
        "these tests cut Redis: run them with CELERY_BROKER_URL=redis://..."
    )
    settings.ERP_CA_BUNDLE = str(erp_sandbox.ca_bundle)
    settings.SYNC_APPROVAL_DELAY_SECONDS = 1
    settings.SYNC_LOST_TRIGGER_SECONDS = 3
    app.control.purge()  # no task left on the broker by an earlier test or run
    workers = Pool(tmp_path)
    try:
        yield workers
    finally:
        workers.stop()
        app.control.purge()


# --- driving and judging -----------------------------------------------------------------------


def unfinished(organizations: list[Organization]) -> int:
    """Records neither synced nor failed for good (failed with no retry planned)."""
    return (
        FinancialRecord.objects.filter(organization__in=organizations)
        .exclude(state=State.SYNCED)
        .exclude(state=State.FAILED, next_retry_at__isnull=True)
        .count()
    )


def progress(organizations: list[Organization]) -> str:
    states = Counter(
        FinancialRecord.objects.filter(organization__in=organizations).values_list(
            "state", flat=True
        )
    )
    runs = Counter(SyncRun.objects.values_list("status", flat=True))
    return f"records {dict(states)}, runs {dict(runs)}"


def drain(
    organizations: list[Organization], pool: Pool, *, time_limit: float, compress: bool = False
) -> float:
    """Sweep every SWEEP_EVERY seconds until every record is synced or failed for good and
    no run is going; answer the seconds it took.

    `compress`: a record the ERP refused several times in a row waits minutes by its
    backoff (asserted in test_sync_engine.py); where the ERP's faults are on, what matters
    here is what reaches the ERP, not when, so each planned retry is made due at once.
    """
    started = time.monotonic()
    while True:
        if compress:
            FinancialRecord.objects.filter(
                organization__in=organizations,
                state__in=[State.FAILED, State.AWAITING],
                next_retry_at__gt=timezone.now(),
            ).update(next_retry_at=timezone.now())
        tasks.sweep()
        if not SyncRun.objects.filter(status=SyncRun.Status.RUNNING).exists() and not unfinished(
            organizations
        ):
            return time.monotonic() - started
        if time.monotonic() - started > time_limit:
            pytest.fail(
                f"not every record was synced or failed for good within {time_limit:.0f} s: "
                f"{progress(organizations)}\n{pool.logs()}"
            )
        time.sleep(SWEEP_EVERY)


def refused_by_the_erp(faults: dict[str, Any] | None, connector: str, references: set[str]):
    """The references the sandbox refuses for good, from its own stable hash and seed."""
    if not faults:
        return set()
    injector = FaultInjector(Faults.from_json(faults))
    return {ref for ref in references if injector.permanent_error(connector, ref)}


def assert_exactly_once(
    organizations: list[Organization], sandbox: SandboxProcess, faults: dict[str, Any] | None
) -> None:
    """0 duplicates, 0 lost, 0 failed but in the ERP, 0 stuck."""
    in_ledger = ledger_counts(sandbox, "xledger") + ledger_counts(sandbox, "business_central")
    duplicates = {ref: n for ref, n in in_ledger.items() if n > 1}
    lost, failed_in_erp, stuck, wrongly_refused = [], [], [], []
    references: set[str] = set()
    refused: set[str] = set()
    for organization in organizations:
        connector = organization.integration.connector
        records = list(FinancialRecord.objects.filter(organization=organization))
        mine = {record.reference for record in records}
        references |= mine
        refused_here = refused_by_the_erp(faults, connector, mine)
        refused |= refused_here
        for record in records:
            ref = record.reference
            if record.state in (State.PENDING, State.SENDING, State.AWAITING):
                stuck.append((ref, record.state))
            elif record.claimed_by_id is not None:
                stuck.append((ref, f"{record.state}, claimed by run {record.claimed_by_id}"))
            elif record.state == State.FAILED and ref in in_ledger:
                failed_in_erp.append(ref)
            elif record.state == State.FAILED and ref not in refused_here:
                lost.append((ref, record.last_error[:80]))
            elif record.state == State.SYNCED and ref not in in_ledger:
                lost.append((ref, "synced, but not in the ERP"))
            elif record.state == State.SYNCED and ref in refused_here:
                wrongly_refused.append(ref)
            elif record.state not in (State.SYNCED, State.FAILED):
                stuck.append((ref, record.state))
    strangers = set(in_ledger) - references
    summary = (
        f"{len(references)} records: {len(duplicates)} duplicated in the ERP, {len(lost)} lost, "
        f"{len(failed_in_erp)} failed but in the ERP, {len(stuck)} stuck, "
        f"{len(strangers)} in the ERP but unknown, {len(wrongly_refused)} synced though refused"
    )
    assert not duplicates, (
        f"{summary}: {sorted(duplicates.items())[:20]}\n{history(sorted(duplicates)[:3])}"
    )
    assert not lost, f"{summary}: {lost[:20]}"
    assert not failed_in_erp, f"{summary}: {failed_in_erp[:20]}"
    assert not stuck, f"{summary}: {stuck[:20]}"
    assert not strangers and not wrongly_refused, f"{summary}: {sorted(strangers)[:20]}"
    assert not SyncRun.objects.filter(status=SyncRun.Status.RUNNING).exists()
    # What the ERP refused is all that is missing from it.
    assert set(in_ledger) == references - refused, summary
    print(summary)


def history(references: list[str]) -> str:
    """What the application wrote about these records: each attempt, by which run."""
    from accounting_sync.models import SyncLog

    lines = []
    for row in SyncLog.objects.filter(reference__in=references).select_related("run"):
        lines.append(
            f"{row.reference} #{row.attempt_number} run {row.run_id} ({row.run.trigger}, "
            f"{row.run.worker}, {row.run.status} {row.run.error_class}) {row.connector} "
            f"{row.status} {row.error_class} {sorted(row.payload)} {row.error_message[:60]}"
        )
    return "\n".join(lines)


def wait_for(condition, *, timeout: float, what: str, pool: Pool) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:.0f} s\n{pool.logs()}")
        time.sleep(0.05)


def running_run(organization: Organization) -> SyncRun | None:
    return SyncRun.objects.filter(
        organization=organization, status=SyncRun.Status.RUNNING, total__gt=0
    ).first()


# --- 1. PostgreSQL goes away mid-run ----------------------------------------------------------


@pytest.mark.timeout(240)
def test_issue13_item11_database_outage_mid_run_the_worker_recovers_without_restart(
    other_org: Organization, erp_sandbox: SandboxProcess, pool: Pool, settings
) -> None:
    """Business Central, 300 records (three batches of lines, each with its dimensions).
    The connections to PostgreSQL are dropped while the second batch is in the ERP: the
    first is written down, the worker cannot write what happened to the second. 12 s
    later the database is back; the same worker process carries out the recovery runs."""
    settings.SYNC_STALE_AFTER_SECONDS = STALE_FAST
    configure(other_org, erp_sandbox, "business_central", first_retry_delay_seconds=1)
    records = make_records(other_org, 300)
    erp_sandbox.set_faults(latency_ms=50)

    with OutageProxy(
        connection.settings_dict.get("HOST") or "127.0.0.1",
        int(connection.settings_dict.get("PORT") or 5432),
    ) as database:
        env = worker_env(
            settings,
            database_url=proxied_database_url(database),
            broker_url=settings.CELERY_BROKER_URL,
            stale=STALE_FAST,
        )
        pool.start(1, env)
        worker = pool.workers[0]
        # The second batch's lines (the only request naming its first record) wait in the
        # ERP while the run writes the first batch down (accounting_sync/lane.py).
        erp_sandbox.hold(f'"{records[100].reference}"')
        run = start_run(other_org, SyncRun.Trigger.MANUAL)
        tasks.run_sync.delay(run.pk)

        try:
            erp_sandbox.wait_until_held(timeout=60)
            wait_for(
                lambda: SyncRun.objects.get(pk=run.pk).done >= 100,
                timeout=60,
                what="the first batch written",
                pool=pool,
            )
            database.cut()
            time.sleep(12)  # nothing sweeps: beat could not reach the database either
            database.restore()
        finally:
            # The ERP carries out what the worker asked, as a real one would.
            erp_sandbox.release()
        restored = time.monotonic()

        drained = drain([other_org], pool, time_limit=120)
        assert worker.alive, "the worker died in the outage"

    print(f"database outage: drained {drained:.1f} s after the database came back")
    interrupted = SyncRun.objects.get(pk=run.pk)
    assert interrupted.status == SyncRun.Status.FAILED, interrupted.message
    assert interrupted.done < interrupted.total  # it was stopped mid-run
    # The worker's own connection broke under it; the sweep, on a working one, closed it.
    assert interrupted.error_class == "abandoned", (interrupted.error_class, interrupted.message)
    # The same process reconnected by itself: it carried out the runs after the outage.
    later = SyncRun.objects.filter(organization=other_org, pk__gt=run.pk)
    assert later.exists() and set(later.values_list("worker", flat=True)) == {worker.hostname}
    assert "OperationalError" in worker.log_path.read_text(errors="replace")
    assert_exactly_once([other_org], erp_sandbox, faults=None)
    # The batch whose lines reached the ERP during the outage was found there, not resent.
    found = FinancialRecord.objects.filter(organization=other_org, synced_at__isnull=False)
    assert found.count() == 300
    # Item 4: the outage was the infrastructure's, not the records': no retry was spent.
    spent = FinancialRecord.objects.filter(organization=other_org, retry_count__gt=0)
    assert not spent.exists(), list(spent.values_list("pk", "retry_count")[:5])
    assert time.monotonic() - restored < 120


# --- 2. Redis (the broker) goes away during approvals -------------------------------------------


def publish_through(url: str) -> None:
    """Make this process's Celery publish to `url` (its pools are made anew)."""
    from config.celery import app

    # Celery keeps a pool per app and a producer pool per AMQP: dropping both makes the
    # next publish connect to the new URL (the typed API has no setter for either).
    app.conf["broker_url"] = url
    setattr(app, "_pool", None)  # noqa: B010
    setattr(app.amqp, "_producer_pool", None)  # noqa: B010


@pytest.fixture
def publisher(settings) -> Iterator[None]:
    original = settings.CELERY_BROKER_URL
    yield
    publish_through(original)


@pytest.mark.timeout(240)
def test_issue13_item11_broker_outage_during_approvals_answers_201_and_the_sweep_sends_everything(
    org: Organization,
    erp_sandbox: SandboxProcess,
    pool: Pool,
    settings,
    publisher: None,
) -> None:
    """Xledger, syncing after each approval. Redis is cut just after 100 approvals were
    queued (the worker may hold their trigger when its connection drops) and 300 more
    arrive while it is down; the workers' pacing window lives in the same Redis, as in
    production. The inbound API answers 201 throughout; once Redis is back, the sweep
    finds the records whose trigger was lost and sends every one."""
    settings.SYNC_STALE_AFTER_SECONDS = STALE_SAFE
    configure(org, erp_sandbox, "xledger", first_retry_delay_seconds=1, sync_after_approval=True)
    _key, api_key = ApiKey.issue(org)
    erp_sandbox.set_faults(latency_ms=50)
    client = Client()

    host, port, db = broker_address(settings.CELERY_BROKER_URL)
    with OutageProxy(host, port) as broker:
        proxied = f"redis://127.0.0.1:{broker.port}{db}"
        publish_through(proxied)
        env = worker_env(
            settings,
            database_url=_database_url_for_worker(),
            broker_url=proxied,
            stale=STALE_SAFE,
            pacing_url=proxied,
        )
        pool.start(1, env)

        # Before: the trigger works through the proxy.
        assert post(client, api_key, records(50, prefix="before")).status_code == 201
        wait_for(
            lambda: not unfinished([org]), timeout=60, what="the first approvals' sync", pool=pool
        )

        worker = pool.workers[0]
        received = worker.log_path.read_text(errors="replace").count("received")
        assert post(client, api_key, records(100, prefix="at-the-cut")).status_code == 201
        # The worker holds the trigger, unacknowledged, while its countdown runs: the
        # connection drops under a worker with a message in hand (kombu restores such
        # messages on closing the channel).
        wait_for(
            lambda: worker.log_path.read_text(errors="replace").count("received") > received,
            timeout=10,
            what="the approval trigger's delivery",
            pool=pool,
        )
        broker.cut()
        cut_at = time.monotonic()
        answers, slowest = [], 0.0
        for wave in range(3):
            asked = time.monotonic()
            response = post(client, api_key, records(100, prefix=f"during-{wave}"))
            slowest = max(slowest, time.monotonic() - asked)
            answers.append(response.status_code)
        time.sleep(max(0.0, 10 - (time.monotonic() - cut_at)))
        broker.restore()
        drained = drain([org], pool, time_limit=120)
        assert worker.alive, f"the worker died in the outage:\n{worker.logs()}"

    print(
        f"broker outage: the inbound API answered in at most {slowest:.2f} s while Redis was "
        f"down; drained {drained:.1f} s after it came back"
    )
    assert answers == [201, 201, 201]
    assert slowest < 5, "an approval waited on the broker"
    assert FinancialRecord.objects.filter(organization=org).count() == 450
    # The records stored during the outage went out in a run the sweep started for them.
    during = FinancialRecord.objects.filter(organization=org, source_id__startswith="during-")
    first_run = (
        SyncRun.objects.filter(organization=org, attempts__record__in=during).order_by("pk").first()
    )
    assert first_run is not None and first_run.trigger == SyncRun.Trigger.APPROVAL
    assert_exactly_once([org], erp_sandbox, faults=None)


# --- 3. A worker SIGKILLed mid-batch -------------------------------------------------------


@pytest.mark.timeout(240)
def test_issue13_item11_a_killed_workers_run_is_closed_within_the_stale_limit_and_one_sweep(
    org: Organization, erp_sandbox: SandboxProcess, pool: Pool, settings
) -> None:
    """Xledger, 600 records. The worker is SIGKILLed while its second batch is in the
    ERP, which then carries the batch out. A second worker is running all along (the
    other machine); nothing is restarted."""
    settings.SYNC_STALE_AFTER_SECONDS = STALE_FAST
    configure(org, erp_sandbox, "xledger", first_retry_delay_seconds=1)
    records = make_records(org, 600)
    env = worker_env(
        settings,
        database_url=_database_url_for_worker(),
        broker_url=settings.CELERY_BROKER_URL,
        stale=STALE_FAST,
    )
    pool.start(2, env)
    # The second batch (the only request naming its first record) waits in the ERP. The
    # run writes the first batch down meanwhile (accounting_sync/lane.py): waiting for
    # that before holding would race the second batch's post.
    erp_sandbox.hold(f'"{records[250].reference}"')
    run = start_run(org, SyncRun.Trigger.MANUAL)
    tasks.run_sync.delay(run.pk)

    try:
        erp_sandbox.wait_until_held(timeout=60)
        wait_for(
            lambda: SyncRun.objects.get(pk=run.pk).done >= 250,
            timeout=60,
            what="the first batch written",
            pool=pool,
        )
        hostname = SyncRun.objects.get(pk=run.pk).worker
        victim = next(w for w in pool.workers if w.hostname == hostname)
        victim.kill()
        killed_at, killed_wall = time.monotonic(), timezone.now()
    finally:
        erp_sandbox.release()  # the dead worker's call still reaches the ledger

    closed_after: float | None = None
    next_sweep = time.monotonic()
    while closed_after is None:
        if time.monotonic() >= next_sweep:
            tasks.sweep()
            next_sweep += SWEEP_EVERY
        closed = SyncRun.objects.get(pk=run.pk)
        if closed.status != SyncRun.Status.RUNNING:
            assert closed.finished_at is not None
            closed_after = (closed.finished_at - killed_wall).total_seconds()
        elif time.monotonic() - killed_at > 60:
            pytest.fail(f"the killed worker's run is still running: {progress([org])}")
        time.sleep(0.05)
    drain([org], pool, time_limit=120)
    recovered = time.monotonic() - killed_at

    print(
        f"worker killed: its run closed {closed_after:.1f} s after the kill "
        f"(stale limit {STALE_FAST} s, sweep every {SWEEP_EVERY:.0f} s); every record in the ERP "
        f"{recovered:.1f} s after the kill"
    )
    interrupted = SyncRun.objects.get(pk=run.pk)
    assert interrupted.error_class == "abandoned"
    assert SyncEvent.objects.filter(run=interrupted, kind=SyncEvent.Kind.RUN_ABANDONED).exists()
    # Beats come every third of the limit, so the run cannot look dead much before it;
    # the sweep after the limit closes it.
    beat = STALE_FAST / 3
    assert STALE_FAST - beat - 0.5 <= closed_after <= STALE_FAST + SWEEP_EVERY + 1.0
    survivor = next(w for w in pool.workers if w is not victim)
    later = SyncRun.objects.filter(organization=org, pk__gt=run.pk)
    assert set(later.values_list("worker", flat=True)) == {survivor.hostname}
    assert_exactly_once([org], erp_sandbox, faults=None)


# --- 4. Two and three workers, five organizations, the ERP's faults on --------------------------


def five_organizations(sandbox: SandboxProcess) -> list[Organization]:
    """Three on Xledger, two on Business Central, sharing the sandbox's tenants (each
    record's reference names its organization)."""
    from integrations.models import Integration

    organizations = []
    for n, connector in enumerate(
        ["xledger", "business_central", "xledger", "business_central", "xledger"]
    ):
        organization = Organization.objects.create(name=f"Lag {n}", slug=f"lag-{n}")
        Integration.objects.create(organization=organization, connector=connector)
        configure(
            organization,
            sandbox,
            connector,
            first_retry_delay_seconds=1,
            automatic_retries=20,
            sync_after_approval=True,
        )
        organizations.append(organization)
    return organizations


@pytest.mark.timeout(300)
@pytest.mark.parametrize("workers", [2, 3])
def test_issue13_item11_several_workers_on_five_organizations_with_erp_faults_send_each_once(
    workers: int, erp_sandbox: SandboxProcess, pool: Pool, settings
) -> None:
    """Runs for five organizations start together on the workers; while they go, two
    more waves of approvals arrive for each, queued as the inbound API queues them. The
    ERP fails, rate-limits, drops answers after committing and refuses some postings."""
    settings.SYNC_STALE_AFTER_SECONDS = STALE_SAFE
    organizations = five_organizations(erp_sandbox)
    for organization in organizations:
        make_records(organization, 100)
    erp_sandbox.set_faults(**ERP_FAULTS, latency_ms=30)
    env = worker_env(
        settings,
        database_url=_database_url_for_worker(),
        broker_url=settings.CELERY_BROKER_URL,
        stale=STALE_SAFE,
    )
    pool.start(workers, env)

    started = time.monotonic()
    for organization in organizations:
        tasks.run_sync.delay(start_run(organization, SyncRun.Trigger.MANUAL).pk)
    for wave in (1, 2):
        time.sleep(1.0)
        for organization in organizations:
            make_records(organization, 40, category="honorarium", start=wave * 1000)
            tasks.enqueue_approval_sync(organization.pk)
    drain(organizations, pool, time_limit=200, compress=True)
    elapsed = time.monotonic() - started

    in_force = erp_sandbox.faults()
    assert {key: in_force[key] for key in ERP_FAULTS} == ERP_FAULTS
    requests = erp_sandbox.requests()
    print(
        f"{workers} workers, 5 organizations, 900 records: done in {elapsed:.1f} s; "
        f"sandbox requests {requests}"
    )
    errors = sum(requests[erp]["error"] + requests[erp]["dropped"] for erp in requests)
    assert errors, f"the ERP's faults never struck: {requests}"
    # The work was shared: every worker carried out runs.
    used = set(SyncRun.objects.exclude(worker="").values_list("worker", flat=True))
    assert used == {worker.hostname for worker in pool.workers}, used
    assert not FinancialRecord.objects.filter(claimed_by__isnull=False).exists()
    assert_exactly_once(organizations, erp_sandbox, faults=ERP_FAULTS)
