"""Access matrix entries for the organization dashboard, Trigger Sync Now, failed records."""

from __future__ import annotations

from tests.matrix import Route, allowed_for

ROUTES: list[Route] = [
    Route("dashboard_live", "GET", allowed_for(200, 200, 200), org_scoped=True),
    # Trigger Sync Now without JavaScript: a confirmation page; auditors may not sync.
    Route("trigger_sync", "GET", allowed_for(200, 403, 200), org_scoped=True),
]
