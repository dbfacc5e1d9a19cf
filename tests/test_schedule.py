"""The automatic sync schedule (S9.1-S9.3, S9.7): cron, words, next runs, the beat task, the page.

Time is fixed with time_machine wherever the answer depends on it. Daylight saving
in Europe/Oslo: clocks go forward at 02:00 on the last Sunday of March (2025-03-30)
and back at 03:00 on the last Sunday of October (2025-10-26).
"""

from __future__ import annotations

import html
import zoneinfo
from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import translation
from django_celery_beat.models import PeriodicTask
from django_celery_beat.tzcrontab import TzAwareCrontab

from audit.models import AdminAction
from integrations import schedule
from integrations.models import Integration

OSLO = zoneinfo.ZoneInfo("Europe/Oslo")


def oslo(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=OSLO)


@pytest.fixture(autouse=True)
def _in_english():
    """These tests read English words from functions called directly; a request in Norwegian
    by an earlier test leaves Norwegian active in this thread (nothing deactivates it)."""
    with translation.override("en"):
        yield


@pytest.fixture
def integration(org) -> Integration:
    return Integration.objects.select_related("organization").get(organization=org)


def planned(integration: Integration, **values) -> Integration:
    """The integration with these schedule values (unsaved: the functions need no database)."""
    for name, value in values.items():
        setattr(integration, name, value)
    return integration


def page_url(org) -> str:
    return reverse("integration_schedule", args=[org.slug])


def preview_url(org) -> str:
    return reverse("integration_schedule_preview", args=[org.slug])


FORM = {
    "schedule": "daily",
    "schedule_time": "02:00",
    "schedule_weekday": "",
    "schedule_day": "",
    "schedule_cron": "",
    "sync_after_approval": "on",
    "include_reimbursements": "on",
    "include_honorariums": "on",
    "automatic_retries": "5",
    "first_retry_delay_seconds": "60",
}


# --- S9.1: every option's cron expression -------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "cron"),
    [
        ({"schedule": "manual"}, None),
        ({"schedule": "daily", "schedule_time": time(2, 0)}, "0 2 * * *"),
        ({"schedule": "daily", "schedule_time": time(23, 45)}, "45 23 * * *"),
        ({"schedule": "weekly", "schedule_time": time(2, 0), "schedule_weekday": 1}, "0 2 * * 1"),
        ({"schedule": "weekly", "schedule_time": time(6, 30), "schedule_weekday": 7}, "30 6 * * 0"),
        ({"schedule": "monthly", "schedule_time": time(2, 0), "schedule_day": 1}, "0 2 1 * *"),
        ({"schedule": "monthly", "schedule_time": time(2, 0), "schedule_day": 28}, "0 2 28 * *"),
        ({"schedule": "monthly", "schedule_time": time(2, 0), "schedule_day": 29}, "0 2 28-31 * *"),
        ({"schedule": "monthly", "schedule_time": time(2, 0), "schedule_day": 31}, "0 2 28-31 * *"),
        ({"schedule": "custom", "schedule_cron": "*/15 9-17 * * 1-5"}, "*/15 9-17 * * 1-5"),
        ({"schedule": "daily", "schedule_time": None}, None),  # incomplete: nothing to fire
    ],
)
def test_s9_1_each_option_becomes_its_cron_expression(integration, values, cron) -> None:
    assert schedule.cron_for(planned(integration, **values)) == cron


# --- S9.3: a custom expression is validated with a message that says what is wrong ---------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "Type a cron expression"),
        ("0 2 * *", "has 5 fields separated by spaces"),
        ("0 2 * *", "This one has 4."),
        ("0 2 * * * *", "This one has 6."),
        ("0 25 * * *", 'The hour field "25" is out of range: use 0 to 23.'),
        ("61 2 * * *", 'The minute field "61" is out of range: use 0 to 59.'),
        ("0 2 0 * *", 'The day-of-month field "0" is out of range'),
        ("0 2 * 1-13 *", 'The month field "1-13" has 13, which is out of range'),
        ("0 2 * * 7", "write Sunday as 0"),
        ("0 20-10 * * *", "runs backwards: write the smaller number first (10-20)"),
        ("0 2 * * monday", '"monday" has a word cron does not understand'),
        ("every day at two am", 'The minute field "every" has a word'),
        ("0 2 L * *", "uses L, W, # or ?, which the scheduler does not support"),
        ("0 2 * * 1#2", "uses L, W, # or ?"),
        ("*/0 * * * *", 'The minute field "*/0" is not valid'),
        ("0 0 30 2 *", "never matches a real date"),
        ("0 2 1 * 1", "Restrict either the day-of-month or the day-of-week, not both"),
    ],
)
def test_s9_3_a_bad_cron_expression_is_refused_saying_what_is_wrong(expression, message) -> None:
    with pytest.raises(ValidationError) as refused:
        schedule.validate_cron(expression)
    assert message in refused.value.messages[0]


@pytest.mark.parametrize(
    "expression",
    ["0 2 * * *", "*/15 9-17 * * 1-5", "0 6 1 jan,jul *", "30 4 * * SUN", "0 0 29 2 *"],
)
def test_s9_3_a_good_cron_expression_is_accepted(expression) -> None:
    assert schedule.validate_cron(f"  {expression} ") == expression


def test_s9_3_extra_spaces_are_tidied(integration) -> None:
    assert schedule.validate_cron("0   2 *  * 1-5") == "0 2 * * 1-5"


# --- S9.3: in words, in English and Norwegian Bokmål ----------------------------------------------


@pytest.mark.parametrize(
    ("values", "en", "nb"),
    [
        (
            {"schedule": "manual"},
            "Manual only: no automatic syncs.",
            "Bare manuelt: ingen automatisk synkronisering.",
        ),
        (
            {"schedule": "daily", "schedule_time": time(2, 0)},
            "Every day at 02:00.",
            "Hver dag kl. 02:00.",
        ),
        (
            {"schedule": "weekly", "schedule_time": time(2, 0), "schedule_weekday": 7},
            "Every Sunday at 02:00.",
            "Hver søndag kl. 02:00.",
        ),
        (
            {"schedule": "monthly", "schedule_time": time(3, 15), "schedule_day": 15},
            "On day 15 of every month at 03:15.",
            "Den 15. hver måned kl. 03:15.",
        ),
        (
            {"schedule": "monthly", "schedule_time": time(2, 0), "schedule_day": 31},
            "On day 31 of every month at 02:00; in shorter months on the last day.",
            "Den 31. hver måned kl. 02:00; i kortere måneder på den siste dagen.",
        ),
        (
            {"schedule": "custom", "schedule_cron": "*/15 9-17 * * 1-5"},
            "Every 15 minutes, between 09:00 and 17:59, Monday through Friday.",
            "Hvert 15. minutt, mellom 09:00 og 17:59, mandag til og med fredag.",
        ),
        (
            {"schedule": "custom", "schedule_cron": "0 6 1 1,7 *"},
            "At 06:00, on day 1 of the month, only in January and July.",
            "Kl. 06:00, på dag 1 av måneden, bare i januar og juli.",
        ),
        (
            {"schedule": "custom", "schedule_cron": "30 4 * * SUN"},
            "At 04:30, only on Sunday.",
            "Kl. 04:30, bare på søndag.",
        ),
    ],
)
def test_s9_3_the_schedule_is_described_in_english_and_norwegian(integration, values, en, nb):
    description = schedule.describe(planned(integration, **values))
    assert description is not None
    assert (description.en, description.nb) == (en, nb)


# --- S9.2: the next five runs, in the organization's time zone -----------------------------------


def moments(integration: Integration) -> list[str]:
    return [run.moment.isoformat() for run in schedule.next_runs(integration)]


def test_s9_2_the_next_five_runs_are_listed_in_the_organizations_time_zone(integration) -> None:
    with time_machine.travel(oslo(2025, 6, 4, 12, 0), tick=False):
        runs = moments(planned(integration, schedule="daily", schedule_time=time(2, 0)))
    assert runs == [
        "2025-06-05T02:00:00+02:00",
        "2025-06-06T02:00:00+02:00",
        "2025-06-07T02:00:00+02:00",
        "2025-06-08T02:00:00+02:00",
        "2025-06-09T02:00:00+02:00",
    ]


def test_s9_2_a_run_due_later_today_comes_first(integration) -> None:
    with time_machine.travel(oslo(2025, 6, 4, 1, 59), tick=False):
        runs = moments(planned(integration, schedule="daily", schedule_time=time(2, 0)))
    assert runs[0] == "2025-06-04T02:00:00+02:00"


def test_s9_2_another_time_zone_is_honoured(integration) -> None:
    integration.organization.time_zone = "America/New_York"
    with time_machine.travel(oslo(2025, 6, 4, 12, 0), tick=False):
        runs = moments(planned(integration, schedule="daily", schedule_time=time(2, 0)))
    assert runs[0] == "2025-06-05T02:00:00-04:00"


def test_s9_1_manual_only_has_no_next_runs(integration) -> None:
    assert schedule.next_runs(planned(integration, schedule="manual")) == []


def test_s9_1_weekly_on_sunday_runs_every_sunday(integration) -> None:
    weekly = planned(integration, schedule="weekly", schedule_time=time(2, 0), schedule_weekday=7)
    assert schedule.cron_for(weekly) == "0 2 * * 0"
    with time_machine.travel(oslo(2025, 6, 4, 12, 0), tick=False):  # a Wednesday
        runs = schedule.next_runs(weekly)
    assert [run.moment.strftime("%a %Y-%m-%d %H:%M") for run in runs] == [
        "Sun 2025-06-08 02:00",
        "Sun 2025-06-15 02:00",
        "Sun 2025-06-22 02:00",
        "Sun 2025-06-29 02:00",
        "Sun 2025-07-06 02:00",
    ]


# --- daylight saving in Europe/Oslo ------------------------------------------------------------


def beat_fires_at(expression: str, last_run: datetime, moment: datetime) -> bool:
    """Whether Celery beat's time-zone-aware crontab, which fires the real task, becomes
    due exactly at `moment` (not a second before) after a run at `last_run`."""
    minute, hour, day, month, weekday = expression.split()
    crontab = TzAwareCrontab(minute, hour, weekday, day, month, tz=OSLO)
    # In UTC: arithmetic on a local time is wall-clock arithmetic, wrong across a change.
    moment = moment.astimezone(UTC)
    with time_machine.travel(moment - timedelta(seconds=1), tick=False):
        before = crontab.is_due(last_run).is_due
    with time_machine.travel(moment + timedelta(seconds=1), tick=False):
        after = crontab.is_due(last_run).is_due
    return after and not before


def assert_beat_agrees(integration: Integration, now: datetime) -> None:
    last = now
    expression = schedule.cron_for(integration)
    assert expression is not None
    for run in schedule.next_runs(integration, now=now):
        assert beat_fires_at(expression, last, run.moment), run.moment
        last = run.moment.astimezone(UTC) + timedelta(seconds=2)  # when beat sent it


def test_dst_daily_0200_across_the_spring_forward_keeps_0200_and_runs_at_0300_that_night(
    integration,
) -> None:
    daily = planned(integration, schedule="daily", schedule_time=time(2, 0))
    with time_machine.travel(oslo(2025, 3, 28, 12, 0), tick=False):
        runs = schedule.next_runs(daily)
    assert [run.moment.isoformat() for run in runs[:3]] == [
        "2025-03-29T02:00:00+01:00",
        # 02:00-02:59 does not exist on 30 March: the first moment after it is 03:00 CEST.
        "2025-03-30T03:00:00+02:00",
        "2025-03-31T02:00:00+02:00",  # back to 02:00, now summer time
    ]
    assert "02:00 does not exist that night" in runs[1].note
    assert runs[0].note == runs[2].note == ""
    assert_beat_agrees(daily, oslo(2025, 3, 28, 12, 0))


def test_dst_a_time_that_does_not_exist_runs_when_beat_runs_it_and_the_list_says_so(
    integration,
) -> None:
    """02:30 on 30 March: cronsim's own DST handling would say 03:00 (the first existing
    minute), but Celery beat reads 02:30 with the winter offset and fires at 03:30 CEST.
    The next runs show what beat does."""
    from cronsim import CronSim

    assert next(CronSim("30 2 * * *", oslo(2025, 3, 29, 12, 0))).isoformat() == (
        "2025-03-30T03:00:00+02:00"
    )
    daily = planned(integration, schedule="daily", schedule_time=time(2, 30))
    with time_machine.travel(oslo(2025, 3, 29, 12, 0), tick=False):
        runs = schedule.next_runs(daily)
    assert runs[0].moment.isoformat() == "2025-03-30T03:30:00+02:00"
    assert (
        runs[0].note == "02:30 does not exist that night (clocks go forward), so it runs at 03:30."
    )
    assert runs[1].moment.isoformat() == "2025-03-31T02:30:00+02:00"
    assert_beat_agrees(daily, oslo(2025, 3, 29, 12, 0))


def test_dst_daily_0200_across_the_fall_back_runs_once_at_the_first_0200(integration) -> None:
    daily = planned(integration, schedule="daily", schedule_time=time(2, 0))
    with time_machine.travel(oslo(2025, 10, 25, 12, 0), tick=False):
        runs = schedule.next_runs(daily)
    assert [run.moment.isoformat() for run in runs[:3]] == [
        "2025-10-26T02:00:00+02:00",  # the first 02:00 (summer time); not again an hour later
        "2025-10-27T02:00:00+01:00",
        "2025-10-28T02:00:00+01:00",
    ]
    assert "runs once, at the first 02:00" in runs[0].note
    assert_beat_agrees(daily, oslo(2025, 10, 25, 12, 0))


def test_dst_a_custom_every_20_minutes_skips_the_missing_hour_and_the_repeated_one(
    integration,
) -> None:
    custom = planned(integration, schedule="custom", schedule_cron="*/20 1-3 * * *")
    spring = [
        run.moment.isoformat() for run in schedule.next_runs(custom, now=oslo(2025, 3, 30, 1, 30))
    ]
    assert spring == [
        "2025-03-30T01:40:00+01:00",
        "2025-03-30T03:00:00+02:00",  # 02:00 does not exist
        "2025-03-30T03:20:00+02:00",
        "2025-03-30T03:40:00+02:00",
        "2025-03-31T01:00:00+02:00",
    ]
    assert_beat_agrees(custom, oslo(2025, 3, 30, 1, 30))
    autumn = [
        run.moment.isoformat() for run in schedule.next_runs(custom, now=oslo(2025, 10, 26, 1, 50))
    ]
    assert autumn == [
        "2025-10-26T02:00:00+02:00",
        "2025-10-26T02:20:00+02:00",
        "2025-10-26T02:40:00+02:00",
        "2025-10-26T03:00:00+01:00",  # 02:00-02:59 again in winter time: not run twice
        "2025-10-26T03:20:00+01:00",
    ]
    assert_beat_agrees(custom, oslo(2025, 10, 26, 1, 50))


# --- monthly on the 29th-31st: the last day of shorter months -------------------------------------


@pytest.mark.parametrize(
    ("year", "february"),
    [(2024, "2024-02-29T02:00:00+01:00"), (2025, "2025-02-28T02:00:00+01:00")],
    ids=["leap-year", "common-year"],
)
def test_monthly_on_the_31st_runs_on_the_last_day_of_february(integration, year, february):
    monthly = planned(integration, schedule="monthly", schedule_time=time(2, 0), schedule_day=31)
    with time_machine.travel(oslo(year, 1, 15, 12, 0), tick=False):
        runs = moments(monthly)
    # 31 March 2024 was the night clocks went forward: 02:00 did not exist, so 03:00.
    march = "2024-03-31T03:00:00+02:00" if year == 2024 else "2025-03-31T02:00:00+02:00"
    assert runs == [
        f"{year}-01-31T02:00:00+01:00",
        february,
        march,
        f"{year}-04-30T02:00:00+02:00",
        f"{year}-05-31T02:00:00+02:00",
    ]


def test_monthly_on_the_30th_runs_on_the_29th_of_february_in_a_leap_year(integration) -> None:
    monthly = planned(integration, schedule="monthly", schedule_time=time(2, 0), schedule_day=30)
    with time_machine.travel(oslo(2024, 2, 1, 12, 0), tick=False):
        runs = moments(monthly)
    assert runs[:3] == [
        "2024-02-29T02:00:00+01:00",
        "2024-03-30T02:00:00+01:00",
        "2024-04-30T02:00:00+02:00",
    ]


@pytest.mark.parametrize(
    ("day", "month", "runs_on"),
    [
        (31, (2025, 2), {28}),
        (31, (2024, 2), {29}),
        (31, (2025, 4), {30}),
        (31, (2025, 5), {31}),
        (30, (2025, 2), {28}),
        (30, (2025, 3), {30}),
        (29, (2025, 3), {29}),
        (29, (2025, 2), {28}),
    ],
)
def test_is_schedule_day_on_the_28th_to_31st(
    integration, day, month: tuple[int, int], runs_on
) -> None:
    """Beat fires on each of the 28th-31st; only the right one of them runs."""
    import calendar

    monthly = planned(integration, schedule="monthly", schedule_time=time(2, 0), schedule_day=day)
    last = calendar.monthrange(*month)[1]
    days = {d for d in range(28, last + 1) if monthly.is_schedule_day(oslo(*month, d, 2, 0))}
    assert days == runs_on


def test_is_schedule_day_reads_the_day_in_the_organizations_time_zone(integration) -> None:
    monthly = planned(integration, schedule="monthly", schedule_time=time(0, 30), schedule_day=31)
    # 00:30 on 1 May in Oslo is still 30 April in UTC: the day that counts is Oslo's.
    assert not monthly.is_schedule_day(oslo(2025, 5, 1, 0, 30).astimezone(zoneinfo.ZoneInfo("UTC")))
    assert monthly.is_schedule_day(oslo(2025, 4, 30, 0, 30).astimezone(zoneinfo.ZoneInfo("UTC")))


# --- the django-celery-beat task ---------------------------------------------------------------


def test_s9_2_saving_daily_creates_the_beat_task_with_the_crontab_and_time_zone(
    admin_client, org, integration
) -> None:
    assert not integration.enabled  # the task is kept even so: scheduled_sync checks enabled
    admin_client.post(page_url(org), FORM)

    task = PeriodicTask.objects.get(name=f"sync-schedule-{org.pk}")
    assert task.task == "accounting_sync.tasks.scheduled_sync"
    assert task.args == f"[{org.pk}]"
    assert task.enabled
    crontab = task.crontab
    assert (
        crontab.minute,
        crontab.hour,
        crontab.day_of_month,
        crontab.month_of_year,
        crontab.day_of_week,
    ) == ("0", "2", "*", "*", "*")
    assert str(crontab.timezone) == "Europe/Oslo"


def test_the_beat_task_is_updated_on_change_and_deleted_for_manual_only(
    admin_client, org, integration
) -> None:
    admin_client.post(page_url(org), FORM)
    admin_client.post(
        page_url(org),
        {**FORM, "schedule": "weekly", "schedule_time": "06:30", "schedule_weekday": "7"},
    )
    task = PeriodicTask.objects.get(name=f"sync-schedule-{org.pk}")
    assert PeriodicTask.objects.filter(name__startswith="sync-schedule-").count() == 1
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "6", "0")
    # A changed schedule counts from now, so beat does not think it overdue and fire at once.
    assert task.last_run_at is not None

    admin_client.post(
        page_url(org),
        {**FORM, "schedule": "monthly", "schedule_day": "31", "schedule_time": "02:00"},
    )
    task.refresh_from_db()
    assert task.crontab.day_of_month == "28-31"

    admin_client.post(page_url(org), {**FORM, "schedule": "manual"})
    assert not PeriodicTask.objects.filter(name=f"sync-schedule-{org.pk}").exists()


def test_each_organization_has_its_own_beat_task_in_its_own_time_zone(org, other_org) -> None:
    other_org.time_zone = "Europe/London"
    other_org.save()
    for organization in (org, other_org):
        integration = Integration.objects.select_related("organization").get(
            organization=organization
        )
        schedule.sync_periodic_task(planned(integration, schedule="daily", schedule_time=time(2)))
    mine = PeriodicTask.objects.get(name=f"sync-schedule-{org.pk}")
    theirs = PeriodicTask.objects.get(name=f"sync-schedule-{other_org.pk}")
    assert (mine.args, str(mine.crontab.timezone)) == (f"[{org.pk}]", "Europe/Oslo")
    assert (theirs.args, str(theirs.crontab.timezone)) == (f"[{other_org.pk}]", "Europe/London")


# --- the page ----------------------------------------------------------------------------------


def test_s9_1_the_page_offers_the_five_options(admin_client, org) -> None:
    page = admin_client.get(page_url(org)).content.decode()
    for label in ("Manual only", "Daily", "Weekly", "Monthly", "Custom (cron)"):
        assert f"> {label}</label>" in page
    assert "Sync schedule</legend>" in page


def test_s9_2_daily_at_0200_shows_the_next_run(admin_client, org) -> None:
    with time_machine.travel(oslo(2025, 6, 4, 12, 0), tick=False):
        response = admin_client.post(page_url(org), FORM, follow=True)
    page = response.content.decode()
    assert "The schedule was saved. The next sync is Thursday 5 June 2025 at 02:00 CEST." in page
    assert "Next scheduled sync:" in page
    assert "Thursday 5 June 2025, 02:00 CEST" in page
    # In the reader's language only (English here; tests/test_i18n.py reads it in Norwegian).
    assert "Every day at 02:00." in page and "Hver dag kl. 02:00." not in page
    integration = Integration.objects.get(organization=org)
    assert (integration.schedule, integration.schedule_time) == ("daily", time(2, 0))


def test_s9_2_saving_records_who_changed_what(admin_client, org, org_admin) -> None:
    admin_client.post(page_url(org), FORM)

    action = AdminAction.objects.get(kind=AdminAction.Kind.SCHEDULE_CHANGED)
    assert action.actor == org_admin and action.organization == org
    assert action.detail["changes"] == {
        "schedule": {"from": "manual", "to": "daily"},
        "schedule_time": {"from": None, "to": "02:00"},
    }
    assert action.detail["cron"] == "0 2 * * *"

    admin_client.post(page_url(org), FORM)  # nothing changed: nothing recorded
    assert AdminAction.objects.filter(kind=AdminAction.Kind.SCHEDULE_CHANGED).count() == 1


def test_s9_7_data_types_after_approval_and_retries_are_saved(admin_client, org) -> None:
    form = {**FORM, "automatic_retries": "3", "first_retry_delay_seconds": "120"}
    del form["include_honorariums"], form["sync_after_approval"]
    admin_client.post(page_url(org), form)
    integration = Integration.objects.get(organization=org)
    assert integration.include_reimbursements and not integration.include_honorariums
    assert not integration.sync_after_approval
    assert (integration.automatic_retries, integration.first_retry_delay_seconds) == (3, 120)


def test_s9_7_a_sync_must_include_at_least_one_type_of_record(admin_client, org) -> None:
    form = dict(FORM)
    del form["include_honorariums"], form["include_reimbursements"]
    page = admin_client.post(page_url(org), form).content.decode()
    assert "Include at least one type of record" in page
    assert Integration.objects.get(organization=org).schedule == "manual"


def test_s9_7_retry_settings_out_of_range_are_refused(admin_client, org) -> None:
    page = admin_client.post(page_url(org), {**FORM, "automatic_retries": "21"})
    assert page.status_code == 200
    assert "less than or equal to 20" in page.content.decode()


@pytest.mark.parametrize(
    ("choice", "missing", "message"),
    [
        ({"schedule": "daily", "schedule_time": ""}, "schedule_time", "Choose the time."),
        ({"schedule": "weekly"}, "schedule_weekday", "Choose the day of the week."),
        ({"schedule": "monthly"}, "schedule_day", "Choose the day of the month."),
        ({"schedule": "custom"}, "schedule_cron", "Type a cron expression"),
    ],
)
def test_s9_1_each_option_asks_for_its_own_inputs(admin_client, org, choice, missing, message):
    page = admin_client.post(page_url(org), {**FORM, **choice}).content.decode()
    assert message in page
    assert Integration.objects.get(organization=org).schedule == "manual"


def test_s9_1_inputs_the_option_does_not_use_are_not_kept(admin_client, org) -> None:
    admin_client.post(
        page_url(org),
        {**FORM, "schedule_weekday": "3", "schedule_day": "12", "schedule_cron": "nonsense"},
    )
    integration = Integration.objects.get(organization=org)
    assert (integration.schedule_weekday, integration.schedule_day) == (None, None)
    assert integration.schedule_cron == ""


def test_s9_3_without_javascript_a_bad_custom_expression_is_shown_with_its_error(
    admin_client, org
) -> None:
    response = admin_client.post(
        page_url(org), {**FORM, "schedule": "custom", "schedule_cron": "0 25 * * *"}
    )
    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    assert 'The hour field "25" is out of range: use 0 to 23.' in page
    assert 'value="0 25 * * *"' in page  # kept, to be corrected
    assert Integration.objects.get(organization=org).schedule == "manual"
    assert not PeriodicTask.objects.exists()


def test_s9_3_a_good_custom_expression_is_saved_and_described(admin_client, org) -> None:
    with time_machine.travel(oslo(2025, 6, 4, 12, 0), tick=False):
        response = admin_client.post(
            page_url(org),
            {**FORM, "schedule": "custom", "schedule_cron": "0 6 * * 1-5"},
            follow=True,
        )
    page = response.content.decode()
    assert "At 06:00, Monday through Friday." in page
    assert "Thursday 5 June 2025, 06:00 CEST" in page
    assert PeriodicTask.objects.get().crontab.day_of_week == "1-5"


def test_auditors_see_the_schedule_read_only_and_cannot_change_it(org, auditor, integration):
    planned(integration, schedule="daily", schedule_time=time(2, 0)).save()
    client = Client()
    client.force_login(auditor)
    page = client.get(page_url(org)).content.decode()
    assert "Every day at 02:00." in page
    assert "read-only access" in page
    assert 'method="post"' not in page.split("<main")[1]  # only the header's log-out form
    assert client.post(page_url(org), FORM).status_code == 403
    assert Integration.objects.get(organization=org).schedule == "daily"


def test_the_page_shows_the_saved_schedule_next_runs_and_time_zone(admin_client, org, integration):
    planned(integration, schedule="weekly", schedule_time=time(2, 0), schedule_weekday=7).save()
    with time_machine.travel(oslo(2025, 6, 4, 12, 0), tick=False):
        page = admin_client.get(page_url(org)).content.decode()
    assert "Next scheduled sync:" in page and "Sunday 8 June 2025, 02:00 CEST" in page
    assert "Sunday 6 July 2025, 02:00 CEST" in page  # the fifth
    assert "Times are in Europe/Oslo." in page
    assert "The connector is disabled" in page


def test_the_settings_page_links_to_the_schedule(admin_client, org) -> None:
    page = admin_client.get(reverse("integration_settings", args=[org.slug])).content.decode()
    assert f'href="{page_url(org)}"' in page


def test_an_organization_without_an_integration_has_no_schedule_page(admin_client, org) -> None:
    Integration.objects.filter(organization=org).delete()
    assert admin_client.get(page_url(org)).status_code == 404


# --- S9.3: the live preview as you type ---------------------------------------------------------


def test_s9_3_the_preview_answers_a_bad_expression_with_its_error(admin_client, org) -> None:
    response = admin_client.get(
        preview_url(org), {"schedule": "custom", "schedule_cron": "0 2 * *"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "A cron expression has 5 fields" in page and "This one has 4." in page
    assert "<html" not in page  # a fragment for htmx to swap in


def test_s9_3_the_preview_answers_a_good_expression_with_words_and_next_runs(
    admin_client, org
) -> None:
    with time_machine.travel(oslo(2025, 6, 4, 12, 0), tick=False):
        response = admin_client.get(
            preview_url(org), {"schedule": "custom", "schedule_cron": "*/15 9-17 * * 1-5"}
        )
    page = response.content.decode()
    assert "Every 15 minutes, between 09:00 and 17:59, Monday through Friday." in page
    assert page.count("<li>") == 5
    assert "Wednesday 4 June 2025, 12:15 CEST" in page
    assert "Wednesday 4 June 2025, 13:15 CEST" in page  # the fifth


def test_s9_3_the_preview_speaks_the_readers_language(admin_client, org) -> None:
    with time_machine.travel(oslo(2025, 6, 4, 12, 0), tick=False):
        response = admin_client.get(
            preview_url(org),
            {"schedule": "custom", "schedule_cron": "*/15 9-17 * * 1-5"},
            HTTP_ACCEPT_LANGUAGE="nb",
        )
    page = response.content.decode()
    assert "Hvert 15. minutt, mellom 09:00 og 17:59, mandag til og med fredag." in page
    assert "Every 15 minutes" not in page
    assert "onsdag 4. juni 2025, kl. 12:15 CEST" in page


def test_s9_3_the_preview_saves_nothing(admin_client, org) -> None:
    admin_client.get(preview_url(org), {**FORM, "schedule": "custom", "schedule_cron": "0 1 * * *"})
    assert Integration.objects.get(organization=org).schedule == "manual"
    assert not PeriodicTask.objects.exists()
    assert not AdminAction.objects.exists()


def test_s9_3_the_preview_covers_the_other_options_too(admin_client, org) -> None:
    with time_machine.travel(oslo(2025, 1, 15, 12, 0), tick=False):
        page = admin_client.get(
            preview_url(org),
            {"schedule": "monthly", "schedule_time": "02:00", "schedule_day": "31"},
        ).content.decode()
    assert "On day 31 of every month at 02:00; in shorter months on the last day." in page
    assert "Friday 28 February 2025, 02:00 CET" in page


def test_the_schedule_page_wires_the_cron_input_to_the_preview(admin_client, org) -> None:
    page = admin_client.get(page_url(org)).content.decode()
    assert f'hx-get="{preview_url(org)}"' in page
    assert 'hx-trigger="input changed delay:300ms"' in page
    assert 'id="schedule-preview" aria-live="polite"' in page
