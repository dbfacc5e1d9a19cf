"""Access matrix entries for the global overview and its live parts."""

from __future__ import annotations

from tests.matrix import Route, allowed_for  # noqa: F401

ROUTES: list[Route] = []
