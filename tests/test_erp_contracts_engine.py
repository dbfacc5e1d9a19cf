"""Issue 10 in the sync engine, in-process against the corrected ERP sandbox.

Business Central: a journal line and its cost-center dimension are two calls, so a line
can exist without its dimension; the next attempt adds only the dimension, never a
second line (item 1). Xledger: a voucher its import job may still refuse is "sent,
awaiting import" until Xledger posts or refuses it (item 8). Every unconfirmed fact
flipped in the sandbox keeps the engine safe: never a duplicate, never a false "synced"
(item 10).
"""

from __future__ import annotations

from collections import Counter

import pytest
import requests

from accounting_sync import tasks
from accounting_sync.models import FinancialRecord, SyncLog, SyncRun
from erp_sandbox.client import SandboxProcess
from tests.factories import (
    BC,
    configure,
    ledger_counts,
    make_due,
    make_records,
    states,
    sync,
)

# The connectors trust the sandbox and start with no cached token, in every test here.
pytestmark = pytest.mark.usefixtures("trust_erp_sandbox")

State = FinancialRecord.State


def run_xledger_import(sandbox: SandboxProcess) -> None:
    response = requests.post(
        f"{sandbox.url}/_sandbox/xledger/import", verify=str(sandbox.ca_bundle)
    )
    response.raise_for_status()


def dimensions_per_line(sandbox: SandboxProcess) -> Counter[str]:
    """reference → how many cost-center dimension set lines its journal line has."""
    company = sandbox.ledger()["business_central"].get(BC["company"], {})
    dims = company.get("dimensionSetLines", {})
    return Counter(
        {
            line["externalDocumentNumber"]: len(dims.get(line["id"], []))
            for line in company.get("journalLines", [])
        }
    )


# --- item 1: a Business Central line and its dimension ----------------------------------------


def test_issue10_item1_a_line_left_without_its_dimension_gets_only_the_dimension_next_time(
    org, erp_sandbox
) -> None:
    configure(org, erp_sandbox, "business_central")
    records = make_records(org, 6)
    erp_sandbox.set_faults(dimension_error_rate=1.0)

    first = sync(org)

    assert first.sent == 0 and first.failed == 6
    assert ledger_counts(erp_sandbox, "business_central") == {r.reference: 1 for r in records}
    assert set(dimensions_per_line(erp_sandbox).values()) == {0}
    assert all(r.needs_lookup for r in FinancialRecord.objects.filter(organization=org))

    erp_sandbox.set_faults()
    make_due(org)
    second = sync(org, "retry")

    assert second.sent == 6, second.outcome_text()
    assert states(org) == {State.SYNCED: 6}
    assert ledger_counts(erp_sandbox, "business_central") == {r.reference: 1 for r in records}
    assert dimensions_per_line(erp_sandbox) == {r.reference: 1 for r in records}
    last = SyncLog.objects.filter(record=records[0]).order_by("-attempt_number").first()
    assert last is not None
    assert last.status == SyncLog.Status.SUCCEEDED and last.retry_of_id is not None


def test_issue10_item1_a_record_is_synced_only_when_line_and_dimension_both_exist(
    org, erp_sandbox
) -> None:
    configure(org, erp_sandbox, "business_central")
    records = make_records(org, 40)
    erp_sandbox.set_faults(dimension_error_rate=0.3, seed=11)

    sync(org)

    by_reference = {r.reference: r for r in FinancialRecord.objects.filter(organization=org)}
    dims = dimensions_per_line(erp_sandbox)
    for reference, record in by_reference.items():
        if record.state == State.SYNCED:
            assert dims[reference] == 1, reference
        else:
            assert record.state == State.FAILED and record.needs_lookup
    assert 0 < states(org)[State.SYNCED] < 40
    assert ledger_counts(erp_sandbox, "business_central") == {r.reference: 1 for r in records}


# --- item 8: Xledger's import job ------------------------------------------------------------


def test_issue10_item8_vouchers_wait_for_the_import_and_are_synced_once_it_posts_them(
    org, erp_sandbox
) -> None:
    configure(org, erp_sandbox, "xledger")
    erp_sandbox.set_faults(assumptions={"xledger_import": "deferred"})
    records = make_records(org, 5)

    run = sync(org)

    assert run.sent == 5
    assert states(org) == {State.AWAITING: 5}
    assert not FinancialRecord.objects.filter(organization=org, synced_at__isnull=False).exists()

    run_xledger_import(erp_sandbox)
    make_due(org)
    tasks.sweep()  # starts an import check for the organization
    check = SyncRun.objects.filter(organization=org, trigger=SyncRun.Trigger.CHECK).get()
    from accounting_sync.orchestrator import execute_run

    done = execute_run(check.pk, worker="test")

    assert done is not None and done.status == SyncRun.Status.SUCCEEDED
    assert states(org) == {State.SYNCED: 5}
    assert done.import_posted == 5 and done.message == ""
    assert done.outcome_text() == "0 sent, 5 posted by the accounting system's import."
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in records}


def test_issue10_item8_an_immediate_import_ends_the_run_synced(org, erp_sandbox) -> None:
    configure(org, erp_sandbox, "xledger")
    erp_sandbox.set_faults(assumptions={"xledger_import": "immediate"})
    make_records(org, 4)

    run = sync(org)

    assert (run.sent, run.failed, run.done, run.total) == (4, 0, 4, 4)
    assert states(org) == {State.SYNCED: 4}


def test_issue10_item8_a_late_rejection_fails_the_record_with_xledgers_message(
    org, erp_sandbox
) -> None:
    configure(org, erp_sandbox, "xledger")
    erp_sandbox.set_faults(
        late_rejection_rate=0.5, seed=3, assumptions={"xledger_import": "immediate"}
    )
    make_records(org, 20)

    run = sync(org)

    rejected = FinancialRecord.objects.filter(organization=org, state=State.FAILED)
    assert 0 < rejected.count() < 20
    assert run.failed == rejected.count() and run.sent == 20 - rejected.count()
    assert run.done == run.total == 20
    for record in rejected:
        assert record.next_retry_at is None  # Xledger refused the content: a person acts
        assert record.last_error  # Xledger's own words
        last = SyncLog.objects.filter(record=record).order_by("-attempt_number").first()
        assert last is not None
        assert last.status == SyncLog.Status.FAILED and last.payload == {"settle": record.reference}
    assert states(org)[State.SYNCED] == 20 - rejected.count()


def test_issue10_item8_a_record_awaiting_import_is_never_sent_again(org, erp_sandbox) -> None:
    configure(org, erp_sandbox, "xledger")
    erp_sandbox.set_faults(assumptions={"xledger_import": "deferred"})
    records = make_records(org, 3)
    sync(org)
    make_due(org)

    sync(org, "manual")  # the import has not run: they are asked about, not resent

    assert states(org) == {State.AWAITING: 3}
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in records}


# --- item 10: every unconfirmed fact flipped stays safe -------------------------------------


def synced_but_not_held(organization, sandbox: SandboxProcess, connector: str) -> set[str]:
    held = set(ledger_counts(sandbox, connector))
    synced = FinancialRecord.objects.filter(organization=organization, state=State.SYNCED)
    return {r.reference for r in synced} - held


@pytest.mark.parametrize(
    "assumptions",
    [
        {"xledger_item_errors": "per_item"},
        {"xledger_error_names_input": "none"},
        {"xledger_item_errors": "per_item", "xledger_error_names_input": "none"},
        {"xledger_ext_identifier_filter": False},
    ],
)
def test_issue10_item10_xledger_assumptions_flipped_never_duplicate_nor_falsely_sync(
    org, erp_sandbox, assumptions
) -> None:
    configure(org, erp_sandbox, "xledger")
    records = make_records(org, 60)
    erp_sandbox.set_faults(
        seed=5,
        permanent_error_rate=0.1,
        drop_after_commit_rate=0.2,
        assumptions={"xledger_import": "immediate", **assumptions},
    )

    for _ in range(6):
        sync(org, "retry")
        make_due(org)

    counts = ledger_counts(erp_sandbox)
    assert not {ref: n for ref, n in counts.items() if n > 1}
    assert not synced_but_not_held(org, erp_sandbox, "xledger")
    assert set(counts) <= {r.reference for r in records}


@pytest.mark.slow  # six runs through faults, each case
@pytest.mark.parametrize("assumptions", [{"bc_filter_case": "insensitive"}, {}])
def test_issue10_item10_business_central_assumptions_flipped_never_duplicate_nor_falsely_sync(
    org, erp_sandbox, assumptions
) -> None:
    configure(org, erp_sandbox, "business_central")
    records = make_records(org, 60)
    erp_sandbox.set_faults(
        seed=5,
        permanent_error_rate=0.1,
        drop_after_commit_rate=0.2,
        dimension_error_rate=0.2,
        assumptions=assumptions,
    )

    for _ in range(6):
        sync(org, "retry")
        make_due(org)

    counts = ledger_counts(erp_sandbox, "business_central")
    assert not {ref: n for ref, n in counts.items() if n > 1}
    assert not synced_but_not_held(org, erp_sandbox, "business_central")
    dims = dimensions_per_line(erp_sandbox)
    for record in FinancialRecord.objects.filter(organization=org, state=State.SYNCED):
        assert dims[record.reference] == 1
    assert set(counts) <= {r.reference for r in records}


def posted_vouchers(sandbox: SandboxProcess) -> Counter[str]:
    """reference → vouchers Xledger's import posted (two transaction lines each)."""
    lines = sandbox.ledger()["xledger_transactions"].get("Blindeforbundet", [])
    return Counter({ref: n // 2 for ref, n in Counter(t["extIdentifier"] for t in lines).items()})


def test_issue10_item8_a_record_sent_again_after_a_late_rejection_is_not_refused_by_the_old_one(
    org, erp_sandbox
) -> None:
    configure(org, erp_sandbox, "xledger")
    erp_sandbox.set_faults(late_rejection_rate=1.0, assumptions={"xledger_import": "deferred"})
    [record] = make_records(org, 1)
    sync(org)
    run_xledger_import(erp_sandbox)  # refuses it
    make_due(org)
    sync(org, "retry")
    record.refresh_from_db()
    assert record.state == State.FAILED and record.last_error

    # Finance opens the period; an admin retries. The refused voucher is still listed.
    erp_sandbox.set_faults(assumptions={"xledger_import": "deferred"})
    sync(org, "retry", record_ids=[record.pk])
    make_due(org)
    sync(org, "retry")
    record.refresh_from_db()
    assert record.state == State.AWAITING, record.last_error  # not the old refusal again

    run_xledger_import(erp_sandbox)
    make_due(org)
    sync(org, "retry")
    record.refresh_from_db()
    assert record.state == State.SYNCED
    assert posted_vouchers(erp_sandbox) == {record.reference: 1}
