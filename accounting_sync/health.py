"""An organization's sync health (S4.3-S4.5, S5.2-S5.3), from a few plain facts.

The dashboard reads the facts for one organization and the overview for all of them in
a constant number of queries; both call `assess`, so a colour means the same on both.
Health is never told by colour alone: each level has a word and an icon.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import lru_cache

from django.db.models import (
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _

# S4.5: a sync was expected but none has happened for this long.
STALE_AFTER = timedelta(hours=24)
# Records that arrived this recently are still on their way (sync after approval).
ON_THEIR_WAY = timedelta(minutes=15)


@dataclass(frozen=True)
class Level:
    key: str  # green, amber, red, grey: the CSS class and what tests compare
    word: str
    icon: str  # hidden from screen readers, which read the word

    def __str__(self) -> str:
        return str(self.word)


GREEN = Level("green", _("Healthy"), "✓")
AMBER = Level("amber", _("Errors"), "⚠")
RED = Level("red", _("Overdue"), "✗")
GREY = Level("grey", _("Off"), "○")
LEVELS = {level.key: level for level in (GREEN, AMBER, RED, GREY)}
# Worst first: the overview sorts by this.
SEVERITY = {"red": 0, "amber": 1, "green": 2, "grey": 3}


@dataclass(frozen=True)
class Facts:
    """What health is judged on; every field is one column the overview can annotate."""

    configured: bool  # an integration exists and its connection test passed once
    enabled: bool
    pending: int
    failed: int
    oldest_pending_at: datetime | None  # when the longest-waiting pending record arrived
    last_sync_at: datetime | None  # the end of the last run that sent without failing whole
    last_run_failures: bool  # the last finished run had failed records, or failed whole
    schedule_came_due: bool  # the schedule said "sync now" in the last 24 hours


@dataclass(frozen=True)
class Health:
    level: Level
    reason: str  # one sentence a person can act on
    stale: bool  # enabled but no sync for more than 24 hours (S5.3)


def is_stale(facts: Facts, now: datetime) -> bool:
    """S5.3: an enabled connector that has not synced for more than 24 hours."""
    if not facts.enabled:
        return False
    return facts.last_sync_at is None or now - facts.last_sync_at > STALE_AFTER


def sync_expected(facts: Facts, now: datetime) -> bool:
    """A sync should have happened: records have waited, or the schedule came due."""
    waiting = facts.oldest_pending_at is not None and now - facts.oldest_pending_at > ON_THEIR_WAY
    return waiting or facts.schedule_came_due


def schedule_came_due(integration, now: datetime) -> bool:
    """Whether beat should have started a sync in the last 24 hours (no query).

    Answered to the minute, which is all beat's cron resolves.
    """
    return _schedule_came_due(
        integration.schedule,
        integration.schedule_time,
        integration.schedule_weekday,
        integration.schedule_day,
        integration.schedule_cron,
        integration.organization.time_zone,
        now.replace(second=0, microsecond=0),
    )


# Most organizations share a handful of schedules: the overview asks the same question
# hundreds of times a minute, and a cron calculation costs about 20 µs each time. The
# arguments are everything the answer depends on (the minute included, so an answer is
# never reused once the clock has moved on); the bound keeps a long-running process small.
@lru_cache(maxsize=4096)
def _schedule_came_due(
    schedule: str,
    schedule_time: time | None,
    schedule_weekday: int | None,
    schedule_day: int | None,
    schedule_cron: str,
    time_zone: str,
    minute: datetime,
) -> bool:
    from integrations.models import Integration, Organization
    from integrations.schedule import next_runs

    # next_runs reads an integration: an unsaved one holding only what it reads (the
    # arguments above), so that the cache's key is exactly what the answer depends on.
    integration = Integration(
        schedule=schedule,
        schedule_time=schedule_time,
        schedule_weekday=schedule_weekday,
        schedule_day=schedule_day,
        schedule_cron=schedule_cron,
        organization=Organization(time_zone=time_zone),
    )
    upcoming = next_runs(integration, 1, now=minute - STALE_AFTER)
    return bool(upcoming) and upcoming[0].moment <= minute


def assess(facts: Facts, now: datetime) -> Health:
    stale = is_stale(facts, now)
    if not facts.configured:
        return Health(GREY, str(_("The accounting system is not set up yet.")), False)
    if not facts.enabled:
        return Health(GREY, str(_("The connector is turned off: nothing is sent.")), False)
    if stale and sync_expected(facts, now):
        return Health(
            RED,
            str(_("No sync has happened in the last 24 hours although one was expected.")),
            stale,
        )
    if facts.failed or facts.last_run_failures:
        return Health(AMBER, str(_("Records failed in the last sync.")), stale)
    return Health(GREEN, str(_("The last sync completed without errors.")), stale)


def _per_organization(queryset: QuerySet, aggregate, output=None) -> Subquery:
    """One aggregate of an organization's rows as a correlated subquery (no join fan-out)."""
    grouped = queryset.filter(organization=OuterRef("pk")).order_by().values("organization")
    return Subquery(grouped.annotate(value=aggregate).values("value")[:1], output_field=output)


def with_facts(organizations: QuerySet) -> QuerySet:
    """Annotate each organization with what `facts` needs: one query for any number."""
    from accounting_sync.models import FinancialRecord, SyncRun

    records = FinancialRecord.objects.all()
    pending = records.filter(state=FinancialRecord.State.PENDING)
    finished = SyncRun.objects.filter(organization=OuterRef("pk"), finished_at__isnull=False)
    last_run = finished.order_by("-finished_at", "-id")
    counted = IntegerField()
    return organizations.select_related("integration").annotate(
        pending_count=Coalesce(_per_organization(pending, Count("pk"), counted), Value(0)),
        failed_count=Coalesce(
            _per_organization(records.filter(state="failed"), Count("pk"), counted), Value(0)
        ),
        oldest_pending_at=_per_organization(pending, Min("received_at")),
        last_sync_at=_per_organization(
            SyncRun.objects.exclude(status__in=["running", "failed"]), Max("finished_at")
        ),
        last_run_failures=Subquery(
            last_run.annotate(
                bad=ExpressionWrapper(
                    Q(status="failed") | Q(failed__gt=0), output_field=BooleanField()
                )
            ).values("bad")[:1]
        ),
        run_going=Exists(SyncRun.objects.filter(organization=OuterRef("pk"), status="running")),
    )


def facts(organization, now: datetime) -> Facts:
    """The facts of an organization annotated by `with_facts`."""
    integration = getattr(organization, "integration", None)
    configured = integration is not None and integration.connection_verified_at is not None
    return Facts(
        configured=configured,
        enabled=configured and integration.enabled,
        pending=organization.pending_count,
        failed=organization.failed_count,
        oldest_pending_at=organization.oldest_pending_at,
        last_sync_at=organization.last_sync_at,
        last_run_failures=bool(organization.last_run_failures),
        schedule_came_due=configured and schedule_came_due(integration, now),
    )
