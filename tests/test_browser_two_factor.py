"""Issue 12 item 2 in Chromium: setting up two-factor authentication and logging in with it
by keyboard alone, and the lockout message, with no axe-core violations in English and in
Norwegian Bokmål."""

from __future__ import annotations

import base64
import time

import pytest
from django.urls import reverse
from django_otp.oath import totp
from playwright.sync_api import Browser, Page, expect

from tests.browser import accessibility_violations
from tests.conftest import PASSWORD, make_user, totp_code

pytestmark = pytest.mark.browser

LOCALES = {"en": "en-GB", "nb": "nb-NO"}


def tab_to(page: Page, selector: str, presses: int = 40) -> None:
    """Press Tab from where the focus is until the element has it, as a keyboard user would."""
    target = page.locator(selector)
    for _ in range(presses):
        if target.evaluate("element => element === document.activeElement"):
            return
        page.keyboard.press("Tab")
    expect(target).to_be_focused()


def log_in_by_keyboard(page: Page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}{reverse('login')}")
    tab_to(page, "input[name=username]")
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    submit(page)


def submit(page: Page) -> None:
    """Enter in the field sends the form; wait for the page it leads to."""
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_load_state()


def wait_until_a_code_is_allowed(user, timeout: float = 10) -> None:
    """django-otp refuses every code for a while after a wrong one it checked (1 s after
    the first): wait for exactly that, read from the device, not for a guessed time."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    deadline = time.monotonic() + timeout
    for device in TOTPDevice.objects.filter(user=user):
        while not device.verify_is_allowed()[0]:
            assert time.monotonic() < deadline, "the app's codes stayed refused"
            time.sleep(0.05)
            device.refresh_from_db()


def app_code(secret_text: str) -> str:
    """What an authenticator app shows for the key as the page writes it."""
    secret = secret_text.replace(" ", "")
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    return f"{totp(key):06d}"


def clean(page: Page, language: str) -> list[str]:
    expect(page.locator("html")).to_have_attribute("lang", language)
    return accessibility_violations(page)


@pytest.mark.parametrize("language", ["en", "nb"])
def test_issue12_item2_enrolment_and_login_by_keyboard_are_axe_clean(
    browser: Browser, live_server, transactional_db, language
) -> None:
    boss = make_user("new-boss", superuser=True)
    found: dict[str, list[str]] = {}
    context = browser.new_context(locale=LOCALES[language])
    try:
        page = context.new_page()
        log_in_by_keyboard(page, live_server.url, boss.username, PASSWORD)

        # Sent to set up the app, whatever was asked for.
        expect(page).to_have_url(f"{live_server.url}{reverse('two_factor')}?next=%2F")
        expect(page.locator(".qr-code svg")).to_be_visible()
        found["enrol"] = clean(page, language)

        # A wrong code: refused, said at once (role=alert), the field marked.
        tab_to(page, "input[name=code]")
        page.keyboard.type("12")
        submit(page)
        expect(page.get_by_role("alert")).to_be_visible()
        expect(page.locator("input[name=code]")).to_have_attribute("aria-invalid", "true")
        found["enrol-error"] = clean(page, language)

        # The right one, computed as an app would from the key typed in by hand.
        wait_until_a_code_is_allowed(boss)  # django-otp's wait after a wrong code it checked
        page.locator("input[name=code]").focus()
        page.keyboard.type(app_code(page.locator("#totp-secret").input_value()))
        submit(page)
        expect(page).to_have_url(f"{live_server.url}{reverse('two_factor_recovery_codes')}")
        expect(page.locator(".recovery-codes li")).to_have_count(10)
        found["recovery-codes"] = clean(page, language)

        page.goto(f"{live_server.url}{reverse('two_factor')}")
        found["two-factor"] = clean(page, language)
        page.goto(f"{live_server.url}{reverse('lockouts')}")
        found["lockouts"] = clean(page, language)
    finally:
        context.close()

    # A new login: the password, then the code, by keyboard.
    context = browser.new_context(locale=LOCALES[language])
    try:
        page = context.new_page()
        log_in_by_keyboard(page, live_server.url, boss.username, PASSWORD)
        expect(page).to_have_url(f"{live_server.url}{reverse('two_factor_verify')}?next=%2F")
        found["verify"] = clean(page, language)
        tab_to(page, "input[name=code]")
        page.keyboard.type(totp_code(boss))
        submit(page)
        expect(page).to_have_url(f"{live_server.url}{reverse('overview')}")
    finally:
        context.close()

    assert {name: problems for name, problems in found.items() if problems} == {}


@pytest.mark.parametrize("language", ["en", "nb"])
def test_issue12_item2_the_lockout_message_is_shown_and_axe_clean(
    browser: Browser, live_server, org_admin, language
) -> None:
    context = browser.new_context(locale=LOCALES[language])
    try:
        page = context.new_page()
        for _ in range(5):
            log_in_by_keyboard(page, live_server.url, org_admin.username, "wrong")
        log_in_by_keyboard(page, live_server.url, org_admin.username, PASSWORD)
        alert = page.get_by_role("alert")
        expect(alert).to_be_visible()
        if language == "en":
            expect(alert).to_contain_text("Logging in is locked.")
            expect(alert).to_contain_text("Try again in 15 minutes")
        expect(page).to_have_url(f"{live_server.url}{reverse('login')}")
        assert clean(page, language) == []
    finally:
        context.close()
