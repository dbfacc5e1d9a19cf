"""Issue 10 on the pages: what an admin is told and what the forms refuse, so that a first
connection to a real Business Central or Xledger does not fail on what nobody said."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounting_sync.models import FinancialRecord
from audit.models import AdminAction
from integrations.forms import MappingsForm
from integrations.models import Integration
from tests.factories import make_records
from tests.test_dashboard import page_for, set_state, text_of
from tests.test_integration_settings import BC_FORM, XLEDGER_FORM, save, settings_url

pytestmark = pytest.mark.django_db


def verified_integration(org, connector: str = "xledger", **fields) -> Integration:
    Integration.objects.filter(organization=org).update(
        connector=connector,
        connection_verified_at=timezone.now(),
        erp_accounts=[
            {"code": "7130", "name": "Reisekostnad"},
            {"code": "2910", "name": "Gjeld til ansatte"},
        ],
        erp_cost_centers=[{"code": "300", "name": "Ledsagertjeneste"}],
        **fields,
    )
    return Integration.objects.get(organization=org)


# --- item 3: an entry that debits and credits one account ---------------------------------


def test_issue10_item3_the_payable_account_is_refused_as_an_expense_account(org) -> None:
    integration = verified_integration(org)
    form = MappingsForm(
        {"account_0": "2910", "cost_center_0": "300", "payable_account": "2910"},
        integration=integration,
        categories=["travel"],
    )
    assert not form.is_valid()
    assert "2910 is the payable account" in form.errors["account_0"][0]


def test_issue10_item3_a_new_category_on_the_payable_account_is_refused_too(org) -> None:
    integration = verified_integration(org)
    form = MappingsForm(
        {
            "new_category": "mileage",
            "new_account": "2910",
            "new_cost_center": "300",
            "payable_account": "2910",
        },
        integration=integration,
        categories=[],
    )
    assert not form.is_valid()
    assert "payable account" in form.errors["new_account"][0]


def test_issue10_item3_different_accounts_are_saved(org, org_admin) -> None:
    integration = verified_integration(org)
    form = MappingsForm(
        {"account_0": "7130", "cost_center_0": "300", "payable_account": "2910"},
        integration=integration,
        categories=["travel"],
    )
    assert form.is_valid(), form.errors
    form.save_for(org_admin)
    assert integration.mappings.get().account_code == "7130"


# --- item 4: what Business Central needs, and where the lines wait --------------------------


def test_issue10_item4_the_settings_page_lists_what_business_central_needs(
    admin_client, org
) -> None:
    page = admin_client.get(settings_url(org), {"connector": "business_central"}).content.decode()
    assert "Microsoft Entra Applications page" in page
    assert "batch of the default general journal template" in page
    assert "Manual Nos." in page
    assert "never posts the journal" in page
    assert "Xledger documents API tokens" not in page


def test_issue10_item4_the_dashboard_says_lines_wait_in_the_journal_for_finance(
    org, org_admin
) -> None:
    verified_integration(org, "business_central", journal_code="UTLEGG")
    html = page_for(org_admin, org)
    note = text_of(html, "journal-note")
    assert "journal UTLEGG" in note and "finance reviews and posts" in note


def test_issue10_item4_the_journal_note_is_norwegian_for_a_norwegian_reader(org, org_admin) -> None:
    verified_integration(org, "business_central", journal_code="UTLEGG")
    client = Client()
    client.force_login(org_admin)
    html = client.get(
        reverse("organization_home", args=[org.slug]), HTTP_ACCEPT_LANGUAGE="nb"
    ).content.decode()
    note = text_of(html, "journal-note")
    assert "UTLEGG" in note and "finance reviews" not in note


# --- item 6: the claimant as subledger only where the organization says so -----------------


def test_issue10_item6_the_claimant_subledger_setting_is_saved_and_in_the_trail(
    admin_client, org
) -> None:
    save(admin_client, org, XLEDGER_FORM)
    assert not Integration.objects.get(organization=org).xledger_claimant_subledger
    save(admin_client, org, {**XLEDGER_FORM, "api_token": "", "xledger_claimant_subledger": "on"})
    assert Integration.objects.get(organization=org).xledger_claimant_subledger
    change = AdminAction.objects.filter(kind=AdminAction.Kind.INTEGRATION_CHANGED).first()
    assert change is not None
    assert "xledger_claimant_subledger" in change.detail["fields"]


def test_issue10_item6_business_central_has_no_subledger_setting(admin_client, org) -> None:
    page = admin_client.get(settings_url(org), {"connector": "business_central"}).content.decode()
    assert 'name="xledger_claimant_subledger"' not in page
    save(admin_client, org, BC_FORM)
    assert not Integration.objects.get(organization=org).xledger_claimant_subledger


# --- item 9: Xledger documents API tokens ---------------------------------------------------


def test_issue10_item9_the_settings_page_says_xledger_documents_api_tokens(
    admin_client, org
) -> None:
    page = admin_client.get(settings_url(org), {"connector": "xledger"}).content.decode()
    assert "Xledger documents API tokens" in page
    assert "documents no OAuth2 flow" in page
    assert "token URL must be on the allowed hosts" in page


# --- item 8: sent, awaiting import ----------------------------------------------------------


def test_issue10_item8_the_dashboard_counts_records_sent_and_awaiting_import(
    org, org_admin
) -> None:
    verified_integration(org, "xledger")
    records = make_records(org, 5)
    set_state(records[:3], FinancialRecord.State.AWAITING)
    html = page_for(org_admin, org)
    assert text_of(html, "awaiting-count") == "3"
    assert text_of(html, "pending-count") == "2"
    assert "sent, awaiting import" in text_of(html, "import-note")
