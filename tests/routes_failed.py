"""Access matrix entries for the failed records page and its retries (S6)."""

from __future__ import annotations

from tests.matrix import Route, allowed_for

ROUTES: list[Route] = [
    Route("failed_records", "GET", allowed_for(200, 200, 200), org_scoped=True),
]
