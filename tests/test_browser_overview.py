"""S4.2 and S5 in Chromium: a global admin watches every organization, by keyboard alone."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from organizations.models import Organization
from tests.browser import accessibility_violations, log_in
from tests.test_overview import add_finished_run, add_records, erring, make_org, overdue

pytestmark = pytest.mark.browser

LIVE = 10_000  # ms: a poll every 2 s, with room for a slow machine


@pytest.fixture
def platform(db) -> None:
    make_org("Alpha", pending=5, synced_ago=timedelta(hours=3))
    erring("Bravo", failed=3)
    overdue("Charlie")
    make_org("Delta", connector="business_central", pending=1)
    make_org("Echo", connector=None, synced_ago=None)


def shown(page: Page) -> list[str]:
    return page.locator("#overview-live tbody th[scope=row]").all_inner_texts()


def follow(page: Page, locator) -> None:
    """Keyboard only: focus a link or button and press Enter."""
    locator.focus()
    expect(locator).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_load_state()


def test_s5_a_global_admin_sorts_filters_watches_live_and_drills_in_by_keyboard(
    page: Page, live_server, platform, global_admin
) -> None:
    log_in(page, live_server.url, global_admin.username)
    expect(page).to_have_url(f"{live_server.url}/orgs/")
    # S5.1-S5.3: problems first; health in words; the failed row and the stale one say so.
    assert shown(page) == ["Charlie", "Bravo", "Alpha", "Delta", "Echo"]
    expect(page.locator("#org-bravo")).to_have_class(re.compile(r"overview-row-amber"))
    expect(page.locator("#org-bravo")).to_contain_text("Errors")
    expect(page.locator("#org-charlie")).to_have_class(re.compile(r"overview-row-red"))
    expect(page.locator("#org-charlie")).to_contain_text("Stale: no sync for more than 24 hours")
    expect(page.locator("#total-organizations")).to_have_text("5")
    assert accessibility_violations(page) == []

    # S5.5: sort by errors, most first, with a real link; the header says how it is sorted.
    follow(page, page.get_by_role("link", name=re.compile(r"^Errors\W+sort descending")))
    expect(page).to_have_url(re.compile(r"\?sort=-errors$"))
    assert shown(page)[0] == "Bravo"
    expect(page.get_by_role("columnheader", name=re.compile("^Errors"))).to_have_attribute(
        "aria-sort", "descending"
    )

    # S5.5: filter by name and health; the sort stays, and so do the filters in the URL.
    page.get_by_label("Name contains").focus()
    page.keyboard.type("a")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Health")).to_be_focused()
    page.get_by_label("Health").select_option("green")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Apply filters")).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page).to_have_url(re.compile(r"\?q=a&health=green&connector=&sort=-errors$"))
    assert shown(page) == ["Alpha", "Delta"]
    expect(page.locator("#shown-count")).to_have_text("2 of 5 organizations match the filters.")
    expect(page.locator("#total-organizations")).to_have_text("5")  # totals: the platform
    assert accessibility_violations(page) == []

    follow(page, page.get_by_role("link", name="Show every organization"))
    expect(page).to_have_url(re.compile(r"\?sort=-errors$"))
    assert len(shown(page)) == 5

    # S5.6: a sync finished by another process shows up without a reload, and is announced.
    page.evaluate("window.notReloaded = true")
    delta = Organization.objects.get(slug="delta")
    add_records(delta, "failed", 2)
    add_finished_run(delta, timedelta(0), status="partial", failed=2)
    Organization.touch(delta.pk)

    expect(page.locator("#org-delta")).to_contain_text("Errors", timeout=LIVE)
    expect(page.locator("#org-delta")).to_have_class(re.compile(r"overview-row-amber"))
    expect(page.locator("#total-failed")).to_have_text("5")
    expect(page.locator("#announcer")).to_have_text(
        "Overview updated: 1 organization overdue, 2 organizations with errors."
    )
    assert shown(page)[:2] == ["Bravo", "Delta"]  # still sorted by errors
    assert page.evaluate("window.notReloaded") is True
    assert accessibility_violations(page) == []

    # S5.4: drill into the organization's failed records, then its dashboard.
    follow(page, page.get_by_role("link", name="Failed records of Delta", exact=True))
    expect(page).to_have_url(f"{live_server.url}/orgs/delta/failed/")
    page.go_back()
    follow(page, page.get_by_role("link", name="Delta", exact=True))
    expect(page).to_have_url(f"{live_server.url}/orgs/delta/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Delta")


def test_s5_the_overview_passes_axe_in_norwegian(
    page: Page, live_server, platform, global_admin
) -> None:
    log_in(page, live_server.url, global_admin.username)
    page.context.add_cookies([{"name": "django_language", "value": "nb", "url": live_server.url}])
    page.goto(f"{live_server.url}/orgs/?sort=-errors&health=amber")
    expect(page.locator("html")).to_have_attribute("lang", "nb")
    assert shown(page) == ["Bravo"]
    assert accessibility_violations(page) == []
