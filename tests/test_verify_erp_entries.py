"""Issue 15: `manage.py verify_erp` checks what reconciliation (`Connector.entries`) reads.

Against the ERP sandbox over HTTPS, as tests/test_verify_erp.py: the sandbox's defaults
answer confirmed; its assumption switch xledger_posted_date_filter turned off answers
refuted, with Xledger's words and what its schema offers instead.
"""

from __future__ import annotations

import pytest

from erp_sandbox.client import SandboxProcess
from integrations.clients import xledger as xl
from organizations.models import Organization
from tests.factories import configure, make_records, sync
from tests.test_verify_erp import assume, bc_company, line, verdict, verify_erp, xledger_items

pytestmark = pytest.mark.usefixtures("trust_erp_sandbox")

XL_FIELDS = {
    "transactions": "transactions fields read by entries",
    "glImportItems": "glImportItems fields read by entries",
}
XL_DATES = {
    "transactions": "transactions postedDate_gte postedDate_lte",
    "glImportItems": "glImportItems postedDate_gte postedDate_lte",
}
BC_LINES = "journalLines startswith(documentNumber) and postingDate ge/le"
BC_LEDGER = "generalLedgerEntries startswith(documentNumber) and postingDate ge/le"
BC_EXPAND = "$expand=dimensionSetLines on journalLines and generalLedgerEntries"


def xledger_synced(org: Organization, sandbox: SandboxProcess) -> None:
    """Two vouchers posted, their import items still listed: both fields hold rows."""
    configure(org, sandbox, "xledger")
    assume(sandbox, xledger_imported_items="kept")
    make_records(org, 2)
    sync(org)


# --- Xledger -----------------------------------------------------------------------------------


def test_issue15_verify_xledger_an_empty_entity_confirms_what_entries_reads(org, erp_sandbox):
    configure(org, erp_sandbox, "xledger")

    code, out, _err = verify_erp(org.slug)

    for field_name in ("transactions", "glImportItems"):
        assert verdict(out, XL_FIELDS[field_name]) == "confirmed", out
        assert f"the entity has no {field_name}" in line(out, XL_FIELDS[field_name])
        dates = line(out, XL_DATES[field_name])
        assert verdict(out, XL_DATES[field_name]) == "confirmed", dates
        # Accepted, but with nothing in the ledger only the far-past half is shown.
        assert "1900-01-01..1900-12-31 answered 0" in dates and "is not shown" in dates
    assert code == 0


def test_issue15_verify_xledger_the_posted_date_filter_is_accepted_and_applied(org, erp_sandbox):
    xledger_synced(org, erp_sandbox)

    code, out, _err = verify_erp(org.slug)

    fields = line(out, XL_FIELDS["transactions"])
    assert verdict(out, XL_FIELDS["transactions"]) == "confirmed"
    # The values read, e.g. our reference and the account's code.
    assert f"extIdentifier='VH-{org.pk}-" in fields and "account='" in fields
    for field_name in ("transactions", "glImportItems"):
        dates = line(out, XL_DATES[field_name])
        assert verdict(out, XL_DATES[field_name]) == "confirmed", dates
        assert "accepted and applied" in dates and "all posted that day" in dates
    assert code == 0


def test_issue15_verify_xledger_without_the_posted_date_filter_both_are_refuted(org, erp_sandbox):
    xledger_synced(org, erp_sandbox)
    before = xledger_items(erp_sandbox)
    # A new set of assumptions replaces the last: the items stay listed.
    assume(erp_sandbox, xledger_imported_items="kept", xledger_posted_date_filter=False)

    code, out, _err = verify_erp(org.slug)

    for field_name in ("transactions", "glImportItems"):
        dates = line(out, XL_DATES[field_name])
        assert verdict(out, XL_DATES[field_name]) == "refuted", dates
        assert "postedDate_gte" in dates  # Xledger's own words
        # What the schema offers instead, and that entries still reads (everything).
        assert f"introspection: {field_name}(" in dates and "extIdentifier_in" in dates
        assert f"entries reads every {field_name} instead" in dates
        # The selection itself is not in doubt: it was asked without a filter.
        assert verdict(out, XL_FIELDS[field_name]) == "confirmed"
        assert f"read 4 {field_name}" in line(out, XL_FIELDS[field_name])  # 2 vouchers, 4 lines
    assert code == 1
    assert xledger_items(erp_sandbox) == before, "read-only checks wrote to the ledger"


def test_issue15_verify_xledger_a_refused_selection_names_the_real_fields(
    org, erp_sandbox, monkeypatch
):
    configure(org, erp_sandbox, "xledger")
    # A connector selecting what the public client reads (the doubt in docs/erp/xledger.md)
    # meets a schema without it: the sandbox's, as the live one would meet ours.
    monkeypatch.setattr(
        xl.XledgerConnector,
        "_entry_fields",
        lambda self: "dbId extIdentifier accountDbId header { postedDate }",
    )

    code, out, _err = verify_erp(org.slug)

    fields = line(out, XL_FIELDS["transactions"])
    assert verdict(out, XL_FIELDS["transactions"]) == "refuted"
    assert "accountDbId" in fields  # Xledger's words
    assert "introspection: Transaction has dbId, trRegNumber, extIdentifier" in fields
    assert "not among them: accountDbId, header" in fields
    assert "not among them: accountDbId, header" in line(out, XL_FIELDS["glImportItems"])
    assert "introspection: GLImportItem has" in line(out, XL_FIELDS["glImportItems"])
    # The date filter is still settled, with dbId alone.
    dates = line(out, XL_DATES["transactions"])
    assert verdict(out, XL_DATES["transactions"]) == "confirmed"
    assert "the connector's fields were not read" in dates
    assert code == 1


# --- Business Central -------------------------------------------------------------------------


def test_issue15_verify_bc_an_empty_company_confirms_what_entries_reads(other_org, erp_sandbox):
    configure(other_org, erp_sandbox, "business_central")

    code, out, _err = verify_erp(other_org.slug)

    assert verdict(out, BC_LINES) == "confirmed"
    assert "there are no journal lines to show it is applied" in line(out, BC_LINES)
    assert verdict(out, BC_LEDGER) == "confirmed"
    assert "there are no G/L entries" in line(out, BC_LEDGER)
    assert verdict(out, BC_EXPAND) == "confirmed"
    assert "journalLines: accepted, no rows" in line(out, BC_EXPAND)
    assert code == 0


def test_issue15_verify_bc_the_filter_and_expand_are_accepted_and_applied(other_org, erp_sandbox):
    configure(other_org, erp_sandbox, "business_central")
    make_records(other_org, 2)
    sync(other_org)
    erp_sandbox.bc_post_journal()
    make_records(other_org, 1, start=2)
    sync(other_org)
    company = bc_company(erp_sandbox)
    lines_before, ledger_before = company["journalLines"], company["generalLedgerEntries"]
    assert len(lines_before) == 1 and len(ledger_before) == 4

    code, out, _err = verify_erp(other_org.slug)

    for name, rows in ((BC_LINES, "1 row(s)"), (BC_LEDGER, "2 row(s)")):
        said = line(out, name)
        assert verdict(out, name) == "confirmed", said
        # A stored row's own document number and day find it (a line; a document's two
        # G/L entries); a prefix nobody has and a far-past period find nothing.
        assert f"accepted and applied: startswith 'VH-{other_org.pk}-" in said
        assert f"answered {rows}" in said
        assert "-ABSENT on that day and 1900-01-01..1900-12-31 answered 0" in said
    expand = line(out, BC_EXPAND)
    assert verdict(out, BC_EXPAND) == "confirmed"
    assert "journalLines: 1 row(s) with dimensionSetLines" in expand
    assert "generalLedgerEntries: 4 row(s)" in expand and "AVDELING=" in expand
    assert code == 0
    company = bc_company(erp_sandbox)
    assert company["journalLines"] == lines_before, "read-only checks changed the journal"
    assert company["generalLedgerEntries"] == ledger_before
