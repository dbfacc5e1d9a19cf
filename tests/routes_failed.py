"""Access matrix entries for the failed records page and its retries (S6)."""

from __future__ import annotations

from tests.matrix import Route, allowed_for

ROUTES: list[Route] = [
    Route("failed_records", "GET", allowed_for(200, 200, 200), org_scoped=True),
    # With no failed record and no sync going there is nothing to watch: 286 stops polling.
    Route(
        "failed_records_live",
        "GET",
        allowed_for(286, 286, 286),
        org_scoped=True,
        note="the list's live part; nothing to watch in the matrix's organization",
    ),
    # Retry Selected / Retry All Failed: org admins retry; auditors may not.
    Route(
        "retry_records",
        "POST",
        allowed_for(302, 403, 302),
        org_scoped=True,
        note="nothing chosen: back to the list with a message",
    ),
]
