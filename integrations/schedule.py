"""When an organization's records are synced automatically (S9): cron, words, next runs.

The schedule is stored on `Integration` as a choice (daily, weekly, ...) plus the
inputs that choice needs; everything else is derived here, on demand:

- `cron_for` turns it into the 5-field cron expression beat fires on;
- `validate_cron` checks a custom expression and says plainly what is wrong;
- `describe` says in English and Norwegian Bokmål when syncs happen (a page shows the
  reader's language);
- `next_runs` lists the next moments beat will actually fire, in the organization's zone;
- `last_firing` says when beat last fired, so a queued-up firing can stand down;
- `sync_periodic_task` keeps django-celery-beat's `PeriodicTask` in step with it.

Times are wall-clock times in the organization's time zone: "daily at 02:00" stays
02:00 across a daylight-saving change. On the night clocks go forward a time that
does not exist (02:30 in Oslo on the last Sunday of March) is run by Celery beat as
that wall-clock time read with the offset from before the change, i.e. one hour
later (03:30); cronsim's own time-zone handling would say 03:00 instead. `next_runs`
shows what beat does, and tests/test_schedule.py checks it against beat's crontab.
On the night clocks go back a repeated time (02:30 in late October) runs once, at
its first occurrence.
"""

from __future__ import annotations

import calendar
import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from celery.schedules import crontab
from cron_descriptor import ExpressionDescriptor, Options
from cronsim import CronSim, CronSimError
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone, translation
from django.utils.dateformat import format as format_date
from django.utils.dates import WEEKDAYS
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from integrations.models import Integration

Schedule = Integration.Schedule

TASK = "accounting_sync.tasks.scheduled_sync"

# Integration.schedule_weekday: 1 = Monday ... 7 = Sunday (ISO), as people count.
WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEKDAYS_NB = ("mandag", "tirsdag", "onsdag", "torsdag", "fredag", "lørdag", "søndag")
MONTHS_NB = (
    "januar",
    "februar",
    "mars",
    "april",
    "mai",
    "juni",
    "juli",
    "august",
    "september",
    "oktober",
    "november",
    "desember",
)

# The five fields, with what each accepts, for messages an admin can act on.
FIELDS = (
    (gettext_lazy("minute"), gettext_lazy("0 to 59")),
    (gettext_lazy("hour"), gettext_lazy("0 to 23")),
    (gettext_lazy("day-of-month"), gettext_lazy("1 to 31")),
    (gettext_lazy("month"), gettext_lazy("1 to 12, or JAN to DEC")),
    (gettext_lazy("day-of-week"), gettext_lazy("0 to 6 (0 = Sunday), or SUN to SAT")),
)
FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
NAMES = {
    3: {"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"},
    4: {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"},
}
SYNTAX = gettext_lazy("as single values, *, ranges (1-5), lists (1,15) or steps (*/15)")
EXAMPLE = "0 2 * * 1-5"


# --- the cron expression ----------------------------------------------------------------------


def cron_for(integration: Integration) -> str | None:
    """The cron expression beat fires on; None for Manual only or while inputs are missing."""
    kind, at = integration.schedule, integration.schedule_time
    if kind == Schedule.CUSTOM:
        return integration.schedule_cron or None
    if kind == Schedule.MANUAL or at is None:
        return None
    if kind == Schedule.DAILY:
        return f"{at.minute} {at.hour} * * *"
    if kind == Schedule.WEEKLY and integration.schedule_weekday:
        return f"{at.minute} {at.hour} * * {integration.schedule_weekday % 7}"  # cron: 0 = Sunday
    if kind == Schedule.MONTHLY and integration.schedule_day:
        if integration.schedule_day <= 28:
            return f"{at.minute} {at.hour} {integration.schedule_day} * *"
        # Cron has no "the 31st or the last day": fire on each of the 28th-31st and let
        # Integration.is_schedule_day run only the right one.
        return f"{at.minute} {at.hour} 28-31 * *"
    return None


def validate_cron(expression: str) -> str:
    """The expression with single spaces, or a ValidationError naming what is wrong.

    It must suit both cronsim (which lists the next runs) and Celery's crontab (which
    fires them), so features only one of them has (L, W, #, 7 for Sunday, and both
    day fields at once, which they read differently) are refused.
    """
    parts = expression.split()
    if not parts:
        raise ValidationError(
            _("Type a cron expression, for example %(example)s.") % {"example": EXAMPLE}
        )
    if len(parts) != 5:
        raise ValidationError(
            _(
                "A cron expression has 5 fields separated by spaces: minute, hour, "
                "day-of-month, month and day-of-week (for example %(example)s). "
                "This one has %(count)d."
            )
            % {"example": EXAMPLE, "count": len(parts)}
        )
    for index, value in enumerate(parts):
        if problem := _field_problem(index, value):
            raise ValidationError(problem)
    # cronsim (like Debian cron) reads two restricted day fields as "either", Celery as "both".
    if not parts[2].startswith("*") and not parts[4].startswith("*"):
        raise ValidationError(
            _(
                "Restrict either the day-of-month or the day-of-week, not both: cron would "
                "run on either day, but the scheduler only when both match. Use * in one of "
                "them."
            )
        )
    normalized = " ".join(parts)
    try:
        CronSim(normalized, datetime(2000, 1, 1))
    except CronSimError:
        # Every field is fine alone, so the combination never happens (31 February).
        raise ValidationError(
            _("This expression never matches a real date (for example day 30 in February).")
        ) from None
    return normalized


def _field_problem(index: int, value: str) -> str | None:
    name, accepted = FIELDS[index]
    low, high = FIELD_RANGES[index]
    upper = value.upper()
    said = {"name": name, "value": value, "accepted": accepted, "syntax": SYNTAX}
    words = [w for w in re.findall(r"[A-Z]+", upper) if w not in NAMES.get(index, set())]
    if "#" in upper or "?" in upper or (words and set(words) <= {"L", "W", "LW"}):
        return (
            _(
                'The %(name)s field "%(value)s" uses L, W, # or ?, which the scheduler does not '
                "support. Allowed: %(accepted)s, %(syntax)s."
            )
            % said
        )
    if words:
        return _(
            'The %(name)s field "%(value)s" has a word cron does not understand '
            '("%(word)s"). Allowed: %(accepted)s, %(syntax)s.'
        ) % {**said, "word": words[0].lower()}
    # Numbers outside the range (a step's size is not a value: */90 is allowed).
    numbers = [int(n) for n in re.findall(r"(?<![/\d])\d+", upper)]
    if index == 4 and 7 in numbers:
        return _('The day-of-week field "%(value)s" has 7: write Sunday as 0 (or SUN).') % said
    if out := [n for n in numbers if not low <= n <= high]:
        if value == str(out[0]):
            return _('The %(name)s field "%(value)s" is out of range: use %(accepted)s.') % said
        return _(
            'The %(name)s field "%(value)s" has %(number)d, which is out of range: '
            "use %(accepted)s."
        ) % {**said, "number": out[0]}
    for start, end in re.findall(r"(\d+)-(\d+)", upper):
        if int(start) > int(end):
            return _(
                'The %(name)s field "%(value)s" has the range %(start)s-%(end)s, which runs '
                "backwards: write the smaller number first (%(end)s-%(start)s)."
            ) % {**said, "start": start, "end": end}
    probe = ["*"] * 5
    probe[index] = upper
    try:
        CronSim(" ".join(probe), datetime(2000, 1, 1))
        _celery_crontab(" ".join(probe))
    except (CronSimError, ValueError):
        return (
            _('The %(name)s field "%(value)s" is not valid. Allowed: %(accepted)s, %(syntax)s.')
            % said
        )
    return None


def _celery_crontab(expression: str) -> crontab:
    minute, hour, day, month, weekday = expression.split()
    return crontab(
        minute=minute, hour=hour, day_of_month=day, month_of_year=month, day_of_week=weekday
    )


# --- in words ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Description:
    """Both wordings are made here (cron-descriptor words custom expressions in each);
    a page shows the one in the reader's language."""

    en: str
    nb: str

    def __str__(self) -> str:
        return self.nb if translation.get_language() == "nb" else self.en


def describe(integration: Integration) -> Description | None:
    """When syncs happen, in English and Norwegian Bokmål; None while inputs are missing."""
    kind, at = integration.schedule, integration.schedule_time
    if kind == Schedule.MANUAL:
        return Description(
            "Manual only: no automatic syncs.", "Bare manuelt: ingen automatisk synkronisering."
        )
    expression = cron_for(integration)
    if expression is None:
        return None
    if kind == Schedule.CUSTOM:
        return Description(_cron_words(expression, "en_US"), _cron_words(expression, "nb_NO"))
    hhmm = f"{at:%H:%M}"
    if kind == Schedule.DAILY:
        return Description(f"Every day at {hhmm}.", f"Hver dag kl. {hhmm}.")
    if kind == Schedule.WEEKLY:
        assert integration.schedule_weekday is not None  # cron_for gave an expression
        day = integration.schedule_weekday - 1
        return Description(
            f"Every {WEEKDAYS_EN[day]} at {hhmm}.", f"Hver {WEEKDAYS_NB[day]} kl. {hhmm}."
        )
    assert integration.schedule_day is not None  # cron_for gave an expression
    day = integration.schedule_day
    if day <= 28:
        return Description(
            f"On day {day} of every month at {hhmm}.", f"Den {day}. hver måned kl. {hhmm}."
        )
    return Description(
        f"On day {day} of every month at {hhmm}; in shorter months on the last day.",
        f"Den {day}. hver måned kl. {hhmm}; i kortere måneder på den siste dagen.",
    )


def _cron_words(expression: str, locale: str) -> str:
    options = Options()
    options.locale_code = locale
    options.use_24hour_time_format = True
    text = ExpressionDescriptor(expression, options).get_description()
    if locale == "nb_NO":
        text = _norwegian(text)
    return text.rstrip(".") + "."


def _norwegian(text: str) -> str:
    """cron-descriptor's nb_NO catalog leaves day and month names in English (from
    `calendar`) and has a few slips; put them right."""
    names = dict(zip(calendar.day_name, WEEKDAYS_NB, strict=True))
    names |= dict(zip(calendar.month_name[1:], MONTHS_NB, strict=True))
    pattern = r"\b(" + "|".join(map(re.escape, names)) + r")\b"
    text = re.sub(pattern, lambda match: names[match.group(1)], text)
    text = re.sub(r"^På (\d)", r"Kl. \1", text)  # "At 02:00" is "Kl. 02:00", not "På 02:00"
    text = text.replace("måned]", "måned")
    # "hvert 15 minutt" → "hvert 15. minutt": an interval is an ordinal in Norwegian.
    return re.sub(
        r"\b([Hh]vert?) (\d+) (sekund|minutt|time|dag|ukedag|måned|år)\b", r"\1 \2. \3", text
    )


# --- the next runs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NextRun:
    moment: datetime  # aware, in the organization's time zone
    note: str = ""  # why it is not at the scheduled wall-clock time, if it is not

    # A run reads with its weekday and a 24-hour time in the organization's zone, which no
    # named Django format combines; each language words it in its own date format.
    @property
    def when(self) -> str:
        """In a list: "Thursday 5 June 2025, 02:00 CEST"."""
        return format_date(
            self.moment, pgettext("date format of a scheduled sync", r"l j F Y, H:i T")
        )

    @property
    def when_in_sentence(self) -> str:
        """In a sentence: "Thursday 5 June 2025 at 02:00 CEST"."""
        return format_date(
            self.moment,
            pgettext("date format of a scheduled sync in a sentence", r"l j F Y \a\t H:i T"),
        )


def next_runs(
    integration: Integration, count: int = 5, now: datetime | None = None
) -> list[NextRun]:
    """The next `count` moments beat will run a sync, in the organization's time zone.

    This mirrors Celery beat's crontab rather than cronsim's own time-zone handling:
    each run is the scheduled wall-clock time read in the zone (a nonexistent time
    with the offset before the change, an ambiguous one at its first occurrence), and
    the next is found after the wall-clock time of the previous run. Monthly on the
    29th-31st keeps only the days `Integration.is_schedule_day` lets run.
    """
    expression = cron_for(integration)
    if expression is None:
        return []
    zone = zoneinfo.ZoneInfo(integration.organization.time_zone)
    now = (now or timezone.now()).astimezone(zone)
    wall = now.replace(tzinfo=None)
    try:
        candidates = CronSim(expression, wall)  # naive: wall-clock times, no DST fix-ups
        runs: list[NextRun] = []
        # Monthly on the 31st skips three of every four candidates; a bound keeps a
        # rare custom expression from looping for long.
        for _ in range(count * 40):
            if len(runs) == count:
                break
            scheduled = next(candidates)
            moment = scheduled.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)
            if moment <= now or not integration.is_schedule_day(moment):
                continue
            runs.append(NextRun(moment, _dst_note(scheduled, moment, zone)))
            if moment.replace(tzinfo=None) != scheduled:
                # Beat looks for the next run after the wall-clock time it ran at.
                candidates = CronSim(expression, moment.replace(tzinfo=None))
    except StopIteration:  # cronsim gives up after 50 years without a match
        pass
    return runs


# A worker's clock may be a little behind beat's: a message beat sent at 02:00:00 can
# arrive at 01:59:59 by the worker's clock and must still count as the 02:00 firing.
# Far below cron's one-minute resolution, so it never reaches the next firing.
CLOCK_SLACK = timedelta(seconds=5)


def last_firing(integration: Integration, now: datetime | None = None) -> datetime | None:
    """When beat last fired the organization's schedule, at or before `now` (aware, UTC);
    None without a schedule. Read as beat reads it, like `next_runs`: the wall-clock time
    in the organization's zone, a nonexistent one with the offset from before the change."""
    expression = cron_for(integration)
    if expression is None:
        return None
    zone = zoneinfo.ZoneInfo(integration.organization.time_zone)
    wall = ((now or timezone.now()) + CLOCK_SLACK).astimezone(zone).replace(tzinfo=None)
    try:
        scheduled = next(CronSim(expression, wall, reverse=True))  # strictly before `wall`
    except StopIteration:
        return None
    return scheduled.replace(tzinfo=zone).astimezone(UTC)


def _dst_note(scheduled: datetime, moment: datetime, zone: zoneinfo.ZoneInfo) -> str:
    if moment.replace(tzinfo=None) != scheduled:
        return _(
            "%(scheduled)s does not exist that night (clocks go forward), so it runs at %(actual)s."
        ) % {"scheduled": f"{scheduled:%H:%M}", "actual": f"{moment:%H:%M}"}
    if scheduled.replace(tzinfo=zone, fold=1).utcoffset() != moment.utcoffset():
        return _("Clocks go back that night: it runs once, at the first %(scheduled)s.") % {
            "scheduled": f"{scheduled:%H:%M}"
        }
    return ""


# --- the beat task ----------------------------------------------------------------------------


def task_name(integration: Integration) -> str:
    return f"sync-schedule-{integration.organization_id}"


def sync_periodic_task(integration: Integration) -> PeriodicTask | None:
    """Create, update or delete the organization's beat task to match its schedule.

    The task stays enabled while the connector is disabled: `scheduled_sync` checks
    `integration.enabled` itself, so turning the connector on needs nothing here.
    Returns the PeriodicTask, or None when there is none (Manual only).
    """
    name = task_name(integration)
    expression = cron_for(integration)
    if expression is None:
        PeriodicTask.objects.filter(name=name).delete()
        return None
    minute, hour, day, month, weekday = expression.split()
    with transaction.atomic():
        crontab_schedule, _ = CrontabSchedule.objects.get_or_create(
            minute=minute,
            hour=hour,
            day_of_month=day,
            month_of_year=month,
            day_of_week=weekday,
            timezone=zoneinfo.ZoneInfo(integration.organization.time_zone),
        )
        task = PeriodicTask.objects.filter(name=name).first()
        if task is None:
            task = PeriodicTask(name=name)
        elif task.crontab_id != crontab_schedule.pk:
            # Beat measures from the last run; after a change that could make the new
            # schedule look overdue and fire at once. Count from now instead.
            task.last_run_at = timezone.now()
        task.task = TASK
        task.args = f"[{integration.organization_id}]"
        task.crontab = crontab_schedule
        task.interval = task.solar = task.clocked = None
        task.enabled = True
        task.one_off = False
        task.description = f"Scheduled sync of {integration.organization}"
        task.save()
    return task


def weekday_choices() -> list[tuple[int, str]]:
    # Django's own day names (0 = Monday), translated lazily into the reader's language.
    return [(number, WEEKDAYS[number - 1]) for number in range(1, 8)]
