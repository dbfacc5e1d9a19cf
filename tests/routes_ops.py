"""Access matrix entries for the operators' endpoints (ops/), joined in test_access_matrix.py.

Answered to machines, the same to everyone whoever is logged in: no login page, no
second factor, no organization (tests/test_ops.py shows why each answers what it does).
"""

from __future__ import annotations

from tests.matrix import ROLES, Route

ROUTES: list[Route] = [
    # Liveness: the process answers.
    Route("healthz", "GET", dict.fromkeys(ROLES, 200)),
    # Readiness: the test database has no worker heartbeat, so not ready.
    Route("readyz", "GET", dict.fromkeys(ROLES, 503), note="no worker has checked in"),
    # Turned off until METRICS_TOKEN or METRICS_ALLOWED_NETWORKS is set: a 404 to anyone.
    Route("metrics", "GET", dict.fromkeys(ROLES, 404), note="not turned on"),
]
