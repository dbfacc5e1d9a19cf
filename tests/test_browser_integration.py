"""S1 and S2 in Chromium: real pages, a real worker, the ERP sandbox over HTTPS."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from integrations.models import CategoryName, Integration
from tests.browser import accessibility_violations, log_in

pytestmark = [pytest.mark.browser, pytest.mark.worker]

XLEDGER_TOKEN = "xl-demo-blindeforbundet-token"
BC = {
    "tenant": "3f2b9c4e-5d6a-4b7c-8e9f-0a1b2c3d4e5f",
    "company": "8a4c2e6f-1b3d-4a5c-9e7f-6d8b0a2c4e6f",
    "client_id": "5c1e7a92-0d3b-4f6e-9a8c-2b4d6f8a0c1e",
    "secret": "hlf-demo-secret",
}


@pytest.fixture(autouse=True)
def _trust_the_sandbox(erp_sandbox, settings) -> None:
    # Set before the worker starts, so the worker trusts the sandbox's CA too.
    settings.ERP_CA_BUNDLE = str(erp_sandbox.ca_bundle)


@pytest.fixture
def on_settings_page(page: Page, live_server, org, org_admin, celery_worker) -> Page:
    Integration.objects.filter(organization=org).delete()  # start from nothing
    log_in(page, live_server.url, org_admin.username)
    page.goto(f"{live_server.url}/orgs/{org.slug}/integration/")
    return page


SHOWN_WITH = {"Xledger": "GraphQL endpoint", "Dynamics 365 Business Central": "Tenant ID"}


def choose(page: Page, system: str) -> None:
    """Pick a system and wait, as a person would, for its fields to appear."""
    page.get_by_role("radio", name=system).check()
    expect(page.get_by_label(SHOWN_WITH[system])).to_be_visible()


def test_s1_1_choosing_a_system_shows_only_its_fields(on_settings_page: Page) -> None:
    page = on_settings_page
    choose(page, "Xledger")
    expect(page.get_by_label("API token", exact=True)).to_be_visible()
    expect(page.get_by_label("Tenant ID")).to_have_count(0)

    choose(page, "Dynamics 365 Business Central")
    expect(page.get_by_label("Tenant ID")).to_be_visible()
    expect(page.get_by_label("Application (client) ID")).to_be_visible()
    expect(page.get_by_label("API token", exact=True)).to_have_count(0)
    assert accessibility_violations(page) == []


def test_s1_2_and_s2_4_xledger_connects_lists_accounts_and_then_may_be_enabled(
    on_settings_page: Page, erp_sandbox, org
) -> None:
    page = on_settings_page
    choose(page, "Xledger")
    page.get_by_label("GraphQL endpoint").fill(f"{erp_sandbox.url}/graphql")
    page.get_by_label("API token", exact=True).fill(XLEDGER_TOKEN)
    page.get_by_label("Cost center object kind (dbId)").fill("101")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("The connection settings were saved.")).to_be_visible()

    # S2.4: not before a connection test has passed.
    enable = page.get_by_role("button", name="Enable connector")
    expect(enable).to_be_disabled()
    expect(page.get_by_text("Run Test Connection and make it pass first.")).to_be_visible()

    page.get_by_role("button", name="Test Connection").click()
    result = page.get_by_text("Connected to Xledger")
    expect(result).to_be_visible(timeout=30_000)
    expect(result).to_contain_text("ledger accounts")
    page.get_by_text("ledger accounts found").click()
    expect(page.get_by_text("Reisekostnad").first).to_be_visible()
    page.get_by_text("cost centers found").click()
    expect(page.get_by_text("Ledsagertjeneste").first).to_be_visible()
    assert accessibility_violations(page) == []

    # Issue 11: not before a payable account and a mapping either, which it says.
    expect(page.get_by_role("button", name="Enable connector")).to_be_disabled()
    expect(
        page.get_by_text("Choose the payable account on the mappings page first.")
    ).to_be_visible()
    integration = Integration.objects.get(organization=org)
    integration.payable_account = "2910"
    integration.save()
    integration.mappings.create(category="travel", account_code="7130", cost_center_code="300")
    page.reload()

    # S2.1: the toggle says clearly what state the connector is in.
    page.get_by_role("button", name="Enable connector").click()
    expect(page.get_by_text("The Xledger connector is enabled.")).to_be_visible()
    expect(page.locator(".connector-state")).to_contain_text("Enabled")
    page.get_by_role("button", name="Disable connector").click()
    expect(page.locator(".connector-state")).to_contain_text("Disabled")
    assert not Integration.objects.get(organization=org).enabled


def test_s1_3_dynamics_connects_and_lists_cost_centers(on_settings_page: Page, erp_sandbox) -> None:
    page = on_settings_page
    choose(page, "Dynamics 365 Business Central")
    page.get_by_label("API host").fill(erp_sandbox.url)
    page.get_by_label("Sign-in host (Entra ID)").fill(erp_sandbox.url)
    page.get_by_label("Tenant ID").fill(BC["tenant"])
    page.get_by_label("Company ID").fill(BC["company"])
    page.get_by_label("Application (client) ID").fill(BC["client_id"])
    page.get_by_label("Client secret").fill(BC["secret"])
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("The connection settings were saved.")).to_be_visible()

    page.get_by_role("button", name="Test Connection").click()
    expect(page.get_by_text("Connected to Dynamics 365 Business Central")).to_be_visible(
        timeout=30_000
    )
    page.get_by_text("cost centers found").click()
    expect(page.locator("details").nth(1)).to_contain_text("0300")
    assert BC["secret"] not in page.content()


def test_s1_6_a_refused_token_is_said_in_plain_words(on_settings_page: Page, erp_sandbox) -> None:
    page = on_settings_page
    choose(page, "Xledger")
    page.get_by_label("GraphQL endpoint").fill(f"{erp_sandbox.url}/graphql")
    page.get_by_label("API token", exact=True).fill("not-the-right-token")
    page.get_by_role("button", name="Save settings").click()

    page.get_by_role("button", name="Test Connection").click()

    failure = page.get_by_text("Connection test failed")
    expect(failure).to_be_visible(timeout=30_000)
    expect(failure).to_contain_text("token")
    expect(page.get_by_role("button", name="Enable connector")).to_be_disabled()
    assert "not-the-right-token" not in page.content()


def test_s1_5_mappings_are_chosen_from_the_accounts_the_erp_listed(
    on_settings_page: Page, erp_sandbox, org
) -> None:
    page = on_settings_page
    choose(page, "Xledger")
    page.get_by_label("GraphQL endpoint").fill(f"{erp_sandbox.url}/graphql")
    page.get_by_label("API token", exact=True).fill(XLEDGER_TOKEN)
    page.get_by_label("Cost center object kind (dbId)").fill("101")
    page.get_by_role("button", name="Save settings").click()
    page.get_by_role("button", name="Test Connection").click()
    expect(page.get_by_text("Connected to Xledger")).to_be_visible(timeout=30_000)

    page.get_by_role("link", name="Mappings: where each expense category is posted").click()
    page.get_by_label("New category").fill("travel")
    page.get_by_label("Account", exact=True).select_option("7130")
    page.get_by_label("Cost center", exact=True).select_option("300")
    page.get_by_label("Payable account (credited)").select_option("2910")
    page.get_by_role("button", name="Save mappings").click()

    expect(page.get_by_text("The mappings were saved.")).to_be_visible()
    expect(page.get_by_label("Account for travel")).to_have_value("7130")
    assert accessibility_violations(page) == []
    mapping = Integration.objects.get(organization=org).mappings.get()
    assert (mapping.account_code, mapping.cost_center_code) == ("7130", "300")

    # The organization names the category; the mapping keeps the slug (issue 11).
    page.get_by_label("Name shown for travel").fill("Reise og transport")
    page.get_by_role("button", name="Save mappings").click()
    expect(page.get_by_text("The mappings were saved.")).to_be_visible()
    expect(page.get_by_label("Name shown for travel")).to_have_value("Reise og transport")
    assert accessibility_violations(page) == []
    assert CategoryName.objects.get(organization=org, category="travel").name == (
        "Reise og transport"
    )
