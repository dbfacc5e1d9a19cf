"""Access matrix entries for the organization dashboard, Trigger Sync Now, failed records."""

from __future__ import annotations

from tests.matrix import Route, allowed_for  # noqa: F401

ROUTES: list[Route] = []
