"""How fast the sync engine sends, next to what the ERP sandbox can take at all.

    make bench            # or: .venv/bin/python bench/sync_bench.py [--records N] [--profile]

1. Creates a throw-away test database (Django's test-database utilities: never the
   real one) on PostgreSQL, `DATABASE_URL` or postgres://postgres@127.0.0.1:5432/bench,
   and starts its own ERP sandbox process.
2. Creates N pending records of one organization (Xledger) and times one full sync
   through the real `start_run` + `execute_run`: orchestrator, connector, HTTPS,
   the sandbox in its own process.
3. Sends the same batches (same size, same payloads, built by the same code) with a
   bare loop of `connector.post`, no database: the sandbox's raw capacity. Then asks,
   as bare, what Xledger's import made of them (`connector.settle`), which the run also
   does and the bare posts do not.

4. Does it all again with fewer records (`--latency-records`) and 150 ms added to each
   ERP request, as from Norway to a cloud ERP: the figures then end in `_at_150ms`. At
   the sandbox's own speed the ERP answers a batch in about the time the run needs to
   write one down, on a machine whose two cores also run the sandbox and PostgreSQL;
   at a real ERP's distance the run's own work hides behind the ERP's answer.

Prints its figures, and as its last line one JSON object with `sync_records_per_s`,
`raw_records_per_s` and `sync_vs_raw` (the run against the bare posts), and
`sync_vs_same_calls` (against the bare posts and import checks: the engine's own cost).
`--profile` shows where the run's own thread spends its time; `--queries` the statements
that took longest.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from boot import start_django

start_django()

from django.conf import settings  # noqa: E402
from django.db import connection, reset_queries  # noqa: E402
from django.test.utils import setup_test_environment, teardown_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402
from report import emit  # noqa: E402

from accounting_sync.models import FinancialRecord, SyncRun  # noqa: E402
from accounting_sync.orchestrator import Orchestrator, chunks, execute_run, start_run  # noqa: E402
from erp_sandbox.client import SandboxProcess  # noqa: E402
from integrations.clients.base import Outcome, Posting, Settlement  # noqa: E402
from integrations.models import CategoryMapping, Integration, Organization  # noqa: E402

XLEDGER_TOKEN = "xl-demo-blindeforbundet-token"
# As the platform night's (bench/night_bench.py): a request to a cloud ERP from Norway.
REALISTIC_LATENCY_MS = 150


def say(text: str) -> None:
    print(text, flush=True)


def timed(label: str, action: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = action()
    elapsed = time.perf_counter() - started
    say(f"  {label}: {elapsed:.2f} s")
    return result, elapsed


def xledger_organization(
    sandbox: SandboxProcess, name: str, slug: str, **settings_: Any
) -> Organization:
    """An organization enabled on the sandbox's Xledger tenant, travel mapped."""
    organization = Organization.objects.create(name=name, slug=slug)
    integration = Integration(
        organization=organization,
        connector="xledger",
        base_url=f"{sandbox.url}/graphql",
        xledger_auth="token",
        cost_center_object=1,
        cost_center_kind_db_id=101,
        payable_account="2910",
        connection_verified_at=timezone.now(),
        enabled=True,
        sync_after_approval=False,
        **settings_,
    )
    integration.set_credentials({"api_token": XLEDGER_TOKEN})
    integration.save()
    CategoryMapping.objects.create(
        integration=integration, category="travel", account_code="7130", cost_center_code="300"
    )
    return organization


def add_pending(organizations: list[Organization], count: int, prefix: str = "bench") -> None:
    """`count` pending travel records for each organization, approved the day before."""
    approved = timezone.now() - timedelta(days=1)
    FinancialRecord.objects.bulk_create(
        (
            FinancialRecord(
                organization=organization,
                source_id=f"{prefix}-{n}",
                kind="reimbursement",
                category="travel",
                amount=Decimal("100.25") + Decimal(n % 900),
                currency="NOK",
                expense_date=date.today() - timedelta(days=2),
                approved_at=approved,
                claimant_reference=f"V-{1000 + n % 50}",
                claimant_name="Kari Nordmann",
                description=f"Train Oslo-Hamar {n}",
            )
            for organization in organizations
            for n in range(count)
        ),
        batch_size=2000,
    )


def set_up(sandbox: SandboxProcess, count: int) -> Organization:
    organization = xledger_organization(sandbox, "Blindeforbundet", "blindeforbundet")
    add_pending([organization], count)
    return organization


def postings_for(organization: Organization) -> list[Posting]:
    """The postings the orchestrator sends, built by its own code, held in memory."""
    run = SyncRun(organization=organization, connector="xledger", trigger="manual")
    builder = Orchestrator(run)
    builder.mappings = {m.category: m for m in builder.integration.mappings.all()}
    records = FinancialRecord.objects.filter(organization=organization).order_by("pk")
    return [builder._posting(record) for record in records]


def sync_once(organization: Organization) -> SyncRun:
    run = start_run(organization, SyncRun.Trigger.MANUAL)
    finished = execute_run(run.pk, worker="bench")
    assert finished is not None
    return finished


def raw_send(integration: Integration, postings: list[Posting]) -> dict[str, str]:
    """The postings' ERP ids by reference, for those the ERP took."""
    connector = integration.build_connector()
    taken: dict[str, str] = {}
    try:
        for batch in chunks(postings, connector.batch_size):
            for result in connector.post(batch):
                if result.outcome == Outcome.SUCCEEDED:
                    taken[result.reference] = result.erp_id
    finally:
        connector.close()
    return taken


def raw_settle(integration: Integration, taken: dict[str, str]) -> int:
    """How many of them Xledger's import posted, asked in one call as the run does."""
    connector = integration.build_connector()
    try:
        answers = connector.settle(taken)
    finally:
        connector.close()
    return sum(1 for answer in answers.values() if answer.state == Settlement.POSTED)


def busy_cores() -> Callable[[], float | None]:
    """Start counting how many of the machine's cores are busy (Linux's /proc/stat); the
    answer is their average over the time until it is called. The sandbox and PostgreSQL
    share this machine's cores with the run: when they are all busy, the run's speed is
    the machine's, not the engine's."""

    def sample() -> tuple[int, int] | None:
        try:
            fields = [int(n) for n in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + fields[4]  # idle and iowait
        return sum(fields) - idle, sum(fields)

    first, cores = sample(), os.cpu_count() or 1

    def busy() -> float | None:
        last = sample()
        if first is None or last is None or last[1] == first[1]:
            return None
        return round(cores * (last[0] - first[0]) / (last[1] - first[1]), 2)

    return busy


def slowest_statements(queries: list[dict[str, str]], count: int = 15) -> None:
    """The statements the run spent longest in, grouped by their first 90 characters."""
    spent: dict[str, list[float]] = {}
    for query in queries:
        totals = spent.setdefault(query["sql"][:90], [0, 0.0])
        totals[0] += 1
        totals[1] += float(query["time"])
    for sql, (times, seconds) in sorted(spent.items(), key=lambda kv: -kv[1][1])[:count]:
        say(f"    {seconds:6.2f} s {int(times):5d}x {sql}")


@contextmanager
def sandboxed_test_database() -> Iterator[SandboxProcess]:
    """A throw-away test database and an ERP sandbox process, both gone afterwards.

    Unpaced: a run paced to Xledger's ~20 requests per 5 s would measure that limit instead
    (and a bare loop is not paced). Pacing has its own tests (tests/test_pacing.py).
    """
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    sandbox = SandboxProcess.start(Path(settings.VAR_DIR) / "bench-sandbox")
    settings.ERP_CA_BUNDLE = str(sandbox.ca_bundle)
    settings.ERP_PACING_URL = "off"
    try:
        yield sandbox
    finally:
        sandbox.stop()
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


class Clocked:
    """Where the run's time goes: the calls to the ERP, and everything else.

    The posts go on the run's lane (accounting_sync/lane.py) while its own thread writes
    the batch before: what counts is how long that thread waited for them (`_send`). So do
    most of its questions about what Xledger's import made of the vouchers (settle); the
    thread waits for their answers in `_answers`.
    """

    def __init__(self, connector_class: type) -> None:
        self.seconds = {"post": 0.0, "settle": 0.0, "waited": 0.0, "heard": 0.0}
        self.methods = [
            (connector_class, "post", "post"),
            (connector_class, "settle", "settle"),
            (Orchestrator, "_send", "waited"),
            (Orchestrator, "_answers", "heard"),
        ]
        self.originals = {key: getattr(owner, name) for owner, name, key in self.methods}

    def __enter__(self) -> Clocked:
        for owner, name, key in self.methods:
            setattr(owner, name, self._clocked(key))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, key in self.methods:
            setattr(owner, name, self.originals[key])

    def _clocked(self, key: str) -> Callable[..., Any]:
        def call(owner: Any, *args: Any) -> Any:
            started = time.perf_counter()
            try:
                return self.originals[key](owner, *args)
            finally:
                self.seconds[key] += time.perf_counter() - started

        return call


def measure(
    sandbox: SandboxProcess, slug: str, count: int, latency_ms: int, args: argparse.Namespace
) -> dict[str, object]:
    """One organization's sync of `count` records, then the bare loop, at one latency."""
    sandbox.reset()
    sandbox.set_faults(latency_ms=latency_ms)
    say(f"{count} records, Xledger, {latency_ms} ms added to each ERP request")
    organization = xledger_organization(sandbox, slug.title(), slug)
    timed("create records", lambda: add_pending([organization], count))
    integration = Integration.objects.get(organization=organization)
    postings = postings_for(organization)

    with Clocked(type(integration.build_connector())) as clock:
        settings.DEBUG = True  # count the queries of the run
        reset_queries()
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        busy = busy_cores()
        run, sync_s = timed("sync (start_run + execute_run)", lambda: sync_once(organization))
        cores_busy = busy()
        if profiler:
            profiler.disable()
        queries = len(connection.queries)
        if args.queries:
            slowest_statements(connection.queries)
        settings.DEBUG = False
    assert run.sent == count, f"the run sent {run.sent}: {run.outcome_text()}"
    batches = -(-count // 250)
    erp = clock.seconds
    own = sync_s - erp["waited"] - erp["heard"]
    say(
        f"    connector.post {erp['post']:.2f} s on the lane, of which the run waited "
        f"{erp['waited']:.2f} s; connector.settle {erp['settle']:.2f} s, of which the run "
        f"waited {erp['heard']:.2f} s; the run's own work "
        f"(database, bookkeeping) {own:.2f} s; {queries} queries "
        f"({queries / batches:.1f} per batch of 250); cores busy {cores_busy} "
        f"of {os.cpu_count()}"
    )
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
        say(out.getvalue())

    sandbox.reset()  # an empty ledger again: the raw loop stores the same amount
    sandbox.set_faults(latency_ms=latency_ms)
    taken, raw_s = timed("raw connector.post loop", lambda: raw_send(integration, postings))
    assert len(taken) == count, f"the raw loop sent {len(taken)}"
    posted, settle_s = timed("raw connector.settle", lambda: raw_settle(integration, taken))
    assert posted == count, f"the import posted {posted}"
    say(
        f"  sync: {count / sync_s:.0f} records/s; raw posts: {count / raw_s:.0f} records/s; "
        f"raw posts and import checks: {count / (raw_s + settle_s):.0f} records/s"
    )
    return {
        "records": count,
        "sync_seconds": round(sync_s, 3),
        "raw_seconds": round(raw_s, 3),
        "sync_records_per_s": round(count / sync_s, 1),
        "raw_records_per_s": round(count / raw_s, 1),
        "sync_vs_raw": round(raw_s / sync_s, 3),
        "sync_vs_same_calls": round((raw_s + settle_s) / sync_s, 3),
        "queries_per_batch": round(queries / batches, 1),
        "erp_post_seconds": round(erp["post"], 3),
        "erp_post_waited_seconds": round(erp["waited"], 3),
        "erp_settle_seconds": round(erp["settle"], 3),
        "erp_settle_waited_seconds": round(erp["heard"], 3),
        "raw_settle_seconds": round(settle_s, 3),
        "sync_cores_busy": cores_busy,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument(
        "--latency-records",
        type=int,
        default=2_500,
        help=f"records of the second measurement, at {REALISTIC_LATENCY_MS} ms (0: none)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the sync phase")
    parser.add_argument("--queries", action="store_true", help="the slowest statements")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        say(f"The benchmark needs PostgreSQL; DATABASE_URL names {connection.vendor}.")
        return 2

    with sandboxed_test_database() as sandbox:
        say(f"database {connection.settings_dict['NAME']}")
        figures = measure(sandbox, "blindeforbundet", args.records, 0, args)
        if args.latency_records:
            at_latency = measure(sandbox, "hlf", args.latency_records, REALISTIC_LATENCY_MS, args)
            suffix = f"_at_{REALISTIC_LATENCY_MS}ms"
            figures.update({f"{key}{suffix}": value for key, value in at_latency.items()})
    emit("sync", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
