"""Issue 11: the setup checklist (S1.5, S2.4), health that tells the truth (S4.3-S4.6,
S5.2-S5.3) and the dashboard's live records, without a browser."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounting_sync.health import Facts, assess, next_change
from accounting_sync.models import FinancialRecord, SyncRun
from core import live
from integrations.models import CategoryMapping, Integration, SetupStep
from organizations.models import Organization
from tests.factories import configure, make_records, sync
from tests.test_dashboard import finished_run, page_for, set_state, text_of
from tests.test_integration_settings import XLEDGER_FORM, mapped, save, toggle, verified

pytestmark = pytest.mark.django_db


@pytest.fixture
def enabled(org, erp_sandbox, settings) -> Integration:
    settings.ERP_CA_BUNDLE = str(erp_sandbox.ca_bundle)
    return configure(org, erp_sandbox)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def steps(integration: Integration) -> dict[str, bool]:
    return {step.code: step.done for step in integration.setup_steps()}


# --- the checklist and the enable toggle (S2.4) ------------------------------------------------


def test_s2_4_setup_steps_follow_the_setup_in_order(admin_client, org) -> None:
    save(admin_client, org, XLEDGER_FORM)
    integration = Integration.objects.get(organization=org)
    assert steps(integration) == {
        "credentials": True,
        "tested": False,
        "mapped": False,
        "enabled": False,
    }
    assert not integration.setup_steps().ready

    verified(integration)
    make_records(org, 2, category="meals")
    mapping_step = next(s for s in integration.setup_steps() if s.code == SetupStep.MAPPED)
    assert not mapping_step.done
    assert mapping_step.unmapped == ("meals",) and mapping_step.payable_missing

    mapped(integration)  # travel and the payable account; meals still waits
    assert steps(integration)["mapped"] is False
    CategoryMapping.objects.create(
        integration=integration, category="meals", account_code="7130", cost_center_code="300"
    )
    assert steps(integration)["mapped"] is True
    assert integration.set_enabled(True, None) is None
    assert integration.setup_steps().ready


def test_s2_4_enable_is_refused_with_the_reason_until_a_payable_account_and_a_mapping(
    admin_client, org
) -> None:
    save(admin_client, org, XLEDGER_FORM)
    integration = verified(Integration.objects.get(organization=org))

    page = toggle(admin_client, org, True).content.decode()
    assert "Choose the payable account on the mappings page first." in page
    assert not Integration.objects.get(organization=org).enabled
    # The button itself says why, before anyone presses it.
    settings_page = admin_client.get(reverse("integration_settings", args=[org.slug]))
    html = settings_page.content.decode()
    assert re.search(
        r'<button type="submit" class="button" disabled aria-describedby="enable-reason"', html
    )
    assert "The connector cannot be enabled yet. Choose the payable account" in html

    integration.payable_account = "2910"
    integration.save()
    assert integration.set_enabled(True, None) == (
        "Map at least one expense category on the mappings page first."
    )
    mapped(integration)
    assert "The Xledger connector is enabled." in toggle(admin_client, org, True).content.decode()


def test_s1_5_the_checklist_shows_on_the_dashboard_and_settings_until_ready(
    admin_client, org, org_admin, enabled
) -> None:
    enabled.payable_account = ""
    enabled.save()
    make_records(org, 3, category="meals")

    for url in (
        reverse("organization_home", args=[org.slug]),
        reverse("integration_settings", args=[org.slug]),
    ):
        html = admin_client.get(url).content.decode()
        assert 'id="setup-checklist"' in html
        step = re.search(r'<li id="setup-mapped".*?</li>', html, re.S)
        assert step is not None
        assert "To do:" in step.group(0) and "meals" in step.group(0)
        assert "No payable account is chosen." in step.group(0)
        assert reverse("integration_mappings", args=[org.slug]) in step.group(0)
        assert re.search(r'<li id="setup-tested"[^>]*>.*?Done:', html, re.S)

    enabled.payable_account = "2910"
    enabled.save()
    CategoryMapping.objects.create(
        integration=enabled, category="meals", account_code="7130", cost_center_code="300"
    )
    assert 'id="setup-checklist"' not in page_for(org_admin, org)


def test_s1_5_a_new_organization_sees_every_step_to_do(admin_client, org) -> None:
    html = admin_client.get(reverse("organization_home", args=[org.slug])).content.decode()
    assert html.count("To do:") == 4
    assert reverse("integration_settings", args=[org.slug]) in html


# --- records waiting for a mapping, and health (S4.3, S5.2) -----------------------------------


def test_s4_3_a_skipped_only_run_is_never_green_and_says_what_waits_for_a_mapping(
    org, org_admin, global_admin, enabled
) -> None:
    make_records(org, 5, category="meals")
    make_records(org, 2, category="parking")
    run = sync(org)
    assert (run.sent, run.skipped) == (0, 7)

    html = page_for(org_admin, org)
    assert "health-green" not in html and "Healthy" not in html
    assert "health-setup" in html and "Needs setup" in html
    assert "7 records are waiting for a mapping of their category." in html
    assert text_of(html, "waiting-count") == "7"
    assert " ".join(text_of(html, "waiting-for-mapping").split()).startswith(
        "7 records waiting for a mapping: meals (5), parking (2)."
    )
    assert reverse("integration_mappings", args=[org.slug]) in html
    # The overview agrees with the dashboard.
    overview = client_for(global_admin).get(reverse("overview")).content.decode()
    assert re.search(rf'id="org-{org.slug}"[^>]*data-health="setup"', overview)


def test_s4_3_health_is_not_green_before_a_first_send(org, org_admin, enabled) -> None:
    html = page_for(org_admin, org)
    assert "health-green" not in html and "health-idle" in html
    assert "No record has been sent yet." in html


def test_s4_3_green_once_a_record_was_sent_without_errors(org, org_admin, enabled) -> None:
    make_records(org, 2)
    run = sync(org)
    assert run.sent == 2
    assert "health-green" in page_for(org_admin, org)


FACTS: dict[str, Any] = {
    "configured": True,
    "enabled": True,
    "pending": 0,
    "failed": 0,
    "oldest_pending_at": None,
    "last_run_failures": False,
    "schedule_came_due": False,
}


@pytest.mark.parametrize(
    ("change", "expected", "words"),
    [
        ({}, "green", "without errors"),
        ({"payable_chosen": False}, "setup", "payable account"),
        ({"any_mapping": False}, "setup", "Map the expense categories"),
        ({"unmapped_waiting": 20}, "setup", "20 records are waiting for a mapping"),
        ({"last_run_skipped_only": True}, "idle", "skipped every record"),  # mapped since
        ({"last_run_skipped_only": True, "unmapped_waiting": 2}, "setup", "2 records are"),
        ({"ever_sent": False}, "idle", "No record has been sent yet."),
        ({"unmapped_waiting": 3, "failed": 1}, "amber", "failed"),  # errors come first
        ({"enabled": False, "unmapped_waiting": 3}, "grey", "turned off"),
    ],
)
def test_s4_3_needs_setup_and_idle_levels(change: dict, expected: str, words: str) -> None:
    now = timezone.now()
    health = assess(Facts(**{**FACTS, "last_sync_at": now, **change}), now)
    assert health.level.key == expected
    assert words in health.reason
    assert health.level.word and health.level.icon  # never colour alone


def test_s4_5_next_change_is_when_records_turn_overdue_or_the_connector_stale() -> None:
    now = timezone.now()
    arrived = now - timedelta(minutes=5)
    synced = now - timedelta(hours=2)
    facts = Facts(**{**FACTS, "oldest_pending_at": arrived, "last_sync_at": synced})
    assert next_change(facts, now) == arrived + timedelta(minutes=15)
    facts = Facts(**{**FACTS, "last_sync_at": synced})
    assert next_change(facts, now) == synced + timedelta(hours=24)
    assert next_change(Facts(**{**FACTS, "last_sync_at": synced, "enabled": False}), now) is None


# --- the live part: time alone, and the latest records (S4.6) ---------------------------------


def dashboard_version(html: str) -> str:
    found = re.search(r'id="dashboard-status"[^>]*hx-get="[^"]*\?v=([^"&]+)', html, re.S)
    assert found is not None
    return found.group(1)


def test_s4_6_an_open_dashboard_turns_overdue_when_its_deadline_passes(
    org, org_admin, enabled
) -> None:
    set_state(make_records(org, 1, start=100), "synced")
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        finished_run(org, ago=timedelta(hours=26), sent=1)
        make_records(org, 3)  # just arrived: on their way, not overdue yet
        client = client_for(org_admin)
        url = reverse("dashboard_live", args=[org.slug])
        html = client.get(reverse("organization_home", args=[org.slug])).content.decode()
        assert "health-red" not in html
        version = dashboard_version(html)
        assert version.startswith(f"{Organization.objects.get(pk=org.pk).live_version}~")

        traveller.shift(timedelta(minutes=14))
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url, {"v": version}).status_code == 204
        assert len(queries) <= 4  # the unchanged poll stays cheap

        traveller.shift(timedelta(minutes=2))  # 16 minutes: past the deadline
        response = client.get(url, {"v": version})
        assert response.status_code == 200
        assert "health-red" in response.content.decode() and "Overdue" in response.content.decode()


def test_s4_6_a_version_without_a_deadline_is_unchanged_until_the_data_moves(rf) -> None:
    assert live.versioned(7, None) == "7"
    assert live.unchanged(rf.get("/", {"v": "7"}), 7)
    assert not live.unchanged(rf.get("/", {"v": "7"}), 8)
    past = live.versioned(7, timezone.now() - timedelta(seconds=5))
    future = live.versioned(7, timezone.now() + timedelta(minutes=5))
    assert not live.unchanged(rf.get("/", {"v": past}), 7)
    assert live.unchanged(rf.get("/", {"v": future}), 7)
    assert not live.unchanged(rf.get("/", {"v": "7~soon"}), 7)


def test_s4_6_the_latest_records_are_part_of_the_live_part(org, org_admin, enabled) -> None:
    make_records(org, 3)
    client = client_for(org_admin)
    html = page_for(org_admin, org)
    version = dashboard_version(html)
    assert html.count('class="state state-pending">Pending<') == 3

    sync(org)
    response = client.get(reverse("dashboard_live", args=[org.slug]), {"v": version})
    fragment = response.content.decode()
    assert response.status_code == 200
    records = re.search(
        r'<section id="latest-records"[^>]*hx-swap-oob="true".*?</section>', fragment, re.S
    )
    assert records is not None
    assert records.group(0).count('class="state state-synced">Synced<') == 3
    assert "Pending<" not in records.group(0)


# --- after mapping: send what waited (S1.5, S2.3) ---------------------------------------------


def test_s1_5_after_mapping_the_mappings_page_offers_to_send_what_waited(
    org, org_admin, enabled, django_capture_on_commit_callbacks
) -> None:
    make_records(org, 4, category="meals")
    sync(org)  # skipped: meals has no mapping
    client = client_for(org_admin)
    url = reverse("integration_mappings", args=[org.slug])
    assert 'id="send-offer"' not in client.get(url).content.decode()

    CategoryMapping.objects.create(
        integration=enabled, category="meals", account_code="7130", cost_center_code="300"
    )
    html = client.get(url).content.decode()
    offer = re.search(r'<section class="card" id="send-offer".*?</section>', html, re.S)
    assert offer is not None
    assert "4 records can now be sent: their categories are mapped." in offer.group(0)
    assert f'action="{reverse("trigger_sync", args=[org.slug])}"' in offer.group(0)

    with django_capture_on_commit_callbacks():
        response = client.post(reverse("trigger_sync", args=[org.slug]))
    assert response.status_code == 302
    run = SyncRun.objects.filter(trigger="manual").latest("pk")
    assert run.triggered_by == org_admin
    assert FinancialRecord.objects.filter(organization=org, state="skipped").count() == 4
