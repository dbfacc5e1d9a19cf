"""Access matrix entries for choosing a language (joined in tests/test_access_matrix.py)."""

from __future__ import annotations

from tests.matrix import ROLES, Route

ROUTES: list[Route] = [
    # Anyone may choose a language, the login page too: Django's set_language stores the
    # choice in a cookie and sends the person back where they were.
    Route(
        "set_language",
        "POST",
        dict.fromkeys(ROLES, 302),
        query={"language": "nb", "next": "/"},
        note="the language picker in the header",
    ),
]
