"""`make bench` builds its data with COPY into the models' tables: a column added to a model
without a database default breaks it (as `lookup_failures` once did, unnoticed until a
bench run). A small build here keeps the dataset in step with the models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from accounting_sync.models import FinancialRecord, SyncLog, SyncRun
from core.chain import verify_chain
from organizations.models import Organization

# As the bench scripts import it: bench/ is a folder of scripts, not a package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import dataset


@pytest.mark.postgres_only(reason="the bench writes with PostgreSQL COPY")
@pytest.mark.django_db
def test_the_bench_dataset_builds_into_the_current_tables() -> None:
    built = dataset.build(organizations=5, sync_logs=2_000, seed=6)

    assert Organization.objects.count() == 5
    assert SyncLog.objects.count() == built["counts"]["sync_logs"] > 0
    assert SyncRun.objects.count() == built["counts"]["sync_runs"] > 0
    assert FinancialRecord.objects.count() == built["counts"]["financial_records"] > 0
    run = SyncRun.objects.exclude(status=SyncRun.Status.RUNNING).first()
    assert run is not None and run.outcome_text()  # worded from codes, like a real run
    # The chains it writes are valid: verify_audit_chain passes on the bench's data.
    organization = Organization.objects.first()
    assert organization is not None
    checked, broken = verify_chain(SyncLog, organization.pk)
    assert checked > 0 and broken is None
