"""Issue 11, item 6: the integration settings form shows only the chosen sign-in method's
fields, with help that names only the chosen system; the dashboard agrees with the
settings page about saved credentials. The same page in Chromium is in
test_browser_issue11_edges.py."""

from __future__ import annotations

import re

from django.test import Client
from django.urls import reverse

from integrations.models import Integration
from tests.test_integration_settings import BC_FORM, XLEDGER_FORM, save, settings_url

OAUTH2_ONLY = ("token_url", "client_id", "oauth_scope", "client_secret")


def names_in(page: str) -> set[str]:
    return set(re.findall(r'name="([a-z_]+)"', page))


def help_texts(page: str) -> list[str]:
    return re.findall(r'<p class="muted" id="id_[a-z_]+_help">(.*?)</p>', page, re.S)


def test_s1_1_api_token_chosen_shows_no_oauth2_field(admin_client: Client, org) -> None:
    page = admin_client.get(settings_url(org), {"connector": "xledger"}).content.decode()
    assert "api_token" in names_in(page)
    assert not names_in(page) & set(OAUTH2_ONLY)


def test_s1_1_oauth2_chosen_shows_its_four_fields_and_no_api_token(
    admin_client: Client, org
) -> None:
    page = admin_client.get(
        settings_url(org), {"connector": "xledger", "xledger_auth": "oauth2"}
    ).content.decode()
    assert set(OAUTH2_ONLY) <= names_in(page)
    assert "api_token" not in names_in(page)
    assert re.search(r'value="oauth2"[^>]*checked|checked[^>]*value="oauth2"', page)


def test_s1_1_the_server_renders_the_saved_method_without_javascript(
    admin_client: Client, org
) -> None:
    Integration.objects.filter(organization=org).update(xledger_auth="oauth2")
    page = admin_client.get(settings_url(org)).content.decode()
    assert set(OAUTH2_ONLY) <= names_in(page) and "api_token" not in names_in(page)


def test_s1_1_switching_the_method_with_htmx_swaps_only_the_sign_in_fields(
    admin_client: Client, org
) -> None:
    answer = admin_client.get(
        settings_url(org),
        {"connector": "xledger", "xledger_auth": "oauth2"},
        headers={"HX-Request": "true", "HX-Target": "xledger-auth-fields"},
    ).content.decode()
    assert answer.lstrip().startswith('<div id="xledger-auth-fields">')
    assert names_in(answer) == set(OAUTH2_ONLY)  # base_url etc. stay as typed on the page


def test_s1_1_saving_oauth2_stores_its_fields_and_asks_for_what_it_needs(
    admin_client: Client, org
) -> None:
    form = {**XLEDGER_FORM, "xledger_auth": "oauth2"}
    del form["api_token"]
    refused = save(admin_client, org, form).content.decode()
    assert "This is needed to connect." in refused and 'name="token_url"' in refused
    response = save(
        admin_client,
        org,
        {
            **form,
            "token_url": "https://www.xledger.net/oauth2/token",
            "client_id": "client-1",
            "client_secret": "oauth-secret-123",
        },
    )
    assert response.status_code == 302
    saved = Integration.objects.get(organization=org)
    assert (saved.xledger_auth, saved.client_id) == ("oauth2", "client-1")
    assert saved.credentials() == {"client_secret": "oauth-secret-123"}


def test_s1_1_each_fields_help_speaks_only_of_the_chosen_system(admin_client: Client, org) -> None:
    xledger = admin_client.get(settings_url(org), {"connector": "xledger"}).content.decode()
    bc = admin_client.get(settings_url(org), {"connector": "business_central"}).content.decode()
    assert help_texts(xledger) and help_texts(bc)
    assert not [text for text in help_texts(xledger) if "Business Central" in text]
    assert not [text for text in help_texts(bc) if "Xledger" in text]


def test_s4_1_dashboard_agrees_with_settings_when_credentials_are_saved_untested(
    admin_client: Client, org
) -> None:
    save(admin_client, org, XLEDGER_FORM)
    settings_page = admin_client.get(settings_url(org)).content.decode()
    assert "Credentials: saved" in settings_page
    dashboard = admin_client.get(reverse("organization_home", args=[org.slug])).content.decode()
    assert "not set up yet" not in dashboard
    assert "Credentials are saved; Test Connection has not passed yet." in dashboard


def test_s4_1_dashboard_says_not_set_up_without_credentials(admin_client: Client, org) -> None:
    dashboard = admin_client.get(reverse("organization_home", args=[org.slug])).content.decode()
    assert "The accounting system is not set up yet." in dashboard


def test_s1_1_business_central_keeps_its_client_fields(admin_client: Client, org) -> None:
    page = admin_client.get(settings_url(org), {"connector": "business_central"}).content.decode()
    assert {"client_id", "client_secret", "tenant_id"} <= names_in(page)
    assert save(admin_client, org, BC_FORM).status_code == 302
