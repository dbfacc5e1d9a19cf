"""Access matrix entries for the organization dashboard, Trigger Sync Now, failed records."""

from __future__ import annotations

from tests.matrix import ROLES, Route, allowed_for

ROUTES: list[Route] = [
    Route("dashboard_live", "GET", allowed_for(200, 200, 200), org_scoped=True),
    # Trigger Sync Now without JavaScript: a confirmation page; auditors may not sync.
    Route("trigger_sync", "GET", allowed_for(200, 403, 200), org_scoped=True),
    # Browsers ask for it on every page, the login page too (issue 11, item 7).
    Route("favicon", "GET", dict.fromkeys(ROLES, 200)),
]
