"""Access matrix entries for the reconciliation pages (issue 15 items 3 and 5).

The matrix's organization has no reconciliation: what each role may do with one is in
tests/test_reconciliation_pages.py (test_issue15_item3_who_may_see_run_and_export).
"""

from __future__ import annotations

from tests.matrix import Route, allowed_for

ROUTES: list[Route] = [
    Route("reconciliation", "GET", allowed_for(200, 200, 200), org_scoped=True),
    # Auditors run one too; the empty form is shown again with its errors.
    Route(
        "reconciliation_run",
        "POST",
        allowed_for(200, 200, 200),
        org_scoped=True,
        note="an empty form: re-shown with its errors",
    ),
    Route(
        "reconciliation_live",
        "GET",
        allowed_for(404, 404, 404),
        org_scoped=True,
        note="no reading to watch in the matrix's organization",
    ),
    # Acting on findings: org admins; auditors may not.
    Route(
        "reconciliation_act",
        "POST",
        allowed_for(302, 403, 302),
        org_scoped=True,
        note="no item chosen: back to the page with a message",
    ),
    Route(
        "reconciliation_export",
        "GET",
        allowed_for(404, 404, 404),
        org_scoped=True,
        kwargs={"fmt": "csv"},
        note="no reading to export in the matrix's organization",
    ),
]
