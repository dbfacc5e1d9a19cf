"""Alerts raised and resolved by real sync runs against the ERP sandbox (S7.1, S7.2, S7.4,
S7.6, S9.4): the engine's hooks (alerts/hooks.py) open them as attempts are written, runs
end and events are recorded.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from accounting_sync import tasks
from accounting_sync.models import FinancialRecord, SyncLog, SyncRun
from alerts import rules
from alerts.models import Alert, AlertRecipient
from erp_sandbox.client import SandboxProcess
from integrations.clients import business_central as bc
from integrations.clients import xledger as xl
from tests.conftest import make_user
from tests.factories import configure, make_records, states, sync

Kind = Alert.Kind
State = FinancialRecord.State


@pytest.fixture(autouse=True)
def _trust_the_sandbox(erp_sandbox: SandboxProcess, settings) -> None:
    settings.ERP_CA_BUNDLE = str(erp_sandbox.ca_bundle)
    xl._tokens.clear()
    bc._apps.clear()


def addressed_to(alert: Alert) -> set[str]:
    return set(alert.recipients.values_list("username", flat=True))


def retry(org, record: FinancialRecord) -> SyncRun:
    return sync(org, "retry", record_ids=[record.pk])


@pytest.fixture
def people(org, org_admin, auditor, global_admin, other_admin):
    """Two admins of the organization, its auditor, a global admin, another org's admin."""
    second_admin = make_user("second-admin", organization=org, role="admin")
    return {"admins": {org_admin.username, second_admin.username}}


# --- S7.1 -----------------------------------------------------------------------------------------


def test_s7_1_third_failed_attempt_alerts_org_admins_naming_record_type_and_error(
    org, people, erp_sandbox
):
    configure(org, erp_sandbox)
    (record,) = make_records(org, 1)
    erp_sandbox.set_faults(permanent_error_rate=1.0)

    sync(org)
    retry(org, record)
    assert not Alert.objects.exists()  # two failures are not yet three

    retry(org, record)

    alert = Alert.objects.get()
    assert alert.kind == Kind.RECORD_FAILING and alert.is_open
    assert addressed_to(alert) == people["admins"]  # not the auditor, nor the global admin
    assert f"Reimbursement {record.reference} failed 3 attempts in a row" in alert.message
    assert "Period is closed for posting date" in alert.message
    assert alert.link == reverse("failed_records", args=[org.slug])
    assert [a.status for a in SyncLog.objects.filter(record=record)] == ["failed"] * 3


def test_s7_1_and_s7_4_a_fourth_failure_raises_nothing_new_and_syncing_resolves_it(
    org, people, erp_sandbox
):
    configure(org, erp_sandbox)
    (record,) = make_records(org, 1)
    erp_sandbox.set_faults(permanent_error_rate=1.0)
    sync(org)
    for _ in range(3):
        retry(org, record)
    assert Alert.objects.filter(kind=Kind.RECORD_FAILING).count() == 1  # one per problem

    erp_sandbox.set_faults()
    retry(org, record)

    record.refresh_from_db()
    assert record.state == State.SYNCED
    alert = Alert.objects.get()
    assert not alert.is_open and alert.resolved_at is not None
    assert not AlertRecipient.objects.unread().exists()  # the badge goes back to zero


def test_s7_1_failures_with_a_success_between_them_are_not_consecutive(org, people, erp_sandbox):
    configure(org, erp_sandbox)
    make_records(org, 2)
    first, second = FinancialRecord.objects.order_by("pk")
    erp_sandbox.set_faults(permanent_error_rate=1.0)
    sync(org)
    retry(org, first)
    erp_sandbox.set_faults()
    retry(org, second)  # the second record goes through on its second attempt
    erp_sandbox.set_faults(permanent_error_rate=1.0)

    retry(org, first)  # the first one's third failure in a row

    alert = Alert.objects.get()
    assert alert.key == rules.record_key(first.pk)
    assert states(org) == {State.FAILED: 1, State.SYNCED: 1}


# --- S7.2 -----------------------------------------------------------------------------------------


def test_s7_2_more_than_ten_failures_in_a_day_alert_the_admins_and_the_global_admins(
    org, people, global_admin, erp_sandbox
):
    configure(org, erp_sandbox)
    make_records(org, 10)
    erp_sandbox.set_faults(error_rate=1.0)
    sync(org)
    assert not Alert.objects.filter(kind=Kind.MANY_ERRORS).exists()  # ten is not "over ten"

    make_records(org, 1, start=100)
    sync(org)  # the new record fails: eleven failed attempts in 24 hours

    alert = Alert.objects.get(kind=Kind.MANY_ERRORS)
    assert addressed_to(alert) == people["admins"] | {global_admin.username}
    assert alert.message.startswith("11 sync attempts failed in the last 24 hours")
    assert alert.link == reverse("failed_records", args=[org.slug])


def test_s7_2_and_s7_4_the_error_alert_closes_once_the_failures_leave_the_24_hour_window(
    org, people, erp_sandbox
):
    configure(org, erp_sandbox)
    make_records(org, 11)
    erp_sandbox.set_faults(error_rate=1.0)
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        sync(org)
        assert Alert.objects.get(kind=Kind.MANY_ERRORS).is_open

        traveller.shift(timedelta(hours=23, minutes=59))
        rules.periodic_check()
        assert Alert.objects.get(kind=Kind.MANY_ERRORS).is_open

        traveller.shift(timedelta(minutes=2))
        rules.periodic_check()
        rules.periodic_check()  # a repeated check changes nothing

    alert = Alert.objects.get(kind=Kind.MANY_ERRORS)
    assert not alert.is_open


# --- S7.6 -----------------------------------------------------------------------------------------


def test_s7_6_an_authentication_failure_alerts_at_once_with_a_link_to_the_connection(
    org, people, erp_sandbox
):
    configure(org, erp_sandbox)
    make_records(org, 3)
    erp_sandbox.set_faults(expired_credentials=True)

    run = sync(org)  # one run, no retries: it alerts at once

    assert run.error_class == "authentication"
    alert = Alert.objects.get()
    assert alert.kind == Kind.AUTHENTICATION_FAILED
    assert addressed_to(alert) == people["admins"]
    assert alert.message.startswith("The accounting system refused the credentials")
    assert alert.link == reverse("integration_settings", args=[org.slug])
    assert alert.link_label == "Open the connection settings"

    sync(org)  # refused again: still the same problem, still one alert
    assert Alert.objects.count() == 1


def test_s7_4_the_authentication_alert_closes_when_a_later_run_gets_through(
    org, people, erp_sandbox
):
    configure(org, erp_sandbox)
    make_records(org, 3)
    erp_sandbox.set_faults(expired_credentials=True)
    sync(org)
    assert Alert.objects.get().is_open

    erp_sandbox.set_faults()
    run = sync(org)

    assert run.sent == 3
    assert not Alert.objects.get().is_open


# --- S9.4 -----------------------------------------------------------------------------------------


def test_s9_4_a_scheduled_sync_whose_three_retries_all_failed_alerts_the_admins(
    org, people, erp_sandbox, monkeypatch
):
    configure(org, erp_sandbox)
    make_records(org, 2)
    erp_sandbox.set_faults(error_rate=1.0)
    real_start_run = tasks.start_run

    with time_machine.travel(timezone.now(), tick=True) as traveller:

        def start_an_hour_later(*args: Any, **kwargs: Any) -> SyncRun:
            traveller.shift(timedelta(hours=1))  # the retries' countdowns and backoff
            return real_start_run(*args, **kwargs)

        monkeypatch.setattr(tasks, "start_run", start_an_hour_later)
        tasks.scheduled_sync.apply(args=(org.pk,))

        assert SyncRun.objects.filter(trigger="schedule").count() == 1 + tasks.SCHEDULED_RETRIES
        alert = Alert.objects.get(kind=Kind.SCHEDULED_SYNC_FAILED)
        assert addressed_to(alert) == people["admins"]
        assert "also after 3 retries" in alert.message
        assert alert.link == reverse("sync_history", args=[org.slug])

        erp_sandbox.set_faults()
        tasks.scheduled_sync.apply(args=(org.pk,))  # the next night's sync gets through

    assert states(org) == {State.SYNCED: 2}
    assert not Alert.objects.get(kind=Kind.SCHEDULED_SYNC_FAILED).is_open


def test_s9_4_a_scheduled_sync_that_succeeds_on_a_retry_raises_no_alert(
    org, people, erp_sandbox, monkeypatch
):
    configure(org, erp_sandbox)
    make_records(org, 2)
    erp_sandbox.set_faults(error_rate=1.0)
    real_start_run = tasks.start_run
    calls = []

    with time_machine.travel(timezone.now(), tick=True) as traveller:

        def network_back_on_the_second_try(*args: Any, **kwargs: Any) -> SyncRun:
            calls.append(1)
            if len(calls) == 2:
                erp_sandbox.set_faults()
            traveller.shift(timedelta(hours=1))
            return real_start_run(*args, **kwargs)

        monkeypatch.setattr(tasks, "start_run", network_back_on_the_second_try)
        tasks.scheduled_sync.apply(args=(org.pk,))

    assert states(org) == {State.SYNCED: 2}
    assert not Alert.objects.filter(kind=Kind.SCHEDULED_SYNC_FAILED).exists()


# --- the hooks never break a sync -------------------------------------------------------------


def test_an_error_in_the_alert_rules_is_logged_and_the_sync_goes_on(
    org, people, erp_sandbox, monkeypatch, caplog
):
    configure(org, erp_sandbox)
    make_records(org, 12)
    erp_sandbox.set_faults(error_rate=1.0)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the alert rules are broken")

    monkeypatch.setattr(rules, "check_many_errors", broken)
    with caplog.at_level(logging.ERROR, logger="alerts.hooks"):
        run = sync(org)

    assert (run.status, run.failed) == (SyncRun.Status.FAILED, 12)
    assert states(org) == {State.FAILED: 12}
    assert "alert hook attempts_recorded failed" in caplog.text
    # The periodic check catches up on what the broken hook missed.
    monkeypatch.undo()
    rules.periodic_check()
    assert Alert.objects.get(kind=Kind.MANY_ERRORS).is_open
