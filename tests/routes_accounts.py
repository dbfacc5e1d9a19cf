"""Access matrix entries for logging in safely: the second factor's pages and the locked
logins (joined in tests/test_access_matrix.py). The global admin has an app and a verified
session; the others have none and their organization does not require one."""

from __future__ import annotations

from tests.matrix import ROLES, Route, allowed_for

ROUTES: list[Route] = [
    # Everyone's own second factor: set it up (no app yet) or manage it (the global admin).
    Route("two_factor", "GET", allowed_for(200, 200, 200, other_admin=200)),
    Route(
        "two_factor",
        "POST",
        allowed_for(200, 200, 200, other_admin=200),
        note="no code: the setup form again with its error; the global admin's page as it is",
    ),
    # The login's second step: nothing to ask without an app, already passed with one.
    Route("two_factor_verify", "GET", allowed_for(302, 302, 302, other_admin=302)),
    # The codes are shown once, right after they are made; otherwise back to the page.
    Route("two_factor_recovery_codes", "GET", allowed_for(302, 302, 302, other_admin=302)),
    Route(
        "two_factor_recovery_codes",
        "POST",
        allowed_for(302, 302, 302, other_admin=302),
        note="without an app: back to setting one up; with one: to the new codes",
    ),
    Route(
        "two_factor_disable",
        "POST",
        allowed_for(400, 400, 400, other_admin=400),
        note="no code given: refused",
    ),
    # Locked logins: global admins only.
    Route("lockouts", "GET", allowed_for(403, 403, 200, other_admin=403)),
    Route(
        "lockout_unlock",
        "POST",
        allowed_for(403, 403, 302, other_admin=403),
        note="no such lock: back to the list",
    ),
]
assert all(set(route.expect) == set(ROLES) for route in ROUTES)
