"""The sync history page (S9.5, S3.6): per sync the time, the trigger, who, the records
sent and skipped with the reasons, and the outcome; one organization's runs only."""

from __future__ import annotations

import zoneinfo
from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation

from accounting_sync.models import SyncRun
from accounting_sync.views.history import PAGE_SIZE, duration_text

OSLO = zoneinfo.ZoneInfo("Europe/Oslo")


@pytest.fixture(autouse=True)
def _in_english():
    """These tests read English words from functions called directly; a request in Norwegian
    by an earlier test leaves Norwegian active in this thread (nothing deactivates it)."""
    with translation.override("en"):
        yield


def add_run(organization, started: datetime, **fields) -> SyncRun:
    defaults = {"connector": "xledger", "trigger": "schedule", "status": "succeeded"}
    run = SyncRun.objects.create(organization=organization, **{**defaults, **fields})
    # started_at is set on insert; put it where the test needs it.
    SyncRun.objects.filter(pk=run.pk).update(started_at=started)
    run.refresh_from_db()
    return run


def history(client: Client, org, **query) -> str:
    response = client.get(reverse("sync_history", args=[org.slug]), query)
    assert response.status_code == 200
    return response.content.decode()


def test_s9_5_each_sync_shows_time_trigger_user_counts_and_skip_reasons(
    admin_client, org, org_admin
) -> None:
    start = datetime(2025, 6, 5, 2, 0, 3, tzinfo=OSLO)
    add_run(
        org,
        start,
        trigger="manual",
        triggered_by=org_admin,
        status="partial",
        finished_at=start + timedelta(seconds=75),
        total=12,
        sent=8,
        failed=1,
        skipped=3,
        skip_reasons=[
            {"code": "no_mapping", "category": "parking", "count": 2},
            {"code": "no_mapping", "category": "toll", "count": 1},
        ],
    )
    page = history(admin_client, org)
    assert "2025-06-05 02:00" in page and "1 min 15 s" in page  # in the reader's locale
    assert "<td>Manual</td>" in page
    assert f"<td>{org_admin.username}</td>" in page
    assert '<td class="num">12</td>' in page and '<td class="num">8</td>' in page
    assert '<td class="num">1</td>' in page and '<td class="num">3</td>' in page
    assert "<li>2 waiting for a mapping: parking</li>" in page
    assert "<li>1 waiting for a mapping: toll</li>" in page
    assert "Partly failed" in page
    assert "<td>8 sent, 1 failed, 3 skipped.</td>" in page  # worded from the counts


def test_s9_5_an_automatic_sync_has_no_user_and_its_status_is_in_words(admin_client, org):
    add_run(org, datetime(2025, 6, 5, 2, 0, tzinfo=OSLO), trigger="schedule", status="failed")
    page = history(admin_client, org)
    assert "<td>Schedule</td>" in page
    assert '<span aria-hidden="true">—</span><span class="visually-hidden">nobody' in page
    # Never colour alone: an icon hidden from screen readers beside the word.
    assert '<span aria-hidden="true">✗</span> Failed' in page


def test_s9_5_runs_are_listed_newest_first(admin_client, org) -> None:
    base = datetime(2025, 6, 1, 2, 0, tzinfo=OSLO)
    for day, message in [(2, "second"), (1, "first"), (3, "third")]:
        add_run(org, base + timedelta(days=day), message=f"run {message}")
    page = history(admin_client, org)
    assert page.index("run third") < page.index("run second") < page.index("run first")


def test_s3_6_another_organizations_runs_never_show(admin_client, org, other_org) -> None:
    when = datetime(2025, 6, 5, 2, 0, tzinfo=OSLO)
    add_run(org, when, message="ours")
    add_run(other_org, when, connector="business_central", message="theirs, secret")
    page = history(admin_client, org)
    assert "ours" in page and "theirs, secret" not in page


def test_the_history_is_paginated_fifty_a_page(admin_client, org) -> None:
    base = datetime(2025, 1, 1, 2, 0, tzinfo=OSLO)
    for number in range(PAGE_SIZE + 3):
        add_run(org, base + timedelta(hours=number), message=f"run-{number:03d}.")
    first = history(admin_client, org)
    assert first.count("<tr>") == PAGE_SIZE + 1  # and the header row
    assert "run-052." in first and "run-003." in first and "run-002." not in first
    assert "Page 1 of 2" in first and 'href="?page=2"' in first
    second = history(admin_client, org, page=2)
    assert second.count("<tr>") == 3 + 1
    assert "run-002." in second and "run-000." in second and "run-003." not in second


def test_auditors_and_global_admins_see_the_history(org, auditor, global_admin) -> None:
    add_run(org, datetime(2025, 6, 5, 2, 0, tzinfo=OSLO), message="visible to all")
    for person in (auditor, global_admin):
        client = Client()
        client.force_login(person)
        assert "visible to all" in history(client, org)


def test_an_empty_history_says_so(admin_client, org) -> None:
    assert "No syncs have run yet." in history(admin_client, org)


def test_the_organization_page_links_to_the_history(admin_client, org) -> None:
    page = admin_client.get(reverse("organization_home", args=[org.slug])).content.decode()
    assert f'href="{reverse("sync_history", args=[org.slug])}"' in page


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (42, "42 s"), (75, "1 min 15 s"), (3600 + 120, "1 h 2 min")],
)
def test_durations_read_plainly(seconds, text) -> None:
    start = datetime(2025, 6, 5, 2, 0, tzinfo=OSLO)
    run = SyncRun(started_at=start, finished_at=start + timedelta(seconds=seconds))
    assert duration_text(run) == text


def test_a_running_sync_says_it_is_still_running() -> None:
    run = SyncRun(started_at=datetime(2025, 6, 5, 2, 0, tzinfo=OSLO), status="running")
    assert duration_text(run) == "still running"
