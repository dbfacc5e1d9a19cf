"""The integration settings pages (S1, S2) as the server answers them.

The same flows in Chromium, with a real worker and the ERP sandbox, are in
test_browser_integration.py.
"""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AdminAction
from integrations.models import CategoryMapping, ConnectionTest, Integration

TOKEN = "xl-super-secret-token-9f8e7d"
SECRET = "bc-client-secret-1a2b3c"

XLEDGER_FORM = {
    "connector": "xledger",
    "base_url": "https://www.xledger.net/graphql",
    "xledger_auth": "token",
    "api_token": TOKEN,
    "cost_center_object": "1",
    "cost_center_kind_db_id": "101",
}
BC_FORM = {
    "connector": "business_central",
    "base_url": "https://api.businesscentral.dynamics.com",
    "authority_host": "https://login.microsoftonline.com",
    "tenant_id": "3f2b9c4e-5d6a-4b7c-8e9f-0a1b2c3d4e5f",
    "environment": "production",
    "company_id": "8a4c2e6f-1b3d-4a5c-9e7f-6d8b0a2c4e6f",
    "client_id": "5c1e7a92-0d3b-4f6e-9a8c-2b4d6f8a0c1e",
    "client_secret": SECRET,
    "journal_code": "UTLEGG",
    "cost_center_dimension": "AVDELING",
}


def settings_url(org) -> str:
    return reverse("integration_settings", args=[org.slug])


def save(client: Client, org, form: dict):
    return client.post(settings_url(org), form)


def verified(integration: Integration) -> Integration:
    """As if Test Connection had passed and listed these accounts and cost centers."""
    integration.connection_verified_at = timezone.now()
    integration.erp_accounts = [
        {"code": "7130", "name": "Reisekostnad"},
        {"code": "2910", "name": "Gjeld til ansatte"},
    ]
    integration.erp_cost_centers = [{"code": "300", "name": "Ledsagertjeneste"}]
    integration.save()
    return integration


def mapped(integration: Integration) -> Integration:
    """As if the mappings page had chosen a payable account and mapped travel."""
    integration.payable_account = "2910"
    integration.save()
    CategoryMapping.objects.update_or_create(
        integration=integration,
        category="travel",
        defaults={"account_code": "7130", "cost_center_code": "300"},
    )
    return integration


# --- S1.1: only the chosen system's fields --------------------------------------------------


def test_s1_1_xledger_shows_only_xledger_fields(admin_client, org) -> None:
    page = admin_client.get(settings_url(org), {"connector": "xledger"}).content.decode()
    assert 'name="api_token"' in page and 'name="cost_center_kind_db_id"' in page
    assert 'name="tenant_id"' not in page and 'name="authority_host"' not in page


def test_s1_1_dynamics_shows_only_dynamics_fields(admin_client, org) -> None:
    page = admin_client.get(settings_url(org), {"connector": "business_central"}).content.decode()
    assert 'name="tenant_id"' in page and 'name="authority_host"' in page
    assert 'name="api_token"' not in page and 'name="cost_center_kind_db_id"' not in page


def test_s1_1_choosing_a_system_swaps_in_only_its_fields(admin_client, org) -> None:
    fragment = admin_client.get(
        settings_url(org),
        {"connector": "business_central"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="connector-fields",
    ).content.decode()
    assert fragment.lstrip().startswith('<div id="connector-fields">')
    assert 'name="tenant_id"' in fragment and "<html" not in fragment


def test_s1_1_saving_one_system_keeps_no_fields_of_the_other(admin_client, org) -> None:
    save(admin_client, org, {**BC_FORM, "api_token": "ignored", "cost_center_kind_db_id": "7"})
    integration = Integration.objects.get(organization=org)
    assert integration.connector == "business_central"
    assert integration.cost_center_kind_db_id is None
    assert set(integration.credentials()) == {"client_secret"}


# --- S1.4: credentials encrypted, write-only ------------------------------------------------


def test_s1_4_credentials_are_stored_as_ciphertext(admin_client, org) -> None:
    save(admin_client, org, XLEDGER_FORM)
    integration = Integration.objects.get(organization=org)
    assert TOKEN not in integration.credentials_ciphertext
    assert integration.credentials_ciphertext.startswith("gAAAAA")  # a Fernet token
    assert integration.credentials() == {"api_token": TOKEN}


def test_s1_4_a_saved_secret_is_never_shown_again(admin_client, org, auditor, global_admin) -> None:
    save(admin_client, org, XLEDGER_FORM)
    save(admin_client, org, BC_FORM | {"connector": "xledger"} | XLEDGER_FORM)
    for user in (auditor, global_admin):
        client = Client()
        client.force_login(user)
        for url in (
            settings_url(org),
            reverse("integration_connection", args=[org.slug]),
            reverse("integration_mappings", args=[org.slug]),
        ):
            assert TOKEN not in client.get(url).content.decode()
    page = admin_client.get(settings_url(org)).content.decode()
    assert TOKEN not in page
    assert "Saved. Leave blank to keep it" in page


def test_s1_4_leaving_a_secret_blank_keeps_the_saved_one(admin_client, org) -> None:
    save(admin_client, org, XLEDGER_FORM)
    response = save(admin_client, org, {**XLEDGER_FORM, "api_token": ""})
    assert response.status_code == 302
    assert Integration.objects.get(organization=org).credentials() == {"api_token": TOKEN}


def test_s1_4_a_first_save_without_the_secret_is_refused(admin_client, org) -> None:
    Integration.objects.filter(organization=org).delete()
    response = save(admin_client, org, {**XLEDGER_FORM, "api_token": ""})
    assert response.status_code == 200
    assert response.context["form"].errors["api_token"] == ["This is needed to connect."]
    assert not Integration.objects.filter(organization=org).exists()


def test_s1_4_keys_can_be_rotated_by_command(admin_client, org, settings) -> None:
    save(admin_client, org, XLEDGER_FORM)
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old_key]

    call_command("reencrypt_credentials", stdout=io.StringIO())

    settings.FIELD_ENCRYPTION_KEYS = settings.FIELD_ENCRYPTION_KEYS[:1]  # the old key is gone
    assert Integration.objects.get(organization=org).credentials() == {"api_token": TOKEN}


def test_s1_4_rotation_stops_if_a_value_cannot_be_read(admin_client, org, settings) -> None:
    save(admin_client, org, XLEDGER_FORM)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("reencrypt_credentials", stdout=io.StringIO())


# --- the ERP address: https on an allow-listed host -----------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://www.xledger.net/graphql", "must start with https://"),
        ("https://evil.example.com/graphql", "is not an accounting system host"),
        ("https://169.254.169.254/latest", "is not an accounting system host"),
        ("https://user:pw@www.xledger.net/graphql", "must not contain a user name"),
    ],
)
def test_an_erp_address_outside_the_allow_list_is_refused(admin_client, org, url, message) -> None:
    response = save(admin_client, org, {**XLEDGER_FORM, "base_url": url})
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors["base_url"])


# --- S1.6 / S2.5: every change recorded, never a secret's value ----------------------------


def test_s1_6_changes_of_credentials_are_recorded_without_their_values(
    admin_client, org, org_admin
) -> None:
    save(admin_client, org, XLEDGER_FORM)
    save(admin_client, org, {**XLEDGER_FORM, "api_token": "a-new-token-value"})

    credential_changes = AdminAction.objects.filter(kind="credentials_changed")
    assert credential_changes.count() == 2
    assert {a.actor for a in credential_changes} == {org_admin}
    every_detail = str(list(AdminAction.objects.values("detail")))
    assert TOKEN not in every_detail and "a-new-token-value" not in every_detail
    first_change = credential_changes.first()
    assert first_change is not None and first_change.detail["fields"] == ["api_token"]


def test_changing_the_connection_disables_the_connector_and_asks_for_a_new_test(
    admin_client, org
) -> None:
    save(admin_client, org, XLEDGER_FORM)
    integration = mapped(verified(Integration.objects.get(organization=org)))
    assert integration.set_enabled(True, None) is None

    save(admin_client, org, {**XLEDGER_FORM, "cost_center_kind_db_id": "102"})

    integration.refresh_from_db()
    assert not integration.enabled and integration.connection_verified_at is None
    assert AdminAction.objects.filter(kind="connector_disabled").exists()


def test_switching_system_removes_the_old_credentials_and_mappings(admin_client, org) -> None:
    save(admin_client, org, XLEDGER_FORM)
    integration = verified(Integration.objects.get(organization=org))
    CategoryMapping.objects.create(
        integration=integration, category="travel", account_code="7130", cost_center_code="300"
    )

    save(admin_client, org, BC_FORM)

    integration.refresh_from_db()
    assert integration.credentials() == {"client_secret": SECRET}
    assert not integration.mappings.exists()


# --- S2.1 / S2.4 / S2.5: the enable toggle -----------------------------------------------------


def toggle(client: Client, org, enabled: bool):
    return client.post(
        reverse("integration_toggle", args=[org.slug]),
        {"enabled": "true" if enabled else "false"},
        follow=True,
    )


def test_s2_4_the_connector_cannot_be_enabled_before_a_passed_test(admin_client, org) -> None:
    save(admin_client, org, XLEDGER_FORM)

    page = toggle(admin_client, org, True).content.decode()

    assert "Run Test Connection and make it pass first." in page
    assert not Integration.objects.get(organization=org).enabled
    assert not AdminAction.objects.filter(kind="connector_enabled").exists()


def test_s2_4_the_connector_cannot_be_enabled_without_credentials(admin_client, org) -> None:
    integration = verified(Integration.objects.get(organization=org))
    assert not integration.has_credentials

    page = toggle(admin_client, org, True).content.decode()

    assert "Save the credentials first." in page
    assert not Integration.objects.get(organization=org).enabled


def test_s2_1_and_s2_5_enabling_and_disabling_is_shown_and_recorded(
    admin_client, org, org_admin
) -> None:
    save(admin_client, org, XLEDGER_FORM)
    mapped(verified(Integration.objects.get(organization=org)))

    page = toggle(admin_client, org, True).content.decode()
    assert "Xledger connector:" in page and "Enabled" in page
    assert Integration.objects.get(organization=org).enabled

    toggle(admin_client, org, False)
    assert not Integration.objects.get(organization=org).enabled

    actions = list(
        AdminAction.objects.filter(kind__in=["connector_enabled", "connector_disabled"]).order_by(
            "id"
        )
    )
    assert [(a.kind, a.actor) for a in actions] == [
        ("connector_enabled", org_admin),
        ("connector_disabled", org_admin),
    ]
    assert all(a.created_at for a in actions)


# --- S1.5: mappings chosen from what the ERP returned ----------------------------------------


def mappings_url(org) -> str:
    return reverse("integration_mappings", args=[org.slug])


def test_s1_5_mappings_wait_for_a_passed_connection_test(admin_client, org) -> None:
    page = admin_client.get(mappings_url(org)).content.decode()
    assert "Save the credentials and run Test Connection first." in page


def test_s1_5_a_category_is_mapped_to_an_account_and_cost_center(
    admin_client, org, org_admin
) -> None:
    verified(Integration.objects.get(organization=org))
    response = admin_client.post(
        mappings_url(org),
        {
            "new_category": "travel",
            "new_account": "7130",
            "new_cost_center": "300",
            "payable_account": "2910",
        },
    )
    assert response.status_code == 302
    mapping = CategoryMapping.objects.get(integration__organization=org)
    assert (mapping.category, mapping.account_code, mapping.cost_center_code) == (
        "travel",
        "7130",
        "300",
    )
    assert Integration.objects.get(organization=org).payable_account == "2910"
    action = AdminAction.objects.get(kind="mappings_changed")
    assert action.actor == org_admin
    assert action.detail["changes"]["travel"] == {"from": [], "to": ["7130", "300"]}


def test_s1_5_an_account_the_erp_does_not_have_is_refused_clearly(admin_client, org) -> None:
    verified(Integration.objects.get(organization=org))
    response = admin_client.post(
        mappings_url(org),
        {
            "new_category": "travel",
            "new_account": "9999",
            "new_cost_center": "300",
        },
    )
    assert response.status_code == 200
    errors = response.context["form"].errors["new_account"]
    assert "9999 is not in what Xledger returned at the last connection test" in errors[0]
    assert not CategoryMapping.objects.exists()


def test_s1_5_categories_of_received_records_are_listed(admin_client, org) -> None:
    from accounting_sync.models import FinancialRecord

    verified(Integration.objects.get(organization=org))
    FinancialRecord.objects.create(
        organization=org,
        source_id="r1",
        kind="reimbursement",
        category="mileage",
        amount="10.00",
        expense_date="2026-03-01",
        approved_at="2026-03-02T10:00:00+01:00",
        claimant_reference="V-1",
        claimant_name="Kari",
    )
    response = admin_client.post(mappings_url(org), {"account_0": "7130", "cost_center_0": ""})
    assert response.status_code == 200
    assert response.context["form"].categories == ["mileage"]
    assert response.context["form"].errors["cost_center_0"] == [
        "Choose both an account and a cost center, or neither."
    ]


# --- Test Connection: queued for a worker, one at a time -------------------------------------


def test_test_connection_is_queued_once_while_one_is_running(
    admin_client, org, django_capture_on_commit_callbacks
) -> None:
    save(admin_client, org, XLEDGER_FORM)
    url = reverse("integration_test", args=[org.slug])
    with django_capture_on_commit_callbacks() as callbacks:
        admin_client.post(url)
        admin_client.post(url)
    assert ConnectionTest.objects.count() == 1
    assert len(callbacks) == 1  # one task sent to the worker


def test_an_unchanged_poll_of_the_connection_card_answers_204(admin_client, org) -> None:
    save(admin_client, org, XLEDGER_FORM)
    integration = Integration.objects.get(organization=org)
    test = ConnectionTest.objects.create(integration=integration)
    url = reverse("integration_connection", args=[org.slug])

    assert admin_client.get(url, {"seen": f"{test.pk}:queued"}).status_code == 204
    test.status = "running"
    test.save()
    changed = admin_client.get(url, {"seen": f"{test.pk}:queued"})
    assert changed.status_code == 200 and "Testing" in changed.content.decode()
