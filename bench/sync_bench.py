"""How fast the sync engine sends, next to what the ERP sandbox can take at all.

    make bench            # or: .venv/bin/python bench/sync_bench.py [--records N] [--profile]

1. Creates a throw-away test database (Django's test-database utilities: never the
   real one) on PostgreSQL, `DATABASE_URL` or postgres://postgres@127.0.0.1:5432/bench,
   and starts its own ERP sandbox process.
2. Creates N pending records of one organization (Xledger) and times one full sync
   through the real `start_run` + `execute_run`: orchestrator, connector, HTTPS,
   the sandbox in its own process.
3. Sends the same batches (same size, same payloads, built by the same code) with a
   bare loop of `connector.post`, no database: the sandbox's raw capacity.

Prints its figures, and as its last line one JSON object with `sync_records_per_s`,
`raw_records_per_s` and `sync_vs_raw`.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench")
os.environ.setdefault("VAR_DIR", str(REPO / "var" / "bench"))
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, reset_queries  # noqa: E402
from django.test.utils import setup_test_environment, teardown_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402
from report import emit  # noqa: E402

from accounting_sync.models import FinancialRecord, SyncRun  # noqa: E402
from accounting_sync.orchestrator import Orchestrator, chunks, execute_run, start_run  # noqa: E402
from erp_sandbox.client import SandboxProcess  # noqa: E402
from integrations.clients.base import Outcome, Posting  # noqa: E402
from integrations.models import CategoryMapping, Integration, Organization  # noqa: E402

XLEDGER_TOKEN = "xl-demo-blindeforbundet-token"


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


def raw_send(integration: Integration, postings: list[Posting]) -> int:
    connector = integration.build_connector()
    sent = 0
    try:
        for batch in chunks(postings, connector.batch_size):
            results = connector.post(batch)
            sent += sum(1 for r in results if r.outcome == Outcome.SUCCEEDED)
    finally:
        connector.close()
    return sent


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--profile", action="store_true", help="cProfile the sync phase")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        say(f"The benchmark needs PostgreSQL; DATABASE_URL names {connection.vendor}.")
        return 2

    with sandboxed_test_database() as sandbox:
        say(f"{args.records} records, Xledger, database {connection.settings_dict['NAME']}")
        organization, _ = timed("create records", lambda: set_up(sandbox, args.records))
        integration = Integration.objects.get(organization=organization)
        postings = postings_for(organization)

        # Where the run's time goes: the calls to the ERP, and everything else. Besides
        # posting, the run asks Xledger what its import job made of the vouchers (settle),
        # which the bare loop does not.
        connector_class = type(integration.build_connector())
        in_erp = {"post": 0.0, "settle": 0.0}
        originals = {name: getattr(connector_class, name) for name in in_erp}

        def clocked(name: str):
            def call(self, *args):
                started = time.perf_counter()
                try:
                    return originals[name](self, *args)
                finally:
                    in_erp[name] += time.perf_counter() - started

            return call

        for name in in_erp:
            setattr(connector_class, name, clocked(name))
        settings.DEBUG = True  # count the queries of the run
        reset_queries()
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        run, sync_s = timed("sync (start_run + execute_run)", lambda: sync_once(organization))
        if profiler:
            profiler.disable()
        queries = len(connection.queries)
        settings.DEBUG = False
        for name, original in originals.items():
            setattr(connector_class, name, original)
        assert run.sent == args.records, f"the run sent {run.sent}: {run.outcome_text()}"
        batches = -(-args.records // 250)
        say(
            f"    of which connector.post {in_erp['post']:.2f} s, connector.settle "
            f"{in_erp['settle']:.2f} s, the rest (database, bookkeeping) "
            f"{sync_s - sum(in_erp.values()):.2f} s; {queries} queries "
            f"({queries / batches:.1f} per batch of 250)"
        )
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
            say(out.getvalue())

        sandbox.reset()  # an empty ledger again: the raw loop stores the same amount
        sent, raw_s = timed("raw connector.post loop", lambda: raw_send(integration, postings))
        assert sent == args.records, f"the raw loop sent {sent}"

    sync_rate = args.records / sync_s
    raw_rate = args.records / raw_s
    say(f"sync: {sync_rate:.0f} records/s; raw: {raw_rate:.0f} records/s")
    emit(
        "sync",
        {
            "records": args.records,
            "sync_seconds": round(sync_s, 3),
            "raw_seconds": round(raw_s, 3),
            "sync_records_per_s": round(sync_rate, 1),
            "raw_records_per_s": round(raw_rate, 1),
            "sync_vs_raw": round(sync_rate / raw_rate, 3),
            "queries_per_batch": round(queries / batches, 1),
            "erp_post_seconds": round(in_erp["post"], 3),
            "erp_settle_seconds": round(in_erp["settle"], 3),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
