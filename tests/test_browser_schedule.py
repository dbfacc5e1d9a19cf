"""S9 in Chromium: the schedule page as an admin uses it, and the sync history page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateformat import format as format_date
from playwright.sync_api import Page, expect

from accounting_sync.models import SyncRun
from integrations import schedule
from integrations.models import Integration
from tests.browser import accessibility_violations, log_in

pytestmark = pytest.mark.browser


def press(page: Page, key: str, times: int = 1) -> None:
    for _ in range(times):
        page.keyboard.press(key)


def test_s9_1_to_s9_3_an_admin_previews_a_cron_expression_then_saves_daily_at_0200(
    page: Page, live_server, org, org_admin
) -> None:
    log_in(page, live_server.url, org_admin.username)
    page.goto(f"{live_server.url}/orgs/{org.slug}/integration/")
    page.get_by_role("link", name="Sync schedule").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sync schedule")
    assert accessibility_violations(page) == []

    # Keyboard only: arrow keys move through the five options, as in any radio group.
    page.get_by_role("radio", name="Manual only").focus()
    press(page, "ArrowDown", 4)
    expect(page.get_by_role("radio", name="Custom (cron)")).to_be_checked()
    cron = page.get_by_label("Cron expression")
    expect(cron).to_be_visible()
    expect(page.get_by_label("Time")).to_be_hidden()  # only the inputs Custom needs

    page.evaluate("window.notReloaded = true")
    press(page, "Tab")
    expect(cron).to_be_focused()
    page.keyboard.type("*/15 9-17 * * 1-5")
    preview = page.locator("#schedule-preview")
    expect(preview).to_contain_text(
        "Every 15 minutes, between 09:00 and 17:59, Monday through Friday."
    )
    expect(preview.get_by_role("listitem")).to_have_count(5)

    press(page, "Control+A")
    page.keyboard.type("0 25 * * *")
    expect(preview).to_contain_text('The hour field "25" is out of range: use 0 to 23.')
    expect(preview.get_by_role("listitem")).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True  # all of it without a reload
    assert accessibility_violations(page) == []

    page.get_by_role("radio", name="Custom (cron)").focus()
    press(page, "ArrowUp", 3)
    expect(page.get_by_role("radio", name="Daily")).to_be_checked()
    expect(cron).to_be_hidden()
    page.get_by_label("Time").fill("02:00")
    expect(preview).to_contain_text("Every day at 02:00.")
    page.get_by_role("button", name="Save schedule").click()

    expect(page.get_by_text("The schedule was saved. The next sync is")).to_be_visible()
    integration = Integration.objects.select_related("organization").get(organization=org)
    first = schedule.next_runs(integration)[0].moment
    expect(page.locator(".next-run")).to_contain_text(format_date(first, "l j F Y, H:i T"))
    assert first.strftime("%H:%M") in ("02:00", "03:00")  # 03:00 only on a spring-forward night
    assert accessibility_violations(page) == []


def test_the_sync_history_page_is_accessible(page: Page, live_server, org, org_admin) -> None:
    run = SyncRun.objects.create(
        organization=org,
        connector="xledger",
        trigger="manual",
        triggered_by=org_admin,
        status="partial",
        total=5,
        sent=3,
        failed=1,
        skipped=1,
        skip_reasons=[{"code": "no_mapping", "category": "parking", "count": 1}],
    )
    SyncRun.objects.filter(pk=run.pk).update(finished_at=timezone.now() + timedelta(seconds=4))
    SyncRun.objects.create(organization=org, connector="xledger", trigger="schedule")
    log_in(page, live_server.url, org_admin.username)
    page.get_by_role("link", name="Sync history").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Sync history")
    expect(page.get_by_role("row")).to_have_count(3)
    expect(page.get_by_role("cell", name="1 waiting for a mapping: parking")).to_be_visible()
    expect(page.get_by_role("cell", name="3 sent, 1 failed, 1 skipped.")).to_be_visible()
    assert accessibility_violations(page) == []
