"""The login and home pages in a real Chromium, as a person uses them."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser import accessibility_violations, log_in
from tests.conftest import PASSWORD, totp_code

pytestmark = pytest.mark.browser


def test_an_org_admin_logs_in_and_lands_on_their_organization(
    page: Page, live_server, org, org_admin
) -> None:
    page.goto(live_server.url)
    expect(page).to_have_url(f"{live_server.url}/accounts/login/?next=/")
    assert accessibility_violations(page) == []

    log_in(page, live_server.url, org_admin.username)

    expect(page).to_have_url(f"{live_server.url}/orgs/{org.slug}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Blindeforbundet")
    expect(page.get_by_role("navigation", name="User")).to_contain_text(org_admin.username)
    assert accessibility_violations(page) == []


def test_a_global_admin_lands_on_the_overview_and_switches_organization_by_keyboard(
    page: Page, live_server, org, other_org, global_admin
) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    # Keyboard only: the login form puts the cursor in the username field.
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type(global_admin.username)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    # Then the second factor (issue 12 item 2), the cursor again in its field.
    expect(page.get_by_label("Authentication code")).to_be_focused()
    page.keyboard.type(totp_code(global_admin))
    page.keyboard.press("Enter")

    expect(page).to_have_url(f"{live_server.url}/orgs/")
    expect(page.get_by_role("heading", level=1)).to_have_text("All organizations")
    expect(page.get_by_role("row", name="HLF")).to_be_visible()
    assert accessibility_violations(page) == []

    switcher = page.get_by_label("Organization")
    switcher.focus()
    switcher.select_option("hlf")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live_server.url}/orgs/hlf/")
    expect(page.get_by_role("heading", level=1)).to_have_text("HLF")
    assert accessibility_violations(page) == []


def test_a_wrong_password_is_said_plainly_and_accessibly(
    page: Page, live_server, org_admin
) -> None:
    log_in(page, live_server.url, org_admin.username, password="wrong")

    expect(page.get_by_role("alert")).to_contain_text("enter a correct username and password")
    assert accessibility_violations(page) == []


def test_an_auditor_is_told_the_page_is_read_only(page: Page, live_server, org, auditor) -> None:
    log_in(page, live_server.url, auditor.username)

    expect(page.get_by_text("You have read-only access as an auditor.")).to_be_visible()


def test_logging_out_returns_to_the_login_page(page: Page, live_server, org_admin) -> None:
    log_in(page, live_server.url, org_admin.username)

    page.get_by_role("button", name="Log out").click()

    expect(page).to_have_url(f"{live_server.url}/accounts/login/")
    page.goto(f"{live_server.url}/orgs/blindeforbundet/")
    expect(page).to_have_url(f"{live_server.url}/accounts/login/?next=/orgs/blindeforbundet/")
