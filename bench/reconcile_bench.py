"""How fast one organization's records are reconciled, and what it costs the ERP (issue 15).

    make bench            # or: .venv/bin/python bench/reconcile_bench.py [--records N]

1. Creates a throw-away test database on PostgreSQL (`DATABASE_URL` or
   postgres://postgres@127.0.0.1:5432/bench) and starts its own ERP sandbox (Xledger).
2. Creates N records of one organization (sync_bench.py's set-up), posts exactly what the
   engine would send with a bare `connector.post` loop, and marks them synced: the ERP and
   the application agree, as after a night of syncs.
3. Times one reconciliation of the period through the real reading (`engine.run`: the
   records, `Connector.entries` over HTTPS, the classification, the items written), and
   counts the ERP requests it needed against the minimum Xledger's page size allows: the
   transaction lines (two per voucher) at ENTRIES_PAGE_SIZE a query, plus one query for
   the import items (none wait).

Prints its figures, and as its last line one JSON object with `reconcile_records_per_s`,
`reconcile_erp_requests` and `reconcile_min_requests`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from report import emit
from sync_bench import (
    connection,
    postings_for,
    raw_send,
    sandboxed_test_database,
    say,
    set_up,
    timed,
    timezone,
)

from accounting_sync.models import FinancialRecord
from erp_sandbox.client import SandboxProcess
from integrations.clients import xledger
from integrations.models import Integration
from reconciliation import engine
from reconciliation.models import Reconciliation


def erp_requests(sandbox: SandboxProcess) -> int:
    return sum(sandbox.requests()["xledger"].values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        say(f"The benchmark needs PostgreSQL; DATABASE_URL names {connection.vendor}.")
        return 2

    with sandboxed_test_database() as sandbox:
        say(f"{args.records} records, Xledger, database {connection.settings_dict['NAME']}")
        organization, _ = timed("create records", lambda: set_up(sandbox, args.records))
        integration = Integration.objects.get(organization=organization)
        postings = postings_for(organization)
        sent, _ = timed("post them to the sandbox", lambda: raw_send(integration, postings))
        assert len(sent) == args.records, f"posted {len(sent)} of {args.records}"
        FinancialRecord.objects.filter(organization=organization).update(
            state=FinancialRecord.State.SYNCED, synced_at=timezone.now()
        )
        yesterday = timezone.localdate() - timedelta(days=1)
        # Queued directly: engine.request would hand it to a worker after the commit.
        queued = Reconciliation.objects.create(
            organization=organization,
            connector="xledger",
            period_start=yesterday,
            period_end=yesterday,
            trigger=Reconciliation.Trigger.MANUAL,
        )
        before = erp_requests(sandbox)
        done, seconds = timed("reconcile (engine.run)", lambda: engine.run(queued.pk))
        requests = erp_requests(sandbox) - before
        assert done is not None and done.status == Reconciliation.Status.DONE, done
        matched = done.counts.get("matched", 0)
        assert matched == args.records, done.counts

    lines = 2 * args.records
    minimum = -(-lines // xledger.ENTRIES_PAGE_SIZE) + 1
    rate = args.records / seconds
    say(
        f"reconcile: {rate:.0f} records/s; {requests} ERP requests, the page size "
        f"({xledger.ENTRIES_PAGE_SIZE} lines) allows {minimum}; all {matched} matched"
    )
    emit(
        "reconcile",
        {
            "reconcile_records": args.records,
            "reconcile_seconds": round(seconds, 3),
            "reconcile_records_per_s": round(rate, 1),
            "reconcile_erp_requests": requests,
            "reconcile_min_requests": minimum,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
