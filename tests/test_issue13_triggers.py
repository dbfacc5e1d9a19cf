"""Issue 13, "Survive the infrastructure": triggers that outlive a broken broker, database
or worker pool.

Item 1: records stored are answered 201 even when the broker cannot take the trigger.
Item 2: the sweep starts a run for pending records whose trigger was lost.
Item 3: a database that cannot be reached is a 503 with Retry-After, never a 500.
Item 4: scheduled messages piled up while workers were down run the schedule once.

No ERP is reached: runs are only started here, or carried out by a stand-in.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
import time_machine
from django.db import InterfaceError, OperationalError
from django.test import Client
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from accounting_sync import tasks
from accounting_sync.models import FinancialRecord, SyncRun
from accounting_sync.views import api
from integrations.models import Integration
from integrations.schedule import last_firing
from organizations.models import ApiKey, Organization
from tests.factories import make_records
from tests.test_inbound_api import post, record, records

State = FinancialRecord.State
OSLO = "Europe/Oslo"


@pytest.fixture
def integration(org: Organization) -> Integration:
    """Enabled, syncing after each approval; never reaches an ERP in these tests."""
    integration = Integration.objects.get(organization=org)
    integration.enabled = True
    integration.sync_after_approval = True
    integration.save()
    return integration


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    """Runs the sweep hands to a worker, by id (no broker in these tests)."""
    run_ids: list[int] = []
    monkeypatch.setattr(tasks.run_sync, "delay", run_ids.append)
    return run_ids


def age(organization: Organization, seconds: float) -> None:
    """Make the organization's records look received `seconds` ago."""
    FinancialRecord.objects.filter(organization=organization).update(
        received_at=timezone.now() - timedelta(seconds=seconds)
    )


def lost_age(settings) -> int:
    return settings.SYNC_LOST_TRIGGER_SECONDS + 1


# --- item 1: the broker down at enqueue ------------------------------------------------------


def test_issue13_item1_broker_unreachable_at_enqueue_answers_201_and_the_sweep_starts_the_run(
    client: Client,
    api_key: str,
    org: Organization,
    integration: Integration,
    monkeypatch,
    django_capture_on_commit_callbacks,
    caplog,
    queued: list[int],
    settings,
) -> None:
    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise KombuOperationalError("Error 111 connecting to localhost:6379. Connection refused.")

    monkeypatch.setattr(tasks.sync_after_approval, "apply_async", broker_down)

    with (
        caplog.at_level(logging.WARNING, logger="accounting_sync.tasks"),
        django_capture_on_commit_callbacks(execute=True) as callbacks,
    ):
        response = post(client, api_key, records(3))

    assert response.status_code == 201
    assert len(callbacks) == 1  # the enqueue was attempted, after the commit
    assert FinancialRecord.objects.filter(organization=org, state=State.PENDING).count() == 3
    warnings = [r for r in caplog.records if r.name == "accounting_sync.tasks"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "the sweep will start it" in warnings[0].getMessage()
    assert warnings[0].exc_info is None  # one line, no traceback

    # The volunteer app's retry is answered as before: stored once, nothing new.
    again = post(client, api_key, records(3))
    assert again.status_code == 200 and again.json()["unchanged"] == 3

    tasks.sweep()  # too soon: the trigger may still be on its way
    assert not SyncRun.objects.exists()

    with time_machine.travel(timezone.now() + timedelta(seconds=lost_age(settings))):
        tasks.sweep()

    run = SyncRun.objects.get()
    assert (run.organization_id, run.trigger, run.status) == (org.pk, "approval", "running")
    assert queued == [run.pk]


def test_issue13_item1_a_database_error_when_asking_for_the_sync_still_answers_201(
    client: Client, api_key: str, org: Organization, integration: Integration, monkeypatch
) -> None:
    """The records are committed before the sync is asked for: they are stored, so 201."""

    def database_gone(organization: Organization) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(api, "request_approval_sync", database_gone)

    response = post(client, api_key, record())

    assert response.status_code == 201
    assert FinancialRecord.objects.filter(organization=org).count() == 1


def test_issue13_item1_an_unreachable_broker_in_a_follow_up_is_logged_not_raised(
    org: Organization, integration: Integration, monkeypatch, caplog
) -> None:
    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionRefusedError(111, "Connection refused")  # an OSError, unwrapped

    monkeypatch.setattr(tasks.sync_after_approval, "apply_async", broker_down)

    with caplog.at_level(logging.WARNING, logger="accounting_sync.tasks"):
        assert tasks.enqueue_approval_sync(org.pk) is False

    assert "broker unreachable" in caplog.text


# --- item 2: the sweep as the safety net for lost triggers -----------------------------------


def test_issue13_item2_a_pending_record_older_than_the_threshold_gets_a_run(
    org: Organization, integration: Integration, queued: list[int], settings
) -> None:
    make_records(org, 2)
    age(org, lost_age(settings))

    tasks.sweep()

    run = SyncRun.objects.get()
    assert (run.trigger, run.status) == ("approval", "running")
    assert queued == [run.pk]

    tasks.sweep()  # the run is going: no second one
    assert SyncRun.objects.count() == 1


def test_issue13_item2_a_fresh_pending_record_gets_no_run_from_the_sweep(
    org: Organization, integration: Integration, queued: list[int], settings
) -> None:
    make_records(org, 2)
    age(org, settings.SYNC_LOST_TRIGGER_SECONDS - 5)  # its trigger is still due

    tasks.sweep()

    assert not SyncRun.objects.exists() and queued == []


@pytest.mark.parametrize(
    "change", [{"enabled": False}, {"sync_after_approval": False}], ids=["disabled", "manual"]
)
def test_issue13_item2_no_run_without_the_connector_on_and_sync_after_approval(
    org: Organization, integration: Integration, queued: list[int], settings, change
) -> None:
    Integration.objects.filter(pk=integration.pk).update(**change)
    make_records(org, 2)
    age(org, lost_age(settings))

    tasks.sweep()

    assert not SyncRun.objects.exists() and queued == []


def test_issue13_item2_records_a_run_left_pending_do_not_make_the_sweep_loop(
    org: Organization, integration: Integration, queued: list[int], settings
) -> None:
    """A run after the records arrived that left them pending (expired credentials, a kind
    not included) had its reason: the sweep does not start a run every 30 seconds."""
    make_records(org, 2)
    age(org, 3 * settings.SYNC_LOST_TRIGGER_SECONDS)
    SyncRun.objects.create(
        organization=org,
        connector="xledger",
        trigger="approval",
        status=SyncRun.Status.FAILED,
        error_class="authentication",
    )
    SyncRun.objects.update(
        started_at=timezone.now() - timedelta(seconds=2 * settings.SYNC_LOST_TRIGGER_SECONDS),
        finished_at=timezone.now() - timedelta(seconds=2 * settings.SYNC_LOST_TRIGGER_SECONDS),
    )

    tasks.sweep()

    assert SyncRun.objects.count() == 1 and queued == []


def test_issue13_item2_a_record_newer_than_the_last_run_is_picked_up(
    org: Organization, integration: Integration, queued: list[int], settings
) -> None:
    """Only runs since the record arrived count; an import check never takes it."""
    long_ago = timezone.now() - timedelta(hours=1)
    for trigger in ("manual", "check"):
        SyncRun.objects.create(
            organization=org, connector="xledger", trigger=trigger, status=SyncRun.Status.SUCCEEDED
        )
    SyncRun.objects.update(started_at=long_ago)
    SyncRun.objects.filter(trigger="manual").update(finished_at=long_ago)
    SyncRun.objects.filter(trigger="check").update(
        started_at=timezone.now() - timedelta(seconds=2 * lost_age(settings)),
        finished_at=timezone.now() - timedelta(seconds=2 * lost_age(settings)),
    )
    make_records(org, 1)
    age(org, 3 * lost_age(settings))  # after the manual run, before the check

    tasks.sweep()

    assert SyncRun.objects.filter(trigger="approval", status="running").count() == 1


# --- item 3: the database out of reach -------------------------------------------------------


@pytest.mark.parametrize("error", [OperationalError, InterfaceError])
def test_issue13_item3_the_database_failing_in_the_api_answers_503_with_retry_after(
    client: Client, api_key: str, org: Organization, monkeypatch, caplog, error
) -> None:
    def database_gone(*args: Any, **kwargs: Any) -> None:
        raise error("could not connect to server: Connection refused")

    monkeypatch.setattr(api, "ingest", database_gone)

    with caplog.at_level(logging.WARNING, logger="accounting_sync.views.api"):
        response = post(client, api_key, records(2))

    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    body = response.json()
    assert body["error"] == "unavailable"
    assert "30 seconds" in body["message"]
    assert set(body) == {"error", "message"}  # the API's error shape
    assert not FinancialRecord.objects.exists()
    assert "503" in caplog.text


def test_issue13_item3_the_database_failing_at_authentication_answers_503_too(
    client: Client, api_key: str, monkeypatch
) -> None:
    def database_gone(raw_key: str) -> None:
        raise OperationalError("the database system is shutting down")

    monkeypatch.setattr(ApiKey, "authenticate", staticmethod(database_gone))

    response = post(client, api_key, record())

    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response.json()["error"] == "unavailable"


# --- item 4: scheduled messages piled up while workers were down -----------------------------


def oslo(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    import zoneinfo

    return datetime(year, month, day, hour, minute, second, tzinfo=zoneinfo.ZoneInfo(OSLO))


@pytest.fixture
def daily(integration: Integration) -> Integration:
    integration.schedule = Integration.Schedule.DAILY
    integration.schedule_time = time(2, 0)
    integration.save()
    return integration


@pytest.fixture
def carried_out(monkeypatch) -> list[int]:
    """A stand-in for execute_run: the run ends at once, nothing to send."""
    run_ids: list[int] = []

    def finish(run_id: int, worker: str = "", batches: int | None = None) -> SyncRun:
        run_ids.append(run_id)
        SyncRun.objects.filter(pk=run_id).update(
            status=SyncRun.Status.SUCCEEDED, finished_at=timezone.now(), worker=worker
        )
        return SyncRun.objects.get(pk=run_id)

    monkeypatch.setattr(tasks, "execute_run", finish)
    return run_ids


def test_issue13_item4_a_pile_up_of_scheduled_messages_runs_the_schedule_once(
    org: Organization, daily: Integration, carried_out: list[int]
) -> None:
    # Workers were down from Monday evening; beat fired at 02:00 on Tuesday, Wednesday,
    # Thursday and Friday. The workers are back on Friday at 07:00 and get all four.
    with time_machine.travel(oslo(2026, 3, 13, 7, 0), tick=True):
        for _ in range(4):
            tasks.scheduled_sync.apply(args=(org.pk,))

    assert SyncRun.objects.filter(trigger="schedule").count() == 1
    assert len(carried_out) == 1

    # Saturday's firing is a new one: it runs.
    with time_machine.travel(oslo(2026, 3, 14, 2, 0, 1), tick=True):
        tasks.scheduled_sync.apply(args=(org.pk,))

    assert SyncRun.objects.filter(trigger="schedule").count() == 2


def test_issue13_item4_a_firing_read_a_moment_early_by_the_workers_clock_still_runs(
    org: Organization, daily: Integration, carried_out: list[int]
) -> None:
    with time_machine.travel(oslo(2026, 3, 13, 2, 0, 1), tick=True):
        tasks.scheduled_sync.apply(args=(org.pk,))
    # Beat fired Saturday's 02:00; the worker's clock is two seconds behind.
    with time_machine.travel(oslo(2026, 3, 14, 1, 59, 58), tick=True):
        tasks.scheduled_sync.apply(args=(org.pk,))

    assert SyncRun.objects.filter(trigger="schedule").count() == 2


def test_issue13_item4_manual_only_has_no_firing_so_the_task_runs_as_asked(
    org: Organization, integration: Integration, carried_out: list[int]
) -> None:
    assert integration.schedule == Integration.Schedule.MANUAL
    for _ in range(2):
        tasks.scheduled_sync.apply(args=(org.pk,))

    assert SyncRun.objects.filter(trigger="schedule").count() == 2


@pytest.mark.parametrize(
    ("now", "fired"),
    [
        (oslo(2026, 3, 13, 7, 0), oslo(2026, 3, 13, 2, 0)),
        (oslo(2026, 3, 13, 1, 0), oslo(2026, 3, 12, 2, 0)),
        (oslo(2026, 3, 13, 2, 0), oslo(2026, 3, 13, 2, 0)),  # at the moment itself
    ],
)
def test_issue13_item4_last_firing_is_the_latest_scheduled_moment(
    daily: Integration, now: datetime, fired: datetime
) -> None:
    assert last_firing(daily, now) == fired.astimezone(UTC)


def test_issue13_item4_last_firing_on_the_spring_forward_night_is_when_beat_ran_it(
    daily: Integration,
) -> None:
    daily.schedule_time = time(2, 30)  # does not exist in Oslo on 29 March 2026
    daily.save()

    fired = last_firing(daily, oslo(2026, 3, 29, 12, 0))

    # Beat reads 02:30 with the offset from before the change: 01:30 UTC, 03:30 CEST.
    assert fired == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
