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
