"""Who may use which URL: every URL of the site, for each of the five roles.

Add every new URL to MATRIX or to its area's tests/routes_*.py;
test_every_url_is_in_the_matrix fails until you do.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests import (
    routes_accounts,
    routes_alerts,
    routes_audit_trail,
    routes_failed,
    routes_i18n,
    routes_ops,
    routes_overview,
    routes_pages,
    routes_reconciliation,
)
from tests.matrix import ATTEMPT, LOGIN, ROLES, Route, allowed_for

MATRIX: list[Route] = [
    # Each person is sent where they work; the login page sends a logged-in person on.
    Route("home", "GET", allowed_for(302, 302, 302, other_admin=302)),
    Route("login", "GET", {**allowed_for(302, 302, 302, other_admin=302), "anonymous": 200}),
    Route("logout", "POST", {role: LOGIN for role in ROLES}),
    # Platform pages: global admins only.
    Route("overview", "GET", allowed_for(403, 403, 200, other_admin=403)),
    Route(
        "switch_organization",
        "GET",
        allowed_for(403, 403, 302, other_admin=403),
        query={"organization": "blindeforbundet"},
    ),
    # The organization's own pages.
    Route("organization_home", "GET", allowed_for(200, 200, 200), org_scoped=True),
    # The API key is a platform matter: its members know it exists (403), others do not (404).
    Route("api_keys", "GET", allowed_for(403, 403, 200), org_scoped=True),
    Route(
        "api_keys",
        "POST",
        allowed_for(403, 403, 200),
        org_scoped=True,
        note="a write: auditors are refused",
    ),
    # The integration: org admins change it, auditors read it.
    Route("integration_settings", "GET", allowed_for(200, 200, 200), org_scoped=True),
    Route(
        "integration_settings",
        "POST",
        allowed_for(200, 403, 200),
        org_scoped=True,
        note="an empty form: re-shown with its errors",
    ),
    Route("integration_connection", "GET", allowed_for(200, 200, 200), org_scoped=True),
    Route("integration_test", "POST", allowed_for(302, 403, 302), org_scoped=True),
    Route("integration_toggle", "POST", allowed_for(302, 403, 302), org_scoped=True),
    Route("integration_mappings", "GET", allowed_for(200, 200, 200), org_scoped=True),
    Route("integration_mappings", "POST", allowed_for(200, 403, 200), org_scoped=True),
    Route("integration_schedule", "GET", allowed_for(200, 200, 200), org_scoped=True),
    Route(
        "integration_schedule",
        "POST",
        allowed_for(200, 403, 200),
        org_scoped=True,
        note="an empty form: re-shown with its errors",
    ),
    Route("integration_schedule_preview", "GET", allowed_for(200, 200, 200), org_scoped=True),
    # The sync history: everyone who may see the organization.
    Route("sync_history", "GET", allowed_for(200, 200, 200), org_scoped=True),
    # Sending: org admins trigger; auditors may not (retries: tests/routes_failed.py).
    Route("trigger_sync", "POST", allowed_for(302, 403, 302), org_scoped=True),
    # The audit log: everyone of the organization reads and exports; all of it for globals.
    Route("audit_log", "GET", allowed_for(200, 200, 200), org_scoped=True),
    Route(
        "audit_entry", "GET", allowed_for(200, 200, 200), org_scoped=True, kwargs={"pk": ATTEMPT}
    ),
    Route(
        "audit_export", "GET", allowed_for(200, 200, 200), org_scoped=True, kwargs={"fmt": "csv"}
    ),
    Route("global_audit_log", "GET", allowed_for(403, 403, 200, other_admin=403)),
    Route(
        "global_audit_export",
        "GET",
        allowed_for(403, 403, 200, other_admin=403),
        kwargs={"fmt": "json"},
    ),
    # The inbound API takes an API key only; a browser session is not enough.
    Route("api_records", "POST", {role: 401 for role in ROLES}),
]
MATRIX += (
    routes_accounts.ROUTES
    + routes_alerts.ROUTES
    + routes_audit_trail.ROUTES
    + routes_failed.ROUTES
    + routes_i18n.ROUTES
    + routes_ops.ROUTES
    + routes_overview.ROUTES
    + routes_pages.ROUTES
    + routes_reconciliation.ROUTES
)


@pytest.fixture
def attempt_id(org) -> int:
    from tests.test_audit_log import make_attempts

    return make_attempts(org, 1)[0].pk


@pytest.fixture
def people(org, other_org, org_admin, other_admin, auditor, global_admin) -> dict[str, object]:
    return {
        "anonymous": None,
        "own_admin": org_admin,
        "other_admin": other_admin,
        "auditor": auditor,
        "global_admin": global_admin,
    }


CASES = [
    pytest.param(route, role, id=f"{route.method}-{route.name}-{role}")
    for route in MATRIX
    for role in ROLES
]


@pytest.mark.parametrize(("route", "role"), CASES)
def test_access(route: Route, role: str, people, org, attempt_id) -> None:
    client = Client()
    if people[role] is not None:
        # Who may use what, not logging in (tests/test_issue12_item2_*.py): the whole login,
        # the second factor included for those who have one (conftest.py).
        client.force_login(people[role])
    url = route.url(org.slug, attempt_id)
    if route.method == "GET":
        response = client.get(url, route.query)
    else:
        response = client.post(url, route.query)

    expected = route.expect[role]
    if expected == LOGIN:
        assert response.status_code == 302, response.content[:300]
        assert response["Location"].startswith(reverse("login")), response["Location"]
    else:
        assert response.status_code == expected, response.content[:300]


def _named_routes(patterns, namespace: str = "") -> set[str]:
    names: set[str] = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace == "admin":
                continue  # Django's own admin checks is_staff itself; see test_admin_records.py
            names |= _named_routes(pattern.url_patterns, pattern.namespace or namespace)
        elif isinstance(pattern, URLPattern):
            assert pattern.name, f"URL {pattern.pattern} has no name; name it and add it to MATRIX"
            names.add(f"{namespace}:{pattern.name}" if namespace else pattern.name)
    return names


def test_every_url_is_in_the_matrix() -> None:
    covered = {route.name for route in MATRIX}
    missing = _named_routes(get_resolver().url_patterns) - covered
    assert not missing, f"add these URLs to MATRIX in {__name__}: {sorted(missing)}"


def test_an_organization_that_does_not_exist_is_404_even_for_global_admins(global_admin) -> None:
    client = Client()
    client.force_login(global_admin)
    assert (
        client.get(reverse("organization_home", kwargs={"slug": "no-such-org"})).status_code == 404
    )


def test_home_sends_each_role_where_it_works(
    org, other_org, org_admin, auditor, global_admin
) -> None:
    from organizations.models import Membership

    client = Client()
    client.force_login(org_admin)
    assert client.get(reverse("home"))["Location"] == reverse("organization_home", args=[org.slug])

    client.force_login(global_admin)
    assert client.get(reverse("home"))["Location"] == reverse("overview")

    # Someone in two organizations chooses between them.
    Membership.objects.create(user=auditor, organization=other_org, role="auditor")
    client.force_login(auditor)
    page = client.get(reverse("home"))
    assert page.status_code == 200
    assert b"Blindeforbundet" in page.content and b"HLF" in page.content


def test_other_organizations_records_never_show(org, other_org, org_admin) -> None:
    from accounting_sync.models import FinancialRecord

    common = {
        "kind": "reimbursement",
        "category": "travel",
        "amount": "10.00",
        "expense_date": "2026-03-01",
        "approved_at": "2026-03-02T10:00:00+01:00",
        "claimant_reference": "V-1",
    }
    FinancialRecord.objects.create(
        organization=org, source_id="mine", claimant_name="Kari Nordmann", **common
    )
    FinancialRecord.objects.create(
        organization=other_org, source_id="theirs", claimant_name="Per Hemmelig", **common
    )
    client = Client()
    client.force_login(org_admin)
    page = client.get(reverse("organization_home", args=[org.slug]))
    assert "Kari Nordmann" in page.content.decode()
    assert "Per Hemmelig" not in page.content.decode()
