"""S3 and S4 in Chromium: the dashboard, Trigger Sync Now with a real worker and the ERP
sandbox, changes made elsewhere appearing without a reload, and the whole flow by keyboard."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounting_sync.models import FinancialRecord, SyncRun
from organizations.models import Membership, Organization
from tests.browser import accessibility_violations, log_in
from tests.conftest import PASSWORD
from tests.factories import configure, ledger_counts, make_records, sync

pytestmark = [pytest.mark.browser]

LIVE_TIMEOUT = 15_000  # a poll every 2 s, a worker, the sandbox: seconds, not more


@pytest.fixture(autouse=True)
def _trust_the_sandbox(erp_sandbox, settings) -> None:
    # Set before the worker starts, so the worker trusts the sandbox's CA too.
    settings.ERP_CA_BUNDLE = str(erp_sandbox.ca_bundle)


@pytest.fixture
def dashboard(page: Page, live_server, org, org_admin, erp_sandbox) -> Page:
    configure(org, erp_sandbox)
    return page


def open_dashboard(page: Page, live_server, org, username: str) -> Page:
    log_in(page, live_server.url, username)
    page.goto(f"{live_server.url}/orgs/{org.slug}/")
    return page


def pending_count(page: Page):
    return page.locator("#pending-count")


@pytest.mark.worker
def test_s3_1_to_s3_3_trigger_sync_now_confirms_the_count_shows_progress_and_the_outcome(
    dashboard: Page, live_server, org, org_admin, erp_sandbox, celery_worker
) -> None:
    make_records(org, 30)
    erp_sandbox.set_faults(latency_ms=1500)  # long enough to see the progress bar
    page = open_dashboard(dashboard, live_server, org, org_admin.username)
    expect(pending_count(page)).to_have_text("30")
    expect(page.locator("#last-sync")).to_have_text("Never")

    page.get_by_role("button", name="Trigger Sync Now").click()
    dialog = page.get_by_role("dialog", name="Sync now?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("30 records will be sent to Xledger.")  # S3.1
    assert accessibility_violations(page) == []

    dialog.get_by_role("button", name="Start sync").click()
    expect(dialog).to_be_hidden()
    # S3.2: progress, and no second trigger.
    expect(page.locator("#sync-progress")).to_be_visible()
    expect(page.get_by_role("button", name="Trigger Sync Now")).to_be_disabled()
    expect(page.get_by_text("A sync is already running")).to_be_visible()
    assert accessibility_violations(page) == []

    # S3.3: the bar goes, the pending count is zero, the last sync is now, said in words.
    expect(page.locator("#sync-progress")).to_have_count(0, timeout=30_000)
    expect(pending_count(page)).to_have_text("0")
    expect(page.locator("#last-outcome")).to_contain_text("Sync finished: 30 records sent.")
    expect(page.locator("#announcer")).to_contain_text("Sync finished: 30 records sent.")
    today = timezone.localtime().strftime("%Y-%m-%d")
    expect(page.locator("#last-sync")).to_contain_text(today)
    expect(page.get_by_role("button", name="Trigger Sync Now")).to_be_enabled()
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in FinancialRecord.objects.all()}
    run = SyncRun.objects.get()
    assert (run.trigger, run.triggered_by, run.sent) == ("manual", org_admin, 30)


@pytest.mark.worker
def test_s3_5_a_partial_failure_keeps_sent_records_in_the_ledger_and_queues_only_the_failed(
    dashboard: Page, live_server, org, org_admin, erp_sandbox, celery_worker
) -> None:
    make_records(org, 40)
    erp_sandbox.set_faults(permanent_error_rate=0.2, seed=7)
    page = open_dashboard(dashboard, live_server, org, org_admin.username)
    page.get_by_role("button", name="Trigger Sync Now").click()
    page.get_by_role("button", name="Start sync").click()

    expect(page.locator("#last-outcome")).to_contain_text(
        "Sync finished with errors", timeout=30_000
    )
    failed = FinancialRecord.objects.filter(state="failed")
    synced = FinancialRecord.objects.filter(state="synced")
    assert failed.count() > 0 and synced.count() + failed.count() == 40
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in synced}
    # S4.4: amber, and the error count leads to the failed records.
    expect(page.locator("#health")).to_contain_text("Errors")
    page.locator("#error-count a").click()
    expect(page).to_have_url(re.compile(rf"/orgs/{org.slug}/failed/$"))


def test_s3_4_a_run_started_elsewhere_disables_the_button_for_a_second_admin(
    dashboard: Page, live_server, org, org_admin, django_user_model
) -> None:
    second = django_user_model.objects.create_user("second-admin", password=PASSWORD)
    Membership.objects.create(user=second, organization=org, role="admin")
    make_records(org, 3)
    page = open_dashboard(dashboard, live_server, org, second.username)
    button = page.get_by_role("button", name="Trigger Sync Now")
    expect(button).to_be_enabled()

    run = SyncRun.objects.create(
        organization=org, connector="xledger", trigger="schedule", total=3, done=1
    )
    Organization.touch(org.pk)
    expect(button).to_be_disabled(timeout=LIVE_TIMEOUT)
    expect(page.get_by_text("A sync is already running")).to_be_visible()
    expect(page.locator("#sync-progress-text")).to_have_text("1 of 3 records done")
    assert accessibility_violations(page) == []

    # A click on the disabled button starts nothing. Enabled, the click would open the
    # dialog at once (dashboard.js) and only the dialog starts a sync; the dialog still
    # closed right after the click says so without a fixed wait.
    button.click(force=True)
    expect(page.locator("#sync-dialog")).to_be_hidden()
    assert SyncRun.objects.count() == 1

    SyncRun.objects.filter(pk=run.pk).update(
        status="succeeded", done=3, sent=3, finished_at=timezone.now()
    )
    FinancialRecord.objects.filter(organization=org).update(state="synced")
    Organization.touch(org.pk)
    expect(button).to_be_enabled(timeout=LIVE_TIMEOUT)
    expect(pending_count(page)).to_have_text("0")


def test_s4_6_a_sync_finished_by_another_process_appears_without_a_reload(
    dashboard: Page, live_server, org, org_admin, erp_sandbox
) -> None:
    make_records(org, 6)
    page = open_dashboard(dashboard, live_server, org, org_admin.username)
    expect(pending_count(page)).to_have_text("6")
    page.evaluate("window.notReloaded = true")

    sync(org, trigger="schedule")  # this test process, not the page, does the sending

    expect(pending_count(page)).to_have_text("0", timeout=LIVE_TIMEOUT)
    expect(page.locator("#last-outcome")).to_contain_text("Sync finished: 6 records sent.")
    expect(page.locator("#health")).to_contain_text("Healthy")
    assert page.evaluate("window.notReloaded") is True


@pytest.mark.worker
def test_s3_keyboard_only_trigger_sync_now(
    dashboard: Page, live_server, org, org_admin, erp_sandbox, celery_worker
) -> None:
    make_records(org, 5)
    page = open_dashboard(dashboard, live_server, org, org_admin.username)
    for _ in range(40):  # Tab through the page until the button has focus
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "trigger-sync":
            break
    else:
        pytest.fail("Trigger Sync Now cannot be reached with Tab")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Sync now?")
    expect(dialog).to_be_visible()
    assert page.evaluate("document.activeElement.id") == "confirm-sync"  # focus moved in
    page.keyboard.press("Escape")  # a person may change their mind
    expect(dialog).to_be_hidden()
    assert page.evaluate("document.activeElement.id") == "trigger-sync"  # and is back
    assert SyncRun.objects.count() == 0

    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator("#last-outcome")).to_contain_text(
        "Sync finished: 5 records sent.", timeout=30_000
    )
    assert SyncRun.objects.get().triggered_by == org_admin


def test_s4_dashboard_has_no_accessibility_violations_for_an_auditor(
    dashboard: Page, live_server, org, auditor
) -> None:
    make_records(org, 2)
    page = open_dashboard(dashboard, live_server, org, auditor.username)
    expect(page.locator("#health")).to_be_visible()
    expect(page.get_by_role("button", name="Trigger Sync Now")).to_have_count(0)
    assert accessibility_violations(page) == []


def test_s4_1_s4_3_s4_5_the_dashboard_says_health_in_words_and_warns_when_overdue(
    dashboard: Page, live_server, org, org_admin
) -> None:
    records = make_records(org, 4)
    synced_at = timezone.now() - timedelta(minutes=10)
    SyncRun.objects.create(
        organization=org,
        connector="xledger",
        trigger="schedule",
        status="succeeded",
        sent=2,
        finished_at=synced_at,
    )
    FinancialRecord.objects.filter(pk__in=[r.pk for r in records[:2]]).update(state="synced")
    page = open_dashboard(dashboard, live_server, org, org_admin.username)
    # S4.1: connector, last successful sync, pending and errors of this organization.
    expect(page.locator("#dashboard-status")).to_contain_text("Xledger")
    expect(pending_count(page)).to_have_text("2")
    expect(page.locator("#error-count")).to_have_text("0")
    # The sync's own local date (ten minutes ago may be yesterday, just after midnight).
    expect(page.locator("#last-sync")).to_contain_text(
        timezone.localtime(synced_at).strftime("%Y-%m-%d %H:%M")
    )
    # S4.3: green, said as a word.
    expect(page.locator("#health")).to_contain_text("Healthy")

    # S4.5: a day later the waiting records were never sent: red, with a warning.
    FinancialRecord.objects.filter(state="pending").update(
        received_at=timezone.now() - timedelta(hours=30)
    )
    SyncRun.objects.update(finished_at=timezone.now() - timedelta(hours=26))
    Organization.touch(org.pk)
    expect(page.locator("#health")).to_contain_text("Overdue", timeout=LIVE_TIMEOUT)
    expect(page.locator("#overdue-warning")).to_contain_text(
        "No sync has happened in the last 24 hours although one was expected."
    )
    assert accessibility_violations(page) == []
