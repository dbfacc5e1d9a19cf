"""Helpers for the browser tests: log in through the real page, run axe-core."""

from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

from tests.conftest import PASSWORD, totp_code

_axe = Axe()


def log_in(page: Page, base_url: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    pass_second_step(page, username)


def pass_second_step(page: Page, username: str) -> None:
    """If the login asks for the second factor (global admins have an app: conftest.py),
    type the code the app would show, in whatever language the page is in."""
    if "/accounts/two-factor/verify/" not in page.url:
        return
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username=username)
    page.locator("input[name=code]").fill(totp_code(user))
    page.locator("form:has(input[name=code]) button[type=submit]").click()
    page.wait_for_load_state()


def accessibility_violations(page: Page) -> list[str]:
    """axe-core's violations on the page as it is now, one readable line each."""
    results = _axe.run(page)
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']} — "
        + "; ".join(node["target"][0] for node in violation["nodes"][:3])
        for violation in results.response["violations"]
    ]
