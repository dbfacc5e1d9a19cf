"""Access matrix entries for the alerts pages (joined in tests/test_access_matrix.py)."""

from __future__ import annotations

from tests.matrix import Route, allowed_for  # noqa: F401

ROUTES: list[Route] = []
