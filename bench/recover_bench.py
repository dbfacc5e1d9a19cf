"""How long until a killed worker's records are all in the ERP (issue 13, "Done when":
`recover_after_kill_s`).

    make bench            # or: .venv/bin/python bench/recover_bench.py [--records N]
                          #        [--stale S] [--sweep-every S] [--latency-ms MS]

The platform of bench/night_bench.py (a throw-away PostgreSQL database, Redis as broker
and pacing window, the ERP sandbox with 150 ms latency and Xledger's limit on), one
organization with N pending records (default 3,000), and one worker process. A manual run
starts; once it is about a third through, the worker is SIGKILLed mid-batch. Another
worker is started (the other machine, or the orchestrator restarting one), and the sweep
runs every `--sweep-every` seconds as beat would (here called in this process).

`recover_after_kill_s`: seconds from the kill until every record is synced, each once in
the ERP's ledger (checked: no duplicate, none missing). With the production defaults used
here (SYNC_STALE_AFTER_SECONDS 45, SYNC_SWEEP_SECONDS 30) most of it is the wait for the
dead run to be recognised: the stale limit, plus up to one sweep period.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from night_bench import (
    REDIS_URL,
    State,
    Workers,
    connection,
    exactly_once,
    organizations,
    platform,
    say,
    settings,
    worker_env,
)
from report import emit

from accounting_sync.models import FinancialRecord, SyncRun
from accounting_sync.orchestrator import start_run


def runs_since(start) -> list[str]:
    """Each run of the bench: trigger, status, when it started and ended, its counts."""
    lines = []
    for run in SyncRun.objects.order_by("pk"):
        began = (run.started_at - start).total_seconds()
        ended = (run.finished_at - start).total_seconds() if run.finished_at else None
        lines.append(
            f"    run {run.pk} {run.trigger} {run.status} {run.error_class or ''} "
            f"{began:.1f}-{ended or 0:.1f} s: {run.sent} sent, {run.failed} failed of "
            f"{run.total}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--latency-ms", type=int, default=150)
    parser.add_argument("--stale", type=int, default=45, help="SYNC_STALE_AFTER_SECONDS")
    parser.add_argument("--sweep-every", type=float, default=30, help="SYNC_SWEEP_SECONDS")
    parser.add_argument("--time-limit", type=float, default=600)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        say(f"The benchmark needs PostgreSQL; DATABASE_URL names {connection.vendor}.")
        return 2
    from accounting_sync import tasks

    settings.SYNC_STALE_AFTER_SECONDS = args.stale  # the sweep runs in this process
    with platform("recover", args.latency_ms) as sandbox:
        say(
            f"worker killed mid-run: {args.records} records, latency {args.latency_ms} ms, "
            f"stale limit {args.stale} s, sweep every {args.sweep_every:.0f} s, "
            f"Redis {REDIS_URL}"
        )
        [organization] = organizations(sandbox, 1, args.records)
        workers = Workers(
            Path(settings.VAR_DIR) / "recover-workers",
            worker_env(sandbox, SYNC_STALE_AFTER_SECONDS=str(args.stale)),
        )
        try:
            workers.start("victim")
            run = start_run(organization, SyncRun.Trigger.MANUAL)
            tasks.run_sync.delay(run.pk)
            deadline = time.monotonic() + 120
            # Past a third, so in a turn (a turn ends after 1,000 of them), not between two.
            while SyncRun.objects.get(pk=run.pk).done <= args.records // 3:
                if time.monotonic() > deadline:
                    raise RuntimeError("the run did not get a third through in 120 s")
                time.sleep(0.05)
            time.sleep(0.1)  # into the next batch's request
            workers.kill("victim")
            killed = time.monotonic()
            done_at_kill = SyncRun.objects.get(pk=run.pk).done
            say(f"  killed with {done_at_kill} of {args.records} written")
            workers.start("survivor")
            next_sweep = time.monotonic()
            closed_after = None
            while True:
                if time.monotonic() >= next_sweep:
                    tasks.sweep()
                    next_sweep += args.sweep_every
                if closed_after is None and not SyncRun.objects.get(pk=run.pk).is_running:
                    closed_after = time.monotonic() - killed
                synced = FinancialRecord.objects.filter(state=State.SYNCED).count()
                going = SyncRun.objects.filter(status=SyncRun.Status.RUNNING).exists()
                if synced == args.records and not going:
                    recovered = time.monotonic() - killed
                    break
                if time.monotonic() - killed > args.time_limit:
                    raise RuntimeError(f"{synced} of {args.records} synced after the time limit")
                time.sleep(0.2)
        finally:
            workers.stop()
        duplicated, missing = exactly_once(sandbox)
        requests = sandbox.requests()["xledger"]
        for line in runs_since(run.started_at):
            say(line)
    say(
        f"  the dead run closed {closed_after:.1f} s after the kill; every record synced "
        f"{recovered:.1f} s after it; {duplicated} duplicated, {missing} synced but not in "
        f"the ERP; sandbox requests {requests}"
    )
    emit(
        "recover",
        {
            "recover_records": args.records,
            "recover_stale_s": args.stale,
            "recover_sweep_s": args.sweep_every,
            "recover_closed_after_s": round(closed_after or 0.0, 1),
            "recover_after_kill_s": round(recovered, 1),
            "recover_duplicates": duplicated,
        },
    )
    return 0 if not duplicated and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
