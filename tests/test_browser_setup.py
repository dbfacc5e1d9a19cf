"""Issue 11 in Chromium: the setup checklist leads a new organization from nothing to a
record in the sandbox ledger (S1, S2, S3); a skipped-only sync is never shown green
(S4.3); an open dashboard turns overdue with the clock alone (S4.5, S4.6); the latest
records follow a sync without a reload (S4.6). In English and Norwegian, axe clean."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from accounting_sync.models import FinancialRecord, SyncRun
from integrations.models import Integration
from tests.browser import accessibility_violations, log_in
from tests.factories import configure, ledger_counts, make_records, sync
from tests.test_browser_i18n import LANGUAGES, log_in_as
from tests.test_browser_integration import XLEDGER_TOKEN, choose

pytestmark = [pytest.mark.browser]

LIVE_TIMEOUT = 15_000  # a poll every 2 s: seconds, not more

# What the pages say, per language (the Norwegian from locale/nb/new-setup.json).
WORDS = {
    "en": {"needs_setup": "Needs setup", "healthy": "Healthy", "waiting": "waiting for a mapping"},
    "nb": {
        "needs_setup": "Må settes opp",
        "healthy": "I orden",
        "waiting": "venter på kontering",
    },
}


@pytest.fixture(autouse=True)
def _trust_the_sandbox(erp_sandbox, settings) -> None:
    # Set before the worker starts, so the worker trusts the sandbox's CA too.
    settings.ERP_CA_BUNDLE = str(erp_sandbox.ca_bundle)


def open_dashboard(page: Page, live_server, org, username: str) -> Page:
    log_in(page, live_server.url, username)
    page.goto(f"{live_server.url}/orgs/{org.slug}/")
    return page


def step(page: Page, code: str):
    return page.locator(f"#setup-{code}")


@pytest.mark.worker
def test_s1_s2_s3_the_checklist_leads_a_new_organization_to_a_synced_record(
    page: Page, live_server, org, org_admin, erp_sandbox, celery_worker
) -> None:
    Integration.objects.filter(organization=org).delete()  # start from nothing
    make_records(org, 2)  # travel claims have arrived already
    open_dashboard(page, live_server, org, org_admin.username)
    checklist = page.locator("#setup-checklist")
    expect(checklist).to_be_visible()
    for code in ("credentials", "tested", "mapped", "enabled"):
        expect(step(page, code)).to_contain_text("To do:")
    assert accessibility_violations(page) == []

    # 1. Credentials, from the checklist's link.
    page.get_by_role("link", name="Choose the accounting system and save its credentials").click()
    choose(page, "Xledger")
    page.get_by_label("GraphQL endpoint").fill(f"{erp_sandbox.url}/graphql")
    page.get_by_label("API token", exact=True).fill(XLEDGER_TOKEN)
    page.get_by_label("Cost center object kind (dbId)").fill("101")
    page.get_by_role("button", name="Save settings").click()
    expect(step(page, "credentials")).to_contain_text("Done:")
    expect(step(page, "tested")).to_contain_text("To do:")

    # 2. Test Connection; Enable is still refused, and says why.
    page.get_by_role("button", name="Test Connection").click()
    expect(page.get_by_text("Connected to Xledger")).to_be_visible(timeout=30_000)
    expect(step(page, "tested")).to_contain_text("Done:")
    expect(step(page, "mapped")).to_contain_text("Not mapped yet: travel.")
    expect(page.get_by_role("button", name="Enable connector")).to_be_disabled()
    expect(page.locator("#enable-reason")).to_contain_text(
        "Choose the payable account on the mappings page first."
    )
    assert accessibility_violations(page) == []

    # 3. Map what arrived and choose the payable account.
    page.get_by_role(
        "link", name="Map every expense category that has arrived and choose the payable account"
    ).click()
    page.get_by_label("Account for travel").select_option("7130")
    page.get_by_label("Cost center for travel").select_option("300")
    page.get_by_label("Payable account (credited)").select_option("2910")
    page.get_by_role("button", name="Save mappings").click()
    expect(page.get_by_text("The mappings were saved.")).to_be_visible()
    offer = page.locator("#send-offer")
    expect(offer).to_contain_text("2 records can be sent once the connector is enabled.")
    assert accessibility_violations(page) == []

    # 4. Enable, from the offer's link; the checklist is done and goes away.
    offer.get_by_role("link", name="Enable the connector").click()
    page.get_by_role("button", name="Enable connector").click()
    expect(page.get_by_text("The Xledger connector is enabled.")).to_be_visible()
    expect(page.locator("#setup-checklist")).to_have_count(0)

    # 5. Sync from the dashboard: never green before the first send, green after it.
    page.goto(f"{live_server.url}/orgs/{org.slug}/")
    expect(page.locator("#health")).to_contain_text("Idle")
    expect(page.locator("#setup-checklist")).to_have_count(0)
    page.get_by_role("button", name="Trigger Sync Now").click()
    page.get_by_role("button", name="Start sync").click()
    expect(page.locator("#last-outcome")).to_contain_text(
        "Sync finished: 2 records sent.", timeout=30_000
    )
    expect(page.locator("#health")).to_contain_text("Healthy")
    expect(page.locator("#latest-records .state-synced")).to_have_count(2)
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in FinancialRecord.objects.all()}
    assert accessibility_violations(page) == []


@pytest.mark.parametrize("language", ["en", "nb"])
def test_s4_3_a_skipped_only_sync_is_never_shown_green(
    browser: Browser, live_server, org, org_admin, erp_sandbox, language
) -> None:
    configure(org, erp_sandbox)
    make_records(org, 3, category="meals")  # no mapping for meals
    words = WORDS[language]
    context = browser.new_context(locale=LANGUAGES[language]["locale"])
    try:
        page = context.new_page()
        log_in_as(page, live_server.url, org_admin.username, language)
        page.goto(f"{live_server.url}/orgs/{org.slug}/")
        health = page.locator("#health")
        expect(health).to_contain_text(words["needs_setup"])

        run = sync(org)  # sends nothing, skips all three
        assert (run.sent, run.skipped) == (0, 3)
        expect(page.locator("#last-outcome")).to_be_visible(timeout=LIVE_TIMEOUT)
        expect(health).to_contain_text(words["needs_setup"])
        expect(health).not_to_contain_text(words["healthy"])
        expect(page.locator(".health-green")).to_have_count(0)
        expect(page.locator("#waiting-count")).to_have_text("3")
        expect(page.locator("#waiting-for-mapping")).to_contain_text(words["waiting"])
        expect(page.locator("#waiting-for-mapping")).to_contain_text("meals (3)")
        expect(page.locator("#latest-records .state-skipped")).to_have_count(3)
        assert accessibility_violations(page) == []
    finally:
        context.close()


def test_s4_5_s4_6_an_open_dashboard_turns_overdue_without_a_reload(
    page: Page, live_server, org, org_admin, erp_sandbox
) -> None:
    configure(org, erp_sandbox)
    start = timezone.now()
    with time_machine.travel(start, tick=True) as traveller:
        FinancialRecord.objects.filter(
            pk__in=[r.pk for r in make_records(org, 1, start=50)]
        ).update(state="synced")
        SyncRun.objects.create(
            organization=org,
            connector="xledger",
            trigger="schedule",
            status="succeeded",
            sent=1,
            finished_at=start - timedelta(hours=26),
        )
        make_records(org, 3)  # just arrived: on their way, not overdue yet
        open_dashboard(page, live_server, org, org_admin.username)
        page.evaluate("window.notReloaded = true")
        health = page.locator("#health")
        expect(health).to_contain_text("Idle")
        expect(page.locator("#overdue-warning")).to_have_count(0)

        # Sixteen minutes pass and nothing in the database changes.
        traveller.shift(timedelta(minutes=16))
        expect(health).to_contain_text("Overdue", timeout=LIVE_TIMEOUT)
        expect(page.locator("#overdue-warning")).to_be_visible()
        assert page.evaluate("window.notReloaded") is True
        assert accessibility_violations(page) == []


def test_s4_6_the_latest_records_follow_a_sync_without_a_reload(
    page: Page, live_server, org, org_admin, erp_sandbox
) -> None:
    configure(org, erp_sandbox)
    make_records(org, 4)
    open_dashboard(page, live_server, org, org_admin.username)
    rows = page.locator("#latest-records tbody tr")
    expect(rows).to_have_count(4)
    expect(page.locator("#latest-records .state-pending")).to_have_count(4)
    page.evaluate("window.notReloaded = true")

    sync(org, trigger="schedule")  # this test process, not the page, does the sending

    expect(page.locator("#latest-records .state-synced")).to_have_count(4, timeout=LIVE_TIMEOUT)
    expect(page.locator("#latest-records .state-pending")).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True
    assert accessibility_violations(page) == []
