from __future__ import annotations

from celery import shared_task

from reconciliation import engine


@shared_task(ignore_result=True)
def run_reconciliation(reconciliation_id: int) -> None:
    engine.run(reconciliation_id)


@shared_task(ignore_result=True)
def nightly() -> None:
    from reconciliation.nightly import start_due

    start_due()
