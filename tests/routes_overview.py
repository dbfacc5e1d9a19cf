"""Access matrix entries for the global overview and its live parts."""

from __future__ import annotations

from tests.matrix import Route, allowed_for

ROUTES: list[Route] = [
    # The overview's live table and totals (S5.6): global admins only, like the page.
    Route("overview_live", "GET", allowed_for(403, 403, 200, other_admin=403)),
    Route(
        "overview_live",
        "GET",
        allowed_for(403, 403, 200, other_admin=403),
        query={"sort": "-errors", "health": "amber", "v": "0.0.0"},
        note="filtered and sorted, with a stale version: rendered",
    ),
]
