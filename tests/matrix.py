"""What the access matrix is made of: a Route, and who is expected to get what.

Each area lists its routes in its own module (tests/routes_*.py), so people working
on different pages do not edit one list; tests/test_access_matrix.py joins them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.urls import reverse

ROLES = ("anonymous", "own_admin", "other_admin", "auditor", "global_admin")
LOGIN = "login"  # expected: a redirect to the login page
ATTEMPT = "<the organization's sync attempt>"  # filled in with a real sync_logs id


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    expect: dict[str, int | str]
    org_scoped: bool = False
    query: dict[str, str] = field(default_factory=dict)
    note: str = ""
    kwargs: dict[str, object] = field(default_factory=dict)  # more URL arguments

    def url(self, slug: str, attempt_id: int) -> str:
        kwargs: dict[str, object] = {"slug": slug} if self.org_scoped else {}
        kwargs.update({k: attempt_id if v == ATTEMPT else v for k, v in self.kwargs.items()})
        return reverse(self.name, kwargs=kwargs or None)


def allowed_for(own_admin: int, auditor: int, global_admin: int, other_admin: int = 404):
    return {
        "anonymous": LOGIN,
        "own_admin": own_admin,
        "other_admin": other_admin,
        "auditor": auditor,
        "global_admin": global_admin,
    }
