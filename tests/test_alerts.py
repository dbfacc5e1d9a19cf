"""The alert rules on their own, time-controlled (S7.2's 24 hours, S7.3's 48 hours), and
who receives what: one alert per ongoing problem (S7.4), read state per person, other
organizations kept apart. The engine's part is in tests/test_alerts_engine.py.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from accounting_sync.models import FinancialRecord
from alerts import rules
from alerts.models import Alert, AlertRecipient
from alerts.tasks import check_alerts
from integrations.models import Integration
from organizations.models import Membership
from tests.conftest import make_user
from tests.factories import make_records
from tests.test_audit_log import make_attempts

Kind = Alert.Kind
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def enable(org) -> None:
    Integration.objects.filter(organization=org).update(enabled=True)


def open_alerts(kind: str | None = None) -> list[Alert]:
    alerts = Alert.objects.filter(resolved_at__isnull=True)
    return list(alerts.filter(kind=kind) if kind else alerts)


def unread_for(user) -> int:
    return AlertRecipient.objects.for_user(user).unread().count()


def a_failing_record_alert(org, n: int = 1) -> Alert:
    alert = rules.open_alert(
        org.pk,
        Kind.RECORD_FAILING,
        {"reference": f"VH-{org.pk}-{n}", "record_kind": "reimbursement", "error": "Nope"},
        key=rules.record_key(n),
    )
    assert alert is not None
    return alert


# --- S7.3: records waiting more than 48 hours ---------------------------------------------------


def test_s7_3_records_pending_over_48_hours_alert_the_org_admins_with_a_link_to_the_dashboard(
    org, org_admin, auditor, global_admin
):
    enable(org)
    with time_machine.travel(START, tick=False) as traveller:
        make_records(org, 2)

        traveller.shift(timedelta(hours=47, minutes=59))
        check_alerts.apply()
        assert not Alert.objects.exists()

        traveller.shift(timedelta(minutes=2))
        check_alerts.apply()

    alert = Alert.objects.get()
    assert alert.kind == Kind.PENDING_TOO_LONG and alert.is_open
    assert list(alert.recipients.all()) == [org_admin]
    assert alert.link == reverse("organization_home", args=[org.slug])
    assert alert.link_label == "Open the status dashboard"
    assert alert.message.startswith("2 approved records have waited more than 48 hours")


def test_s7_3_records_waiting_behind_a_disabled_connector_raise_nothing(org, org_admin):
    with time_machine.travel(START, tick=False) as traveller:
        make_records(org, 2)
        traveller.shift(timedelta(days=5))
        rules.periodic_check()

    assert not Alert.objects.exists()


def test_s7_4_the_waiting_alert_closes_when_the_connector_is_turned_off(org, org_admin):
    enable(org)
    with time_machine.travel(START, tick=False) as traveller:
        make_records(org, 1)
        traveller.shift(timedelta(hours=49))
        rules.periodic_check()
        assert open_alerts(Kind.PENDING_TOO_LONG)

        Integration.objects.filter(organization=org).update(enabled=False)
        traveller.shift(timedelta(minutes=5))
        rules.periodic_check()

    assert not open_alerts()
    assert Alert.objects.get().resolved_at == START + timedelta(hours=49, minutes=5)


def test_s7_4_the_waiting_alert_closes_when_the_records_are_sent_and_a_new_wait_is_a_new_alert(
    org, org_admin
):
    enable(org)
    with time_machine.travel(START, tick=False) as traveller:
        make_records(org, 3)
        traveller.shift(timedelta(hours=49))
        rules.periodic_check()
        FinancialRecord.objects.update(state=FinancialRecord.State.SYNCED)
        rules.periodic_check()
        assert not open_alerts()

        make_records(org, 1, start=50)
        traveller.shift(timedelta(hours=49))
        rules.periodic_check()

    assert Alert.objects.filter(kind=Kind.PENDING_TOO_LONG).count() == 2
    (again,) = open_alerts()
    assert again.details["count"] == 1


# --- S7.2: more than 10 failures in 24 hours -----------------------------------------------------


def test_s7_2_ten_failures_in_24_hours_are_not_more_than_ten(org, org_admin, global_admin):
    with time_machine.travel(START, tick=False):
        make_attempts(org, 10, status="failed", error="Period is closed", when=START)
        rules.periodic_check()

    assert not Alert.objects.exists()


def test_s7_2_the_eleventh_failure_within_24_hours_alerts_admins_and_global_admins(
    org, org_admin, global_admin, other_admin
):
    make_attempts(org, 6, status="failed", error="Timeout", when=START)
    make_attempts(org, 5, status="failed", error="Period is closed", when=START, start=6)
    with time_machine.travel(START + timedelta(hours=23), tick=False):
        rules.periodic_check()

    alert = Alert.objects.get()
    assert alert.kind == Kind.MANY_ERRORS
    assert set(alert.recipients.all()) == {org_admin, global_admin}
    assert alert.message == (
        "11 sync attempts failed in the last 24 hours (more than 10). Last error: Period is closed"
    )


def test_s7_2_failures_older_than_24_hours_do_not_count(org, org_admin):
    make_attempts(org, 11, status="failed", error="Timeout", when=START)
    with time_machine.travel(START + timedelta(hours=24, seconds=1), tick=False):
        rules.periodic_check()

    assert not Alert.objects.exists()


def test_s7_2_succeeded_attempts_are_not_errors(org, org_admin):
    make_attempts(org, 20, when=START)
    with time_machine.travel(START + timedelta(hours=1), tick=False):
        rules.periodic_check()

    assert not Alert.objects.exists()


# --- S7.4: one alert per ongoing problem ---------------------------------------------------------


def test_s7_4_the_same_problem_raises_one_alert_however_often_it_is_checked(org, org_admin):
    enable(org)
    with time_machine.travel(START - timedelta(hours=49), tick=False):
        make_records(org, 1, category="honorarium")
    make_attempts(org, 11, status="failed", error="Timeout", when=START)

    with time_machine.travel(START + timedelta(hours=1), tick=False):
        rules.periodic_check()
        rules.periodic_check()
        check_alerts.apply()
        rules.check_many_errors(org.pk)
        rules.check_waiting_records(org.pk)

    assert sorted(a.kind for a in Alert.objects.all()) == [
        Kind.MANY_ERRORS,
        Kind.PENDING_TOO_LONG,
    ]
    assert AlertRecipient.objects.filter(user=org_admin).count() == 2


def test_s7_4_the_database_refuses_a_second_open_alert_for_the_same_problem(org):
    Alert.objects.create(organization=org, kind=Kind.MANY_ERRORS)
    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(organization=org, kind=Kind.MANY_ERRORS)
    # A resolved one does not count: the problem can come back as a new alert.
    Alert.objects.update(resolved_at=START)
    Alert.objects.create(organization=org, kind=Kind.MANY_ERRORS)
    assert Alert.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_s7_4_two_workers_opening_the_same_alert_at_once_open_it_once(org, org_admin, monkeypatch):
    both_checked = threading.Barrier(2, timeout=10)
    real_create = Alert.objects.create
    # SQLite takes its write lock at BEGIN, so there the second worker waits for the first
    # to commit and can never reach the insert alongside it: the database serialises them,
    # and only the outcome (one alert) can be checked. PostgreSQL (CI) runs the real race.
    concurrent_writers = connection.vendor != "sqlite"

    def create_after_both_looked(**kwargs):
        # Both have seen no open alert: now they insert at the same moment.
        if concurrent_writers:
            both_checked.wait()
        return real_create(**kwargs)

    monkeypatch.setattr(Alert.objects, "create", create_after_both_looked)
    opened: list[Alert | None] = []

    def worker() -> None:
        try:
            opened.append(rules.open_alert(org.pk, Kind.AUTHENTICATION_FAILED, {"error": "x"}))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert len(opened) == 2 and sum(alert is not None for alert in opened) == 1
    assert Alert.objects.count() == 1
    assert AlertRecipient.objects.count() == 1


# --- who receives what ----------------------------------------------------------------------------


def test_s7_5_read_state_is_per_person(org, org_admin):
    second_admin = make_user("second-admin", organization=org, role="admin")
    alert = a_failing_record_alert(org)
    assert (unread_for(org_admin), unread_for(second_admin)) == (1, 1)

    AlertRecipient.objects.get(alert=alert, user=org_admin).mark_read()

    assert (unread_for(org_admin), unread_for(second_admin)) == (0, 1)


def test_alerts_of_another_organization_never_reach_its_admins(
    org, other_org, org_admin, other_admin, auditor, global_admin
):
    a_failing_record_alert(other_org)

    assert AlertRecipient.objects.for_user(org_admin).count() == 0
    assert AlertRecipient.objects.for_user(auditor).count() == 0
    assert AlertRecipient.objects.for_user(other_admin).count() == 1
    # S7.1 goes to the organization's admins only, not to the global admins.
    assert AlertRecipient.objects.for_user(global_admin).count() == 0


def test_an_admin_who_is_no_longer_admin_stops_seeing_the_organizations_alerts(org, org_admin):
    a_failing_record_alert(org)
    Membership.objects.filter(user=org_admin).update(role=Membership.Role.AUDITOR)

    assert AlertRecipient.objects.for_user(org_admin).count() == 0


def test_an_organization_without_admins_alerts_the_global_admins_instead(org, global_admin):
    alert = a_failing_record_alert(org)

    assert list(alert.recipients.all()) == [global_admin]


def test_inactive_people_are_not_addressed(org, org_admin):
    gone = make_user("gone", organization=org, role="admin")
    gone.is_active = False
    gone.save()

    alert = a_failing_record_alert(org)

    assert list(alert.recipients.all()) == [org_admin]
