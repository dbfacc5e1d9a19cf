"""Access matrix entries for the administrative trail and the audit chain's badge
(joined in tests/test_access_matrix.py)."""

from __future__ import annotations

from tests.matrix import Route, allowed_for

ROUTES: list[Route] = [
    # The administrative trail: everyone of the organization reads it; all of it for globals.
    Route("admin_trail", "GET", allowed_for(200, 200, 200), org_scoped=True),
    Route("global_admin_trail", "GET", allowed_for(403, 403, 200, other_admin=403)),
    # Verify now reads the chain and changes nothing audited: auditors may ask too.
    Route(
        "audit_verify",
        "POST",
        allowed_for(302, 302, 302),
        org_scoped=True,
        query={"chain": "sync_log"},
        note="without htmx: back to the audit log",
    ),
    # The badge's live part: with no verification running it answers 286 (stop polling).
    Route("audit_chain_badge", "GET", allowed_for(286, 286, 286), org_scoped=True),
]
