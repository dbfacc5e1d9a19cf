"""Issue 5 item 6 in Chromium: every page of the site, in English and in Norwegian Bokmål,
has no axe-core violations and says which language it is in; the language picker works by
keyboard alone.

The pages are taken from the URL resolver: each named URL is either a page visited here or
listed in NOT_PAGES with the reason, so a new page fails test_every_page_is_visited until it
is added to PAGES.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import time, timedelta
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from accounting_sync.models import FinancialRecord, SyncRun
from audit.models import AdminAction
from integrations.models import CategoryMapping, ConnectionTest, Integration
from organizations.models import ApiKey, Membership
from tests.browser import accessibility_violations, log_in, pass_second_step
from tests.conftest import PASSWORD
from tests.test_audit_log import make_attempts

pytestmark = pytest.mark.browser

# What Chromium says it reads (Accept-Language), and what the login page calls its parts.
LANGUAGES: dict[str, dict[str, Any]] = {
    "en": {"locale": "en-GB", "login": ("Username", "Password", "Log in")},
    "nb": {"locale": "nb-NO", "login": ("Brukernavn", "Passord", "Logg inn")},
}

# Named URLs that are not pages a person reads, and why.
NOT_PAGES = {
    "logout": "POST only",
    "switch_organization": "redirects to the organization's page",
    "set_language": "POST only: the picker",
    "api_records": "the inbound JSON API",
    "healthz": "a JSON probe for load balancers",
    "readyz": "a JSON probe for load balancers",
    "metrics": "Prometheus's text, for a scraper",
    "favicon": "an image, not a page",
    "overview_live": "a fragment of the overview",
    "dashboard_live": "a fragment of the dashboard",
    "failed_records_live": "a fragment of the failed records page",
    "integration_connection": "a fragment of the settings page",
    "integration_schedule_preview": "a fragment of the schedule page",
    "audit_chain_badge": "a fragment of the audit log",
    "alert_badge": "a fragment of the header",
    "integration_test": "POST only",
    "integration_toggle": "POST only",
    "trigger_sync": "POST only",
    "retry_records": "POST only",
    "audit_verify": "POST only",
    "alert_mark_read": "POST only",
    "alert_dismiss": "POST only",
    "audit_export": "a CSV or JSON download",
    "global_audit_export": "a CSV or JSON download",
    "two_factor_disable": "POST only",
    "lockout_unlock": "POST only",
    "reconciliation_live": "a fragment of the reconciliation page",
    "reconciliation_run": "POST only",
    "reconciliation_act": "POST only",
    "reconciliation_export": "a CSV or JSON download",
}


def org_url(name: str, **kwargs) -> Callable[[dict], str]:
    return lambda site: reverse(name, kwargs={"slug": site["org"].slug, **kwargs})


# The pages a global admin reads (every organization's pages and the platform's).
PAGES: dict[str, Callable[[dict], str]] = {
    "overview": lambda site: reverse("overview"),
    "organization_home": org_url("organization_home"),
    "failed_records": org_url("failed_records"),
    "sync_history": org_url("sync_history"),
    "integration_settings": org_url("integration_settings"),
    "integration_mappings": org_url("integration_mappings"),
    "integration_schedule": org_url("integration_schedule"),
    "api_keys": org_url("api_keys"),
    "audit_log": org_url("audit_log"),
    "audit_entry": lambda site: reverse(
        "audit_entry", kwargs={"slug": site["org"].slug, "pk": site["attempt"].pk}
    ),
    "admin_trail": org_url("admin_trail"),
    "reconciliation": org_url("reconciliation"),
    "global_audit_log": lambda site: reverse("global_audit_log"),
    "global_admin_trail": lambda site: reverse("global_admin_trail"),
    "alert_list": lambda site: reverse("alert_list"),
    "alert_settings": lambda site: reverse("alert_settings"),
    "two_factor": lambda site: reverse("two_factor"),
    "lockouts": lambda site: reverse("lockouts"),
}
# Pages only other people see: the login page (anyone), the organization chooser (someone
# in two organizations), and the error pages.
OTHER_PAGES = {"login", "home"}
# The login's second step and the recovery codes shown once: tests/test_browser_two_factor.py.
OTHER_PAGES |= {"two_factor_verify", "two_factor_recovery_codes"}


def named_routes(patterns, namespace: str = "") -> set[str]:
    names: set[str] = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace != "admin":  # Django's own admin is English only
                names |= named_routes(pattern.url_patterns, pattern.namespace or namespace)
        elif isinstance(pattern, URLPattern) and pattern.name:
            names.add(f"{namespace}:{pattern.name}" if namespace else pattern.name)
    return names


def test_every_page_is_visited() -> None:
    unlisted = (
        named_routes(get_resolver().url_patterns) - set(PAGES) - OTHER_PAGES - NOT_PAGES.keys()
    )
    assert not unlisted, f"add these to PAGES (or NOT_PAGES, saying why): {sorted(unlisted)}"


@pytest.fixture
def site(org, other_org, global_admin, auditor) -> dict:
    """An organization with something on every page: a tested, enabled connection with
    mappings and a schedule, failed and sent records with their attempts, runs, a key."""
    integration = Integration.objects.get(organization=org)
    integration.set_credentials({"api_token": "secret-token"})
    integration.connection_verified_at = timezone.now()
    integration.erp_accounts = [{"code": "7140", "name": "Reisekostnad"}]
    integration.erp_cost_centers = [{"code": "100", "name": "Administrasjon"}]
    integration.payable_account = "7140"
    integration.enabled = True
    integration.schedule = Integration.Schedule.DAILY
    integration.schedule_time = time(2, 0)
    integration.save()
    CategoryMapping.objects.create(
        integration=integration, category="reise", account_code="7140", cost_center_code="100"
    )
    ConnectionTest.objects.create(
        integration=integration,
        requested_by=global_admin,
        status=ConnectionTest.Status.SUCCEEDED,
        account_count=1,
        cost_center_count=1,
        finished_at=timezone.now(),
    )
    failed = make_attempts(org, 2, status="failed", error="Account '7130' does not exist")
    FinancialRecord.objects.filter(pk__in=[a.record_id for a in failed]).update(
        state="failed",
        retry_count=1,
        last_error="Account '7130' does not exist",
        next_retry_at=timezone.now() + timedelta(minutes=5),
    )
    make_attempts(org, 1, start=10)
    SyncRun.objects.create(
        organization=org,
        connector="xledger",
        trigger="schedule",
        status="partial",
        finished_at=timezone.now(),
        total=3,
        sent=1,
        failed=2,
        skip_reasons=[{"code": "no_mapping", "category": "parkering", "count": 1}],
    )
    key, _raw = ApiKey.issue(org, created_by=global_admin)
    AdminAction.record(global_admin, org, AdminAction.Kind.API_KEY_ISSUED, prefix=key.prefix)
    # Someone in two organizations chooses between them on the start page.
    Membership.objects.create(user=auditor, organization=other_org, role="auditor")
    return {"org": org, "attempt": failed[0]}


def log_in_as(page: Page, base_url: str, username: str, language: str) -> None:
    """Log in through the page in its own language: the login page is translated too."""
    username_label, password_label, button = LANGUAGES[language]["login"]
    page.goto(f"{base_url}{reverse('login')}")
    page.get_by_label(username_label).fill(username)
    page.get_by_label(password_label).fill(PASSWORD)
    page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_load_state()
    pass_second_step(page, username)


def problems_on(page: Page, language: str) -> list[str]:
    expect(page.locator("html")).to_have_attribute("lang", language)
    return accessibility_violations(page)


@pytest.mark.parametrize("language", ["en", "nb"])
def test_every_page_has_no_axe_violations_in_both_languages(
    browser: Browser, live_server, site, global_admin, auditor, language
) -> None:
    found: dict[str, list[str]] = {}
    context = browser.new_context(locale=LANGUAGES[language]["locale"])
    try:
        page = context.new_page()
        page.goto(f"{live_server.url}{reverse('login')}")
        found["login"] = problems_on(page, language)

        log_in_as(page, live_server.url, global_admin.username, language)
        for name, url in PAGES.items():
            response = page.goto(f"{live_server.url}{url(site)}")
            assert response is not None
            assert response.status == 200, f"{name}: {response.status}"
            found[name] = problems_on(page, language)
        page.goto(f"{live_server.url}/orgs/no-such-organization/")
        found["404"] = problems_on(page, language)
    finally:
        context.close()

    # The start page of someone in two organizations, and a page their role may not open.
    context = browser.new_context(locale=LANGUAGES[language]["locale"])
    try:
        page = context.new_page()
        log_in_as(page, live_server.url, auditor.username, language)
        expect(page).to_have_url(f"{live_server.url}/")
        found["home"] = problems_on(page, language)
        response = page.goto(f"{live_server.url}{reverse('api_keys', args=[site['org'].slug])}")
        assert response is not None and response.status == 403
        found["403"] = problems_on(page, language)
    finally:
        context.close()

    assert {name: problems for name, problems in found.items() if problems} == {}


def test_the_language_picker_works_by_keyboard_alone(page: Page, live_server, org, org_admin):
    log_in(page, live_server.url, org_admin.username)
    page.goto(f"{live_server.url}{reverse('sync_history', args=[org.slug])}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sync history")

    # From the top of the page, Tab reaches the picker (it sits in the header).
    picker = page.get_by_label("Language")
    for _ in range(15):
        page.keyboard.press("Tab")
        if picker.evaluate("element => element === document.activeElement"):
            break
    expect(picker).to_be_focused()
    page.keyboard.press("ArrowDown")  # English → Norsk (bokmål); nothing is sent yet
    expect(picker).to_have_value("nb")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Change language")).to_be_focused()
    page.keyboard.press("Enter")

    # The same page, now in Norwegian; the choice holds on the next page too.
    expect(page).to_have_url(f"{live_server.url}{reverse('sync_history', args=[org.slug])}")
    expect(page.locator("html")).to_have_attribute("lang", "nb")
    expect(page.get_by_role("heading", level=1)).to_have_text("Synkroniseringslogg")
    page.goto(f"{live_server.url}{reverse('integration_schedule', args=[org.slug])}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Synkroniseringsplan")

    # And back, by keyboard, with the picker now labelled in Norwegian.
    picker = page.get_by_label("Språk")
    picker.focus()
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Bytt språk")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sync schedule")
