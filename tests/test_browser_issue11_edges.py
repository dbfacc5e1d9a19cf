"""Issue 11, items 6 and 7, in Chromium: the settings form's sign-in choice, the dashboard's
progress and focus when a sync ends, the global admin's header at 1366 px, the tab icon."""

from __future__ import annotations

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounting_sync.models import SyncRun
from organizations.models import Organization
from tests.browser import accessibility_violations, log_in
from tests.factories import make_records

pytestmark = [pytest.mark.browser]

LIVE_TIMEOUT = 15_000


def open_settings(page: Page, live_server, org, username: str) -> Page:
    log_in(page, live_server.url, username)
    page.goto(f"{live_server.url}/orgs/{org.slug}/integration/")
    return page


def test_s1_1_authentication_radios_sit_left_of_their_labels_one_a_row(
    page: Page, live_server, org, org_admin
) -> None:
    open_settings(page, live_server, org, org_admin.username)
    token = page.get_by_role("radio", name="With an API token")
    oauth2 = page.get_by_role("radio", name="With OAuth2 client credentials")
    for radio in (token, oauth2):
        box = radio.bounding_box()
        label = radio.locator("xpath=..").bounding_box()
        assert box is not None and label is not None
        assert box["width"] < 30  # a radio, not stretched to the field's width
        assert abs(box["x"] - label["x"]) < 2  # at the label's left edge
        # On the words' line, not above them.
        assert label["y"] <= box["y"] and box["y"] + box["height"] <= label["y"] + label["height"]
        assert label["height"] < 2.2 * box["height"] + 8
    first, second = token.bounding_box(), oauth2.bounding_box()
    assert first is not None and second is not None
    assert second["y"] > first["y"] + first["height"]  # a list: one choice a row
    assert abs(second["x"] - first["x"]) < 2


def test_s1_1_only_the_chosen_authentications_fields_show_and_switch_live(
    page: Page, live_server, org, org_admin
) -> None:
    open_settings(page, live_server, org, org_admin.username)
    expect(page.get_by_label("API token", exact=True)).to_be_visible()
    for name in ("OAuth2 token URL", "OAuth2 client ID", "OAuth2 scope", "OAuth2 client secret"):
        expect(page.get_by_label(name)).to_have_count(0)
    page.get_by_label("GraphQL endpoint").fill("https://www.xledger.net/graphql?typed")
    page.evaluate("window.notReloaded = true")

    page.get_by_role("radio", name="With OAuth2 client credentials").check()
    expect(page.get_by_label("OAuth2 token URL")).to_be_visible()
    for name in ("OAuth2 client ID", "OAuth2 scope", "OAuth2 client secret"):
        expect(page.get_by_label(name)).to_be_visible()
    expect(page.get_by_label("API token", exact=True)).to_have_count(0)
    # Only the sign-in fields were swapped: what was typed elsewhere stays.
    expect(page.get_by_label("GraphQL endpoint")).to_have_value(
        "https://www.xledger.net/graphql?typed"
    )
    assert page.evaluate("window.notReloaded") is True
    assert accessibility_violations(page) == []

    page.get_by_role("radio", name="With an API token").check()
    expect(page.get_by_label("API token", exact=True)).to_be_visible()
    expect(page.get_by_label("OAuth2 token URL")).to_have_count(0)


def test_s3_2_progress_says_starting_then_the_real_total_and_focus_lands_on_the_outcome(
    page: Page, live_server, org, org_admin
) -> None:
    make_records(org, 3)
    log_in(page, live_server.url, org_admin.username)
    page.goto(f"{live_server.url}/orgs/{org.slug}/")
    run = SyncRun.objects.create(organization=org, connector="xledger", trigger="manual")
    Organization.touch(org.pk)
    progress = page.locator("#sync-progress-text")
    expect(progress).to_have_text("Starting…", timeout=LIVE_TIMEOUT)  # not "0 of 0"
    page.locator("#sync-progress").focus()

    SyncRun.objects.filter(pk=run.pk).update(total=3, in_flight=[])
    Organization.touch(org.pk)
    expect(progress).to_have_text("0 of 3 records done", timeout=LIVE_TIMEOUT)
    assert page.evaluate("document.activeElement.id") == "sync-progress"

    SyncRun.objects.filter(pk=run.pk).update(
        status="succeeded", done=3, sent=3, finished_at=timezone.now()
    )
    Organization.touch(org.pk)
    expect(page.locator("#sync-progress")).to_have_count(0, timeout=LIVE_TIMEOUT)
    outcome = page.locator("#last-outcome")
    expect(outcome).to_contain_text("Sync finished: 3 records sent.")
    expect(outcome).to_be_focused()  # not <body>: a keyboard user stays where the news is
    assert outcome.get_attribute("role") == "status"
    assert accessibility_violations(page) == []


def test_the_global_admins_header_fits_one_row_at_1366(
    page: Page, live_server, org, global_admin
) -> None:
    page.set_viewport_size({"width": 1366, "height": 768})
    log_in(page, live_server.url, global_admin.username)
    page.goto(f"{live_server.url}/orgs/{org.slug}/")
    header = page.locator(".site-header")
    items = header.locator(":scope > *:not(.skip-link)")
    tops = [box["y"] for box in (items.nth(i).bounding_box() for i in range(items.count())) if box]
    first = page.locator(".brand").bounding_box()
    last = page.locator(".language-picker").bounding_box()
    assert first is not None and last is not None
    assert abs(first["y"] + first["height"] / 2 - (last["y"] + last["height"] / 2)) < 4, tops
    assert max(tops) - min(tops) < 20, tops
    assert accessibility_violations(page) == []


def test_the_tab_has_an_icon(page: Page, live_server, org, org_admin) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    href = page.locator("link[rel=icon]").get_attribute("href")
    assert href
    assert page.request.get(f"{live_server.url}{href}").status == 200
    answer = page.request.get(f"{live_server.url}/favicon.ico")
    assert answer.status == 200 and answer.headers["content-type"].startswith("image/")
