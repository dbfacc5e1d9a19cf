"""The organization's status dashboard (S4.1, S4.3-S4.6) and Trigger Sync Now (S3) without a
browser: what the page says, what its live part answers, what a trigger starts."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounting_sync.health import Facts, assess
from accounting_sync.models import FinancialRecord, SyncRun
from audit.models import AdminAction
from integrations.models import Integration
from organizations.models import Organization
from tests.factories import configure, make_records
from tests.test_inbound_api import post, records

pytestmark = pytest.mark.django_db


@pytest.fixture
def enabled(org, erp_sandbox, settings) -> Integration:
    settings.ERP_CA_BUNDLE = str(erp_sandbox.ca_bundle)
    return configure(org, erp_sandbox)


def page_for(user, org) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(reverse("organization_home", args=[org.slug]))
    assert response.status_code == 200
    return response.content.decode()


def text_of(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</(dd|p|span)>', html, re.S)
    assert match, f"no #{element_id} on the page"
    return re.sub(r"<[^>]+>|\s+", " ", match.group(1)).strip()


def finished_run(org, status: str = "succeeded", ago: timedelta = timedelta(minutes=5), **counts):
    now = timezone.now()
    return SyncRun.objects.create(
        organization=org,
        connector="xledger",
        trigger="manual",
        status=status,
        finished_at=now - ago,
        **counts,
    )


def set_state(records, state: str, **fields) -> None:
    FinancialRecord.objects.filter(pk__in=[r.pk for r in records]).update(state=state, **fields)


# --- S4.1: what an org admin sees ----------------------------------------------------------


def test_s4_1_org_admin_sees_connector_last_sync_pending_and_errors_of_their_own_org(
    org, other_org, org_admin, enabled
) -> None:
    records = make_records(org, 7)
    set_state(records[:2], "failed", last_error="Period is closed")
    make_records(other_org, 30, category="other")  # never counted here
    run = finished_run(org, sent=3)

    html = page_for(org_admin, org)

    assert "Xledger" in html
    assert text_of(html, "pending-count") == "5"
    assert text_of(html, "error-count") == "2"
    assert text_of(html, "connector-state") == "Enabled"
    assert run.finished_at.astimezone(timezone.get_current_timezone()).strftime("%H:%M") in (
        text_of(html, "last-sync")
    )


def test_s4_1_another_organizations_dashboard_is_not_found(org, other_org, other_admin) -> None:
    client = Client()
    client.force_login(other_admin)
    assert client.get(reverse("organization_home", args=[org.slug])).status_code == 404


# --- S4.3-S4.5: health --------------------------------------------------------------------


def test_s4_3_health_is_green_when_the_last_sync_completed_without_errors(
    org, org_admin, enabled
) -> None:
    set_state(make_records(org, 3), "synced")
    finished_run(org, sent=3)
    html = page_for(org_admin, org)
    assert "health-green" in html and "Healthy" in html  # a word, not only a colour
    assert text_of(html, "error-count") == "0"


def test_s4_4_health_is_amber_when_records_failed_and_the_error_count_links_to_them(
    org, org_admin, enabled
) -> None:
    set_state(make_records(org, 3), "failed", last_error="Period is closed")
    finished_run(org, status="partial", sent=2, failed=3)
    html = page_for(org_admin, org)
    assert "health-amber" in html and "Errors" in html
    failed_url = reverse("failed_records", args=[org.slug])
    assert re.search(rf'id="error-count"><a href="{failed_url}"[^>]*>3</a>', html)


def test_s4_5_health_is_red_with_a_warning_when_no_sync_in_24_hours_though_one_was_expected(
    org, org_admin, enabled
) -> None:
    records = make_records(org, 4)
    FinancialRecord.objects.filter(pk__in=[r.pk for r in records]).update(
        received_at=timezone.now() - timedelta(hours=30)
    )
    finished_run(org, ago=timedelta(hours=26), sent=1)
    html = page_for(org_admin, org)
    assert "health-red" in html and "Overdue" in html
    assert "No sync has happened in the last 24 hours although one was expected" in html


def test_s4_5_no_warning_when_nothing_was_expected(org, org_admin, enabled) -> None:
    set_state(make_records(org, 1), "synced")
    finished_run(org, ago=timedelta(days=3), sent=1)  # quiet, manual schedule, nothing waiting
    html = page_for(org_admin, org)
    # Not overdue; not called healthy either, next to a stale warning (issue 11): idle.
    assert "health-red" not in html and "health-green" not in html
    assert "health-idle" in html and "Idle" in html


def test_s4_5_a_due_schedule_makes_a_quiet_organization_red(org, org_admin, enabled) -> None:
    enabled.schedule = Integration.Schedule.DAILY
    enabled.schedule_time = (timezone.localtime() - timedelta(hours=1)).time()
    enabled.save()
    finished_run(org, ago=timedelta(days=2), sent=1)
    assert "health-red" in page_for(org_admin, org)


def test_health_is_grey_when_not_set_up_or_disabled(org, org_admin, enabled) -> None:
    enabled.enabled = False
    enabled.save()
    html = page_for(org_admin, org)
    assert "health-grey" in html and text_of(html, "connector-state") == "Disabled"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, "green"),
        ({"configured": False}, "grey"),
        ({"enabled": False}, "grey"),
        ({"failed": 1}, "amber"),
        ({"last_run_failures": True}, "amber"),
        ({"last_sync_at": None, "oldest_pending_at": "old"}, "red"),
        ({"last_sync_at": "old", "schedule_came_due": True}, "red"),
        # On its way, so not overdue; but stale is not healthy (issue 11).
        ({"last_sync_at": "old", "oldest_pending_at": "recent"}, "idle"),
        ({"last_sync_at": "old", "failed": 2, "oldest_pending_at": "old"}, "red"),  # worst wins
    ],
)
def test_s4_3_to_s4_5_health_levels(change: dict, expected: str) -> None:
    now = timezone.now()
    times = {"old": now - timedelta(hours=25), "recent": now - timedelta(minutes=1)}
    values: dict[str, Any] = {
        "configured": True,
        "enabled": True,
        "pending": 0,
        "failed": 0,
        "oldest_pending_at": None,
        "last_sync_at": now - timedelta(hours=1),
        "last_run_failures": False,
        "schedule_came_due": False,
    }
    values.update({k: times.get(v, v) if isinstance(v, str) else v for k, v in change.items()})
    health = assess(Facts(**values), now)
    assert health.level.key == expected
    assert health.level.word and health.level.icon and health.reason


# --- S4.6: the live part --------------------------------------------------------------------


def live(client: Client, org, version, **more):
    return client.get(reverse("dashboard_live", args=[org.slug]), {"v": version, **more})


def test_s4_6_an_unchanged_poll_is_204_and_costs_only_the_access_queries(
    org, org_admin, enabled
) -> None:
    client = Client()
    client.force_login(org_admin)
    version = Organization.objects.get(pk=org.pk).live_version
    live(client, org, version)  # the session is warm, as it is on an open page
    with CaptureQueriesContext(connection) as queries:
        response = live(client, org, version)
    assert response.status_code == 204 and response.content == b""
    # The session, the user, the organization (with its version) and the membership.
    assert len(queries) <= 4, [q["sql"] for q in queries]


def test_s4_6_a_sync_finished_in_the_background_changes_the_live_part(
    org, org_admin, enabled
) -> None:
    client = Client()
    client.force_login(org_admin)
    make_records(org, 3)
    Organization.touch(org.pk)
    before = Organization.objects.get(pk=org.pk).live_version
    first = live(client, org, before - 1).content.decode()
    assert text_of(first, "pending-count") == "3"

    run = SyncRun.objects.create(organization=org, connector="xledger", trigger="schedule")
    FinancialRecord.objects.filter(organization=org).update(state="synced")
    SyncRun.objects.filter(pk=run.pk).update(status="succeeded", sent=3, finished_at=timezone.now())
    Organization.touch(org.pk)

    response = live(client, org, before, run=run.pk)
    html = response.content.decode()
    assert response.status_code == 200
    assert text_of(html, "pending-count") == "0"
    # The outcome is said in words, into the page's aria-live announcer.
    assert re.search(r'id="announcer" hx-swap-oob="innerHTML">Sync finished: 3 records sent', html)


def test_s4_6_records_arriving_and_settings_changing_move_the_version(
    org, org_admin, enabled, api_key
) -> None:
    def version() -> int:
        return Organization.objects.get(pk=org.pk).live_version

    start = version()
    assert post(Client(), api_key, records(2)).status_code == 201
    after_records = version()
    assert after_records > start
    enabled.enabled = False
    enabled.save()
    assert version() > after_records


# --- S3: Trigger Sync Now ----------------------------------------------------------------------


def test_s3_1_the_dialog_says_how_many_pending_records_will_be_synced(
    org, org_admin, enabled
) -> None:
    make_records(org, 12)
    html = page_for(org_admin, org)
    found = re.search(r'<dialog id="sync-dialog".*?</dialog>', html, re.S)
    assert found is not None
    dialog = found.group(0)
    assert "12 records will be sent to Xledger." in dialog
    assert text_of(html, "pending-count") == "12"


def test_s3_1_without_javascript_the_button_opens_a_confirmation_page(
    org, org_admin, enabled
) -> None:
    make_records(org, 2)
    client = Client()
    client.force_login(org_admin)
    page = client.get(reverse("trigger_sync", args=[org.slug])).content.decode()
    assert "2 records will be sent to Xledger." in page
    assert SyncRun.objects.count() == 0  # asking is not starting


def test_s3_2_confirming_starts_one_run_and_answers_with_the_progress(
    org, org_admin, enabled, django_capture_on_commit_callbacks
) -> None:
    make_records(org, 5)
    client = Client()
    client.force_login(org_admin)
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(
            reverse("trigger_sync", args=[org.slug]), headers={"HX-Request": "true"}
        )
    html = response.content.decode()
    run = SyncRun.objects.get()
    assert run.trigger == "manual" and run.is_running and len(queued) == 1
    assert 'id="sync-progress"' in html
    assert re.search(r'id="trigger-sync"[^>]*disabled', html)
    assert "The sync has started." in html


def test_s3_4_while_any_run_is_going_the_button_is_disabled_with_a_reason(
    org, org_admin, enabled
) -> None:
    SyncRun.objects.create(
        organization=org, connector="xledger", trigger="schedule", total=8, done=3
    )
    html = page_for(org_admin, org)
    assert re.search(r'id="trigger-sync"[^>]*disabled', html)
    assert "A sync is already running, so Trigger Sync Now is unavailable" in html
    assert "3 of 8 records done" in html


def test_s3_4_a_second_trigger_during_a_run_starts_nothing(org, org_admin, enabled) -> None:
    running = SyncRun.objects.create(organization=org, connector="xledger", trigger="approval")
    client = Client()
    client.force_login(org_admin)
    response = client.post(reverse("trigger_sync", args=[org.slug]), headers={"HX-Request": "true"})
    assert "A sync is already running for this organization." in response.content.decode()
    assert list(SyncRun.objects.all()) == [running]


def test_s3_6_a_manual_trigger_is_recorded_with_the_user(
    org, org_admin, enabled, django_capture_on_commit_callbacks
) -> None:
    make_records(org, 4)
    client = Client()
    client.force_login(org_admin)
    with django_capture_on_commit_callbacks():
        client.post(reverse("trigger_sync", args=[org.slug]))
    run = SyncRun.objects.get()
    assert run.triggered_by == org_admin and run.started_at
    action = AdminAction.objects.get(kind=AdminAction.Kind.SYNC_TRIGGERED)
    assert action.actor_username == org_admin.username and action.detail["run"] == run.pk


def test_s3_auditors_see_no_trigger_button(org, auditor, enabled) -> None:
    html = page_for(auditor, org)
    assert 'id="trigger-sync"' not in html and "<dialog" not in html
    assert "read-only access" in html


def test_s3_the_button_is_disabled_while_the_connector_is_off(org, org_admin, enabled) -> None:
    enabled.enabled = False
    enabled.save()
    html = page_for(org_admin, org)
    assert re.search(r'id="trigger-sync"[^>]*disabled', html)
    assert "The connector is not enabled, so nothing can be sent." in html


def test_s3_3_an_outcome_with_skipped_records_says_so(org, org_admin, enabled) -> None:
    finished_run(org, sent=0, skipped=20)
    html = page_for(org_admin, org)
    assert "Sync finished: 0 sent, 20 skipped (see the sync history)." in text_of(
        html, "last-outcome"
    )
