"""S8 in Chromium: an auditor filters, opens an entry, and exports what the filter matches."""

from __future__ import annotations

import csv
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from tests.browser import accessibility_violations, log_in
from tests.test_audit_log import make_attempts

pytestmark = pytest.mark.browser
OSLO = ZoneInfo("Europe/Oslo")


def test_s8_an_auditor_filters_opens_an_entry_and_exports_the_same_rows(
    page: Page, live_server, org, auditor
) -> None:
    make_attempts(
        org,
        4,
        status="failed",
        error="Perioden er stengt for 2026-03-01",
        when=datetime(2026, 3, 2, 9, 0, tzinfo=OSLO),
    )
    make_attempts(org, 3, when=datetime(2026, 3, 2, 10, 0, tzinfo=OSLO), start=10)
    make_attempts(
        org,
        2,
        status="failed",
        error="Older failure",
        when=datetime(2026, 2, 1, 9, 0, tzinfo=OSLO),
        start=20,
    )

    log_in(page, live_server.url, auditor.username)
    page.goto(f"{live_server.url}/orgs/{org.slug}/audit/")
    assert accessibility_violations(page) == []

    page.get_by_label("From date").fill("2026-03-01")
    page.get_by_label("To date (inclusive)").fill("2026-03-31")
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Apply filter").click()

    rows = page.locator("tbody tr")
    expect(rows).to_have_count(4)
    expect(page.locator("tbody")).to_contain_text("Perioden er stengt")
    expect(page.locator("tbody")).not_to_contain_text("Older failure")
    assert "status=failed" in page.url  # the filter is in the URL, to share

    rows.first.get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Attempt 1 for")
    expect(page.get_by_label("Payload sent")).to_contain_text(":D")
    assert accessibility_violations(page) == []
    page.go_back()

    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    with open(download.value.path(), encoding="utf-8-sig") as exported:
        lines = list(csv.DictReader(exported, delimiter=";"))
    assert len(lines) == 4
    assert {line["status"] for line in lines} == {"failed"}
    assert all("Perioden er stengt" in line["error_message"] for line in lines)


@pytest.mark.worker
def test_s8_6_verify_now_names_a_row_edited_behind_the_applications_back(
    page: Page, live_server, org, auditor, celery_worker
) -> None:
    from audit.tasks import verify_chains
    from tests.test_audit_chain import behind_the_applications_back

    rows = make_attempts(org, 40)  # newest first
    verify_chains()
    log_in(page, live_server.url, auditor.username)
    page.goto(f"{live_server.url}/orgs/{org.slug}/audit/")
    badge = page.locator("#chain-badge")
    expect(badge).to_contain_text(f"Chain verified up to row {rows[0].pk} at")
    expect(badge).to_contain_text("(40 rows intact).")
    assert accessibility_violations(page) == []

    edited = rows[25]
    behind_the_applications_back(
        "UPDATE sync_logs SET error_message = %s WHERE id = %s", ["all good", edited.pk]
    )
    page.get_by_role("button", name="Verify now").click()

    expect(badge).to_contain_text(f"Chain broken at row {edited.pk}", timeout=30_000)
    expect(badge).to_contain_text("its content was changed after it was written")
    expect(page.locator("#announcer")).to_contain_text(
        f"Verification finished: the chain is broken at row {edited.pk}."
    )
    expect(page.get_by_role("button", name="Verify now")).to_be_visible()
    assert accessibility_violations(page) == []

    badge.get_by_role("link", name=f"Open row {edited.pk}").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(edited.reference)


def test_trail_an_admin_follows_it_from_the_audit_log_and_filters_by_action(
    page: Page, live_server, org, org_admin
) -> None:
    from audit.models import AdminAction

    AdminAction.record(
        org_admin,
        org,
        AdminAction.Kind.MAPPINGS_CHANGED,
        changes={"reise": {"from": ["7130", "300"], "to": ["7140", "300"]}},
    )
    AdminAction.record(org_admin, org, AdminAction.Kind.CREDENTIALS_CHANGED, fields=["api_token"])
    AdminAction.record(
        org_admin, org, AdminAction.Kind.SYNC_TRIGGERED, run=7, trigger="retry", records=2
    )

    log_in(page, live_server.url, org_admin.username)
    page.goto(f"{live_server.url}/orgs/{org.slug}/audit/")
    page.get_by_role("link", name="Administrative trail").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Administrative trail")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("Retry requested")
    expect(rows.first).to_contain_text("own-admin")
    assert accessibility_violations(page) == []

    # By keyboard: choose the action, then submit the form.
    page.get_by_label("Action").focus()
    page.get_by_label("Action").select_option("mappings_changed")
    page.keyboard.press("Tab")  # to "Done by"
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Apply filter")).to_be_focused()
    page.keyboard.press("Enter")

    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Mappings changed")
    expect(rows.first).to_contain_text("reise: 7130 / 300 → 7140 / 300")
    assert "kind=mappings_changed" in page.url
    assert accessibility_violations(page) == []
