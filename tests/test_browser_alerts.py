"""S7 in Chromium: the header badge rises while an admin watches the dashboard, when a
real worker makes a record's third failed attempt against the ERP sandbox; the admin opens
the alert, reads it and follows its link to the failed records.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from accounting_sync.models import SyncLog
from accounting_sync.orchestrator import start_run
from accounting_sync.tasks import run_sync
from alerts.models import Alert
from integrations.clients import business_central as bc
from integrations.clients import xledger as xl
from tests.browser import accessibility_violations, log_in
from tests.factories import configure, make_records, sync

pytestmark = [pytest.mark.browser, pytest.mark.worker]


@pytest.fixture(autouse=True)
def _trust_the_sandbox(erp_sandbox, settings) -> None:
    # Set before the worker starts, so the worker trusts the sandbox's CA too.
    settings.ERP_CA_BUNDLE = str(erp_sandbox.ca_bundle)
    xl._tokens.clear()
    bc._apps.clear()


def test_s7_an_admin_sees_the_badge_rise_at_the_third_failure_opens_the_alert_and_its_link(
    page: Page, live_server, org, org_admin, erp_sandbox, celery_worker
) -> None:
    configure(org, erp_sandbox)
    (record,) = make_records(org, 1)
    erp_sandbox.set_faults(permanent_error_rate=1.0)
    sync(org)
    sync(org, "retry", record_ids=[record.pk])  # two failed attempts: no alert yet
    assert not Alert.objects.exists()

    log_in(page, live_server.url, org_admin.username)
    expect(page).to_have_url(f"{live_server.url}/orgs/{org.slug}/")
    expect(page.get_by_role("link", name="Alerts: 0 unread")).to_be_visible()
    page.evaluate("window.notReloaded = true")

    # The third attempt, made by the worker, as Retry Selected would have it made.
    run_sync.delay(start_run(org, "retry", record_ids=[record.pk]).pk)

    expect(page.get_by_role("link", name="Alerts: 1 unread")).to_be_visible(timeout=30_000)
    expect(page.locator("#announcer")).to_have_text(
        re.compile(r"New alert for Blindeforbundet: Record keeps failing\. Alerts: 1 unread\.")
    )
    assert page.evaluate("window.notReloaded") is True  # it rose without a reload
    assert SyncLog.objects.filter(record=record, status="failed").count() == 3

    page.get_by_role("link", name="Alerts: 1 unread").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Alerts")
    item = page.get_by_role("listitem").filter(has_text=record.reference)
    expect(item).to_contain_text(f"Reimbursement {record.reference} failed 3 attempts in a row")
    expect(item).to_contain_text("Period is closed for posting date")
    expect(item).to_contain_text("Open")
    assert accessibility_violations(page) == []

    item.get_by_role("button", name=re.compile("Mark as read")).click()
    expect(page.get_by_role("link", name="Alerts: 0 unread")).to_be_visible()
    expect(item.get_by_role("button", name=re.compile("Mark as read"))).to_have_count(0)
    expect(item.get_by_role("button", name=re.compile("Dismiss"))).to_be_focused()
    assert accessibility_violations(page) == []

    item.get_by_role("link", name=re.compile("Open the failed records")).click()
    expect(page).to_have_url(f"{live_server.url}/orgs/{org.slug}/failed/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Failed records")
    expect(page.get_by_role("rowheader", name=record.reference)).to_be_visible()


def test_s7_5_an_alert_is_dismissed_by_keyboard_and_focus_stays_in_the_list(
    page: Page, live_server, org, org_admin
) -> None:
    from alerts import rules

    rules.open_alert(org.pk, Alert.Kind.AUTHENTICATION_FAILED, {"error": "Token expired"})
    log_in(page, live_server.url, org_admin.username)

    page.goto(f"{live_server.url}/alerts/")
    expect(page.get_by_role("link", name="Alerts: 1 unread")).to_be_visible()
    dismiss = page.get_by_role("button", name=re.compile("Dismiss"))
    dismiss.focus()
    page.keyboard.press("Enter")

    expect(page.get_by_text("Alert dismissed.")).to_be_focused()
    expect(page.get_by_role("link", name="Alerts: 0 unread")).to_be_visible()
    assert accessibility_violations(page) == []
    page.reload()
    expect(page.get_by_text("No alerts.")).to_be_visible()
