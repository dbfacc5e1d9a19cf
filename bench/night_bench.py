"""The platform night (issue 13 item 10): every organization's scheduled sync fires at 02:00.

    make bench            # or: .venv/bin/python bench/night_bench.py [--organizations N]
                          #        [--records N] [--latency-ms MS] [--workers N]
                          #        [--batches-per-turn N] [--redis URL]

1. A throw-away test database on PostgreSQL (`DATABASE_URL`, as the other benches), the ERP
   sandbox in its own process with a realistic latency (150 ms a request) and Xledger's
   limit switched on (`burst_limit`, 20 requests per 5 s: integrations/clients/limits.py,
   XLEDGER_RATE), Redis as broker and as the workers' shared pacing window
   (`ERP_PACING_URL`), and two `celery worker --pool=solo` processes, as on two machines.
2. N organizations (default 200) with R pending records each (default 500), every one
   scheduled daily at 02:00. At "02:00" every organization's `scheduled_sync` is queued at
   once, as beat's firing does, and the clock runs until every record is synced.

The organizations all post to the sandbox's one Xledger tenant with its one API token:
one credential, so one limit binds the whole night. (With a credential each, as most
organizations have, each one's 20 per 5 s is never reached by 500 records, and the bound
would be the workers' throughput: see `minimum_seconds`.) That makes this the night "at the
limit": the question is how close the engine comes to what the ERP allows, with no 429.

The minimum the limits allow (`minimum_seconds`) is the larger of two bounds, from the
sandbox's configured limit (R requests per W s), its latency L, the worker count K and the
requests the night needs at least, Q: per organization one post per batch of 250
(XledgerConnector.batch_size) and one import check per 500 references (one page of
transactions: XledgerConnector.settle_chunk; the import job may still refuse what the
API took, so a record is synced only once asked):
- the rate bound: R requests go at once, then R per W s: (ceil(Q / R) - 1) x W + L;
- the workers' bound: each worker sends one request at a time: Q x L / K.
`night_vs_limit` = minimum / measured drain (goal >= 0.8). The pacer keeps a margin on the
ERP's window (integrations/clients/limits.py, `_with_margin`: 5 s counted as 5.5 s), so with
one credential the engine's own ceiling is about W / (W + margin) = 0.91 of this minimum.

Also printed: the 429s the sandbox answered (`night_429s`, goal 0); the shortest time in
which the sandbox admitted one request more than the limit allows (`night_shortest_span_s`:
above 5 s means none was refused, and how far above is the room the pacer left: the margin
less the difference between requests' ways to the ERP); the longest any organization waited
from 02:00 for its first batch to be in the ERP (`night_longest_first_batch_s`); and every
request the sandbox counted.

On this 2-core machine the full night (200 x 500 = 100,000 records) takes about four
minutes at the limit; `--organizations` and `--records` scale it down with the same shape.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from datetime import time as clock
from pathlib import Path
from typing import Any

from boot import REPO, start_django

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
# This process queues the tasks: on the bench's Redis, whatever the environment names.
os.environ["CELERY_BROKER_URL"] = REDIS_URL
start_django()

from dataset import test_database  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count, Min  # noqa: E402
from django.utils import timezone  # noqa: E402
from report import emit  # noqa: E402
from sync_bench import add_pending, xledger_organization  # noqa: E402

from accounting_sync.models import FinancialRecord, SyncLog, SyncRun  # noqa: E402
from erp_sandbox.client import SandboxProcess  # noqa: E402
from integrations.clients.limits import XLEDGER_RATE  # noqa: E402
from integrations.clients.xledger import (  # noqa: E402
    NODES_PER_POSTING,
    XledgerConfig,
    XledgerConnector,
)
from integrations.models import Integration, Organization  # noqa: E402

XLEDGER_ENTITY = "Blindeforbundet"
State = FinancialRecord.State


def say(text: str) -> None:
    print(text, flush=True)


# --- the ERP, Redis and the workers ----------------------------------------------------------


def start_sandbox(name: str, latency_ms: int) -> SandboxProcess:
    """The sandbox with its latency and Xledger's published limit on."""
    sandbox = SandboxProcess.start(Path(settings.VAR_DIR) / name)
    sandbox.set_faults(
        latency_ms=latency_ms,
        burst_limit={
            "requests": XLEDGER_RATE.requests,
            "per_seconds": int(XLEDGER_RATE.per_seconds),
        },
    )
    return sandbox


def clean_redis(url: str) -> None:
    """No task left from an earlier run, and no pacing window (it outlives a run by 5.5 s)."""
    import redis

    from config.celery import app
    from integrations.clients.limits import RedisLimiter

    app.control.purge()
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{RedisLimiter.PREFIX}*"):
        client.delete(key)


def database_url() -> str:
    """The URL of the throw-away database, for the worker processes."""
    params = connection.settings_dict
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    host = params.get("HOST") or "127.0.0.1"
    port = f":{params['PORT']}" if params.get("PORT") else ""
    return f"postgres://{params.get('USER') or ''}{password}@{host}{port}/{params['NAME']}"


class Workers:
    """`celery -A config worker --pool=solo` processes, one task at a time each."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, *names: str) -> None:
        for name in names:  # side by side: each takes seconds to import Django
            log = (self.log_dir / f"{name}.log").open("wb")
            self.processes[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "--loglevel=info",
                    "--pool=solo",
                    f"--hostname={name}@%h",
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        for name in names:
            self.wait_ready(name)

    def wait_ready(self, name: str, timeout: float = 90) -> None:
        path = self.log_dir / f"{name}.log"
        deadline = time.monotonic() + timeout
        while b"ready." not in path.read_bytes():
            if self.processes[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {name} did not start:\n{path.read_text()[-3000:]}")
            time.sleep(0.2)

    def kill(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait(timeout=20)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def worker_env(sandbox: SandboxProcess, **more: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": REDIS_URL,
        "ERP_PACING_URL": REDIS_URL,
        "ERP_CA_BUNDLE": str(sandbox.ca_bundle),
        "LOG_LEVEL": "WARNING",
        **more,
    }


@contextmanager
def platform(name: str, latency_ms: int) -> Iterator[SandboxProcess]:
    """A throw-away database, a clean Redis and the sandbox, all gone afterwards."""
    with test_database():
        clean_redis(REDIS_URL)
        sandbox = start_sandbox(f"{name}-sandbox", latency_ms)
        settings.ERP_CA_BUNDLE = str(sandbox.ca_bundle)
        try:
            yield sandbox
        finally:
            sandbox.stop()
            clean_redis(REDIS_URL)


# --- the organizations ------------------------------------------------------------------------


def organizations(sandbox: SandboxProcess, count: int, records: int) -> list[Organization]:
    """`count` organizations on the sandbox's Xledger tenant, each scheduled daily at 02:00
    with `records` pending records approved the day before."""
    created = [
        xledger_organization(
            sandbox,
            f"Lag {n}",
            f"lag-{n}",
            schedule=Integration.Schedule.DAILY,
            schedule_time=clock(2, 0),
        )
        for n in range(count)
    ]
    add_pending(created, records, prefix="night")
    return created


def ledger_counts(sandbox: SandboxProcess) -> dict[str, int]:
    """How many times each reference is in the ERP (a voucher is two lines)."""
    items = sandbox.ledger()["xledger"].get(XLEDGER_ENTITY, [])
    counts: dict[str, int] = {}
    for item in items:
        counts[item["extIdentifier"]] = counts.get(item["extIdentifier"], 0) + 1
    return {reference: lines // 2 for reference, lines in counts.items()}


def exactly_once(sandbox: SandboxProcess) -> tuple[int, int]:
    """(duplicated, missing): references in the ERP more than once, synced records not there."""
    in_erp = ledger_counts(sandbox)
    duplicated = sum(1 for n in in_erp.values() if n > 1)
    synced = FinancialRecord.objects.filter(state=State.SYNCED).only("pk", "organization")
    missing = sum(1 for record in synced if record.reference not in in_erp)
    return duplicated, missing


def minimum_seconds(organizations: int, records: int, latency_s: float, workers: int) -> float:
    """What the limits allow at best (the module's docstring says why these bounds)."""
    settle_chunk = XledgerConfig.page_size // NODES_PER_POSTING  # XledgerConnector.settle_chunk
    per_organization = math.ceil(records / XledgerConnector.batch_size) + math.ceil(
        records / settle_chunk
    )
    needed = organizations * per_organization
    rate_bound = (math.ceil(needed / XLEDGER_RATE.requests) - 1) * XLEDGER_RATE.per_seconds
    return max(rate_bound + latency_s, needed * latency_s / workers)


def wait_until_synced(total: int, started: float, time_limit: float) -> float:
    """Seconds from `started` until every record is synced and no run is going."""
    while True:
        synced = FinancialRecord.objects.filter(state=State.SYNCED).count()
        if synced == total and not SyncRun.objects.filter(status=SyncRun.Status.RUNNING).exists():
            return time.monotonic() - started
        if time.monotonic() - started > time_limit:
            states = dict(FinancialRecord.objects.values_list("state").annotate(n=Count("id")))
            raise RuntimeError(f"not drained in {time_limit:.0f} s: {synced} synced; {states}")
        time.sleep(0.5)


def first_batches(at_0200: datetime) -> list[float]:
    """Per organization, seconds from 02:00 until its first batch was written."""
    firsts = SyncLog.objects.values("organization").annotate(first=Min("created_at"))
    return [(row["first"] - at_0200).total_seconds() for row in firsts]


def _seconds(span: float | None) -> str:
    return "(never that many)" if span is None else f"{span:.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--organizations", type=int, default=200)
    parser.add_argument("--records", type=int, default=500, help="per organization")
    parser.add_argument("--latency-ms", type=int, default=150)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches-per-turn", type=int, default=None, help="default: settings")
    parser.add_argument("--time-limit", type=float, default=1800)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        say(f"The benchmark needs PostgreSQL; DATABASE_URL names {connection.vendor}.")
        return 2
    from accounting_sync import tasks

    turn = args.batches_per_turn or settings.SYNC_BATCHES_PER_TURN
    total = args.organizations * args.records
    latency = args.latency_ms / 1000
    with platform("night", args.latency_ms) as sandbox:
        say(
            f"platform night: {args.organizations} organizations x {args.records} records, "
            f"{args.workers} workers, {turn} batches per turn, latency {args.latency_ms} ms, "
            f"Xledger limit {XLEDGER_RATE.requests} per {XLEDGER_RATE.per_seconds:.0f} s "
            f"(one credential), pacing on Redis {REDIS_URL}"
        )
        made = time.monotonic()
        organizations(sandbox, args.organizations, args.records)
        say(f"  created in {time.monotonic() - made:.1f} s")
        workers = Workers(
            Path(settings.VAR_DIR) / "night-workers",
            worker_env(sandbox, SYNC_BATCHES_PER_TURN=str(turn)),
        )
        try:
            workers.start(*(f"night-{n + 1}" for n in range(args.workers)))
            at_0200, started = timezone.now(), time.monotonic()
            for organization_id in Organization.objects.values_list("pk", flat=True):
                tasks.scheduled_sync.delay(organization_id)  # beat's firing at 02:00
            drained = wait_until_synced(total, started, args.time_limit)
        finally:
            workers.stop()
        requests: dict[str, Any] = sandbox.requests()["xledger"]
        shortest_span = sandbox.burst()["xledger"]["shortest_span_s"]
        duplicated, missing = exactly_once(sandbox)
        waits = first_batches(at_0200)
        runs = SyncRun.objects.count()
    minimum = minimum_seconds(args.organizations, args.records, latency, args.workers)
    say(
        f"  drained in {drained:.1f} s; the limits allow {minimum:.1f} s at best; "
        f"sandbox requests {requests}; {runs} runs; {XLEDGER_RATE.requests + 1} requests "
        f"in no less than {_seconds(shortest_span)}; longest wait for a first batch "
        f"{max(waits):.1f} s (median {sorted(waits)[len(waits) // 2]:.1f} s); "
        f"{duplicated} duplicated, {missing} synced but not in the ERP"
    )
    emit(
        "night",
        {
            "night_organizations": args.organizations,
            "night_records": total,
            "night_batches_per_turn": turn,
            "night_seconds": round(drained, 1),
            "night_minimum_s": round(minimum, 1),
            "night_vs_limit": round(minimum / drained, 3),
            "night_429s": requests.get("rate_limited", 0),
            "night_shortest_span_s": None if shortest_span is None else round(shortest_span, 2),
            "night_requests": sum(requests.values()),
            "night_longest_first_batch_s": round(max(waits), 1),
            "night_duplicates": duplicated,
        },
    )
    return 0 if not duplicated and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
