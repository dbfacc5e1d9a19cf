"""The global overview: every organization's records at a glance, and whether a worker runs."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounting_sync.models import WorkerHeartbeat
from integrations.models import Organization


def _overview(user) -> str:
    client = Client()
    client.force_login(user)
    return client.get(reverse("overview")).content.decode()


def test_no_worker_seen_is_a_warning(org, global_admin) -> None:
    assert "No background worker has checked in yet" in _overview(global_admin)


def test_a_worker_seen_a_minute_ago_is_fine_and_one_silent_for_ten_is_not(
    org, global_admin
) -> None:
    WorkerHeartbeat.objects.create(hostname="w@host", seen_at=timezone.now())
    with time_machine.travel(timezone.now() + timedelta(minutes=1)):
        page = _overview(global_admin)
        assert "Background worker last seen" in page
        assert "No background worker" not in page
    with time_machine.travel(timezone.now() + timedelta(minutes=10)):
        assert "No background worker has checked in since" in _overview(global_admin)


def test_the_overview_costs_the_same_queries_for_5_or_50_organizations(global_admin) -> None:
    def queries() -> int:
        client = Client()
        client.force_login(global_admin)
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse("overview")).status_code == 200
        return len(captured)

    Organization.objects.bulk_create(
        Organization(name=f"Org {n}", slug=f"org-{n}") for n in range(5)
    )
    few = queries()
    Organization.objects.bulk_create(
        Organization(name=f"Org {n}", slug=f"org-{n}") for n in range(5, 50)
    )
    assert queries() == few
