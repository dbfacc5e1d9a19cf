"""Issue 16 item 5 in Chromium: a person reaches their alert settings from the alerts page,
chooses e-mails by keyboard alone, and reads the page in English and Norwegian with no
axe-core violations; switching the language in the header is kept for their e-mails.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from alerts.models import AlertPreference
from tests.browser import accessibility_violations, log_in

pytestmark = pytest.mark.browser


def test_issue16_5_alert_settings_by_keyboard_in_english_and_norwegian(
    page: Page, live_server, org, org_admin
) -> None:
    org_admin.email = "ingrid@example.org"
    org_admin.save(update_fields=["email"])
    log_in(page, live_server.url, org_admin.username)

    page.goto(f"{live_server.url}/alerts/")
    page.get_by_role("link", name="Alert settings: get alerts by e-mail too").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Alert settings")
    expect(page.get_by_text("E-mails go to ingrid@example.org.")).to_be_visible()
    expect(page.get_by_role("radio", name=re.compile("^At once"))).to_be_checked()  # default
    for kind in ("Record keeps failing", "Many sync errors", "Credentials refused"):
        expect(page.get_by_role("checkbox", name=kind)).not_to_be_checked()  # in-app only
    assert accessibility_violations(page) == []

    failing = page.get_by_role("checkbox", name="Record keeps failing")
    failing.focus()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    expect(page.get_by_role("checkbox", name="Many sync errors")).to_be_focused()
    page.get_by_role("radio", name=re.compile("^At once")).focus()
    page.keyboard.press("ArrowDown")  # within the group, as radios go
    expect(page.get_by_role("radio", name=re.compile("^Once a day"))).to_be_checked()
    page.get_by_role("button", name="Save", exact=True).focus()
    page.keyboard.press("Enter")

    expect(page.get_by_text("Alert settings saved.")).to_be_visible()
    expect(failing).to_be_checked()
    saved = AlertPreference.objects.get(user=org_admin)
    assert (saved.email_kinds, saved.delivery, saved.language) == (
        ["record_failing"],
        "daily",
        "en",
    )
    assert accessibility_violations(page) == []

    page.get_by_label("Language").select_option("nb")
    page.get_by_role("button", name="Change language").click()
    expect(page.locator("html")).to_have_attribute("lang", "nb")
    expect(page.get_by_role("heading", level=1)).to_have_text("Varselinnstillinger")
    expect(page.get_by_role("checkbox", name="Bilag feiler gang på gang")).to_be_checked()
    expect(page.get_by_role("radio", name=re.compile("^Én gang om dagen"))).to_be_checked()
    expect(page.get_by_text("E-postene skrives på norsk bokmål")).to_be_visible()
    assert accessibility_violations(page) == []
    assert AlertPreference.objects.get(user=org_admin).language == "nb"  # for the e-mails
