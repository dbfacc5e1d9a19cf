"""Issue 15, "Done when": each class, against the ERP sandbox over HTTPS, through the real
sync engine and the real reading — including a Business Central line finance deleted
before posting, and a record a late Xledger rejection turns from sent to "missing there".
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounting_sync.models import FinancialRecord, SyncLog, SyncRun
from accounting_sync.orchestrator import execute_run
from erp_sandbox.client import SandboxProcess
from integrations.notes import NoteCode
from reconciliation import actions, engine
from reconciliation.models import Item, Reconciliation
from tests.factories import configure, ledger_counts, make_records, states, sync

pytestmark = pytest.mark.usefixtures("trust_erp_sandbox")

State = FinancialRecord.State
Klass = Item.Klass


def reconcile(org) -> Reconciliation:
    yesterday = timezone.localdate() - timedelta(days=1)
    done = engine.run(engine.request(org, yesterday, yesterday).pk)
    assert done is not None and done.status == Reconciliation.Status.DONE, done
    return done


def by_reference(reconciliation: Reconciliation) -> dict[str, Item]:
    """Each record's item; entries no record explains are keyed by their reference too."""
    return {item.reference: item for item in reconciliation.items.order_by("-record_id")}


def the_run_it_started(org) -> SyncRun:
    run = SyncRun.objects.filter(organization=org).latest("pk")
    done = execute_run(run.pk, worker="test")
    assert done is not None
    return done


@pytest.mark.django_db
def test_issue15_business_central_from_journal_to_ledger_with_finance_in_between(
    org, org_admin, erp_sandbox: SandboxProcess
):
    configure(org, erp_sandbox, "business_central")
    deleted, edited, *posted = make_records(org, 5)
    sync(org)
    assert states(org) == {State.SYNCED: 5}

    before = reconcile(org)
    assert {item.klass for item in before.items.all()} == {Klass.NOT_POSTED}  # in UTLEGG

    # Finance, in Business Central: deletes one line before posting, edits another's amount,
    # posts the journal, and keys one entry by hand under a reference of ours.
    erp_sandbox.bc_delete_line(deleted.reference)
    erp_sandbox.bc_edit_line(edited.reference, amount=999)
    erp_sandbox.bc_post_journal()
    (unsent,) = make_records(org, 1, category="honorarium")  # arrived, not sent yet
    day = (timezone.localdate() - timedelta(days=1)).isoformat()
    for reference in (unsent.reference, f"{engine.prefix_of(org.pk)}999999"):
        erp_sandbox.bc_key_entry(
            "ledger_entry",
            reference,
            amount=f"{unsent.amount}",
            accountNumber="5330",  # as the honorarium mapping says
            balancingAccountNumber="2910",
            postingDate=day,
            dimension={"code": "AVDELING", "valueCode": "0200"},
        )

    after = by_reference(reconcile(org))

    assert after[deleted.reference].klass == Klass.MISSING_THERE
    assert after[edited.reference].klass == Klass.DIFFERENT
    assert after[edited.reference].differences == ["amount"]
    assert after[edited.reference].theirs["amount"] == "999.00"
    assert {after[r.reference].klass for r in posted} == {Klass.MATCHED}
    assert after[unsent.reference].klass == Klass.THERE_NOT_HERE
    assert after[f"{engine.prefix_of(org.pk)}999999"].klass == Klass.UNEXPLAINED

    # The one keyed by hand is corrected by the engine's lookup: marked sent with the
    # ERP's answer as evidence, and never sent.
    the_run_it_started(org)
    unsent.refresh_from_db()
    assert unsent.state == State.SYNCED
    evidence = SyncLog.objects.filter(record=unsent).latest("pk")
    assert evidence.note == {"code": NoteCode.FOUND_BY_REFERENCE, "params": {}}
    assert ledger_counts(erp_sandbox, "business_central")[unsent.reference] == 0  # no line
    # The deleted one is sent again by an admin, through the engine (looked up first).
    actions.resend(after[deleted.reference], org_admin)
    the_run_it_started(org)
    deleted.refresh_from_db()
    assert deleted.state == State.SYNCED
    assert ledger_counts(erp_sandbox, "business_central")[deleted.reference] == 1


@pytest.mark.django_db
def test_issue15_xledger_a_late_rejection_turns_a_sent_record_into_missing_there(
    org, erp_sandbox: SandboxProcess
):
    configure(org, erp_sandbox, "xledger")
    erp_sandbox.set_faults(assumptions={"xledger_import": "deferred"})
    rejected, *kept = make_records(org, 3)
    sync(org)
    assert states(org) == {State.AWAITING: 3}  # sent; Xledger's import has not run

    waiting = by_reference(reconcile(org))
    assert {item.klass for item in waiting.values()} == {Klass.NOT_POSTED}

    erp_sandbox.xledger_reject(rejected.reference, message="Account 7130 is blocked")
    erp_sandbox.xledger_import()

    found = by_reference(reconcile(org))
    rejected.refresh_from_db()
    assert rejected.state == State.AWAITING  # the application still believes it was sent
    assert found[rejected.reference].klass == Klass.MISSING_THERE
    assert {found[r.reference].klass for r in kept} == {Klass.MATCHED}
    assert found[kept[0].reference].theirs["amount"] == f"{kept[0].amount:.2f}"
    assert Decimal(found[kept[0].reference].ours["amount"]) == kept[0].amount
