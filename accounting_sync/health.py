"""An organization's sync health (S4.3-S4.5, S5.2-S5.3), from a few plain facts.

The dashboard reads the facts for one organization and the overview for all of them in
a constant number of queries; both call `assess`, so a colour means the same on both.
Health is never told by colour alone: each level has a word and an icon.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

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
from django.utils.translation import ngettext

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

# S4.5: a sync was expected but none has happened for this long.
STALE_AFTER = timedelta(hours=24)
# Records that arrived this recently are still on their way (sync after approval).
ON_THEIR_WAY = timedelta(minutes=15)


@dataclass(frozen=True)
class Level:
    key: str  # green, amber, red, grey: the CSS class and what tests compare
    word: StrOrPromise
    icon: str  # hidden from screen readers, which read the word

    def __str__(self) -> str:
        return str(self.word)


GREEN = Level("green", _("Healthy"), "✓")
AMBER = Level("amber", _("Errors"), "⚠")
RED = Level("red", _("Overdue"), "✗")
GREY = Level("grey", _("Off"), "○")
# Enabled, but records cannot be sent until a person finishes the setup: a payable
# account, a mapping, or a mapping for the categories records are waiting in (issue 11).
SETUP = Level("setup", _("Needs setup"), "!")
# Enabled and nothing wrong, but nothing proves it works: no record sent yet, or no sync
# for a day with nothing waiting. Green is kept for a connector seen to send.
IDLE = Level("idle", _("Idle"), "◌")
LEVELS = {level.key: level for level in (GREEN, AMBER, RED, GREY, SETUP, IDLE)}
# Worst first: the overview sorts by this.
SEVERITY = {"red": 0, "amber": 1, "setup": 2, "idle": 3, "green": 4, "grey": 5}


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
    # Setup the engine needs to send anything (issue 11); defaults keep old callers whole.
    payable_chosen: bool = True
    any_mapping: bool = True
    unmapped_waiting: int = 0  # pending or skipped records whose category has no mapping
    ever_sent: bool = True  # a record was sent at least once (synced or awaiting import)
    last_run_skipped_only: bool = False  # the last finished run sent none and skipped some
    # Integration.has_credentials: the settings page says "Credentials: saved" then, so an
    # untested connection is not called "not set up" (issue 11, item 6).
    credentials_saved: bool = False


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
    from integrations.models import Integration
    from integrations.schedule import next_runs
    from organizations.models import Organization

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


def needs_setup(facts: Facts) -> str | None:
    """Why records cannot be sent until a person finishes the setup, in words; or None."""
    if not facts.payable_chosen:
        return str(
            _("Choose the payable account on the mappings page: nothing is sent without one.")
        )
    if not facts.any_mapping:
        return str(
            _("Map the expense categories on the mappings page: nothing is sent until then.")
        )
    if facts.unmapped_waiting:
        return ngettext(
            "%(count)d record is waiting for a mapping of its category.",
            "%(count)d records are waiting for a mapping of their category.",
            facts.unmapped_waiting,
        ) % {"count": facts.unmapped_waiting}
    return None


def assess(facts: Facts, now: datetime) -> Health:
    stale = is_stale(facts, now)
    if not facts.configured and facts.credentials_saved:
        return Health(
            GREY, str(_("Credentials are saved; Test Connection has not passed yet.")), False
        )
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
    if reason := needs_setup(facts):
        return Health(SETUP, reason, stale)
    if facts.last_run_skipped_only:
        # What it skipped has been mapped since (or it would still wait, above): it goes
        # with the next sync, but nothing has shown yet that it will.
        return Health(IDLE, str(_("The last sync sent nothing: it skipped every record.")), stale)
    if not facts.ever_sent:
        return Health(IDLE, str(_("No record has been sent yet.")), stale)
    if stale:
        # S5.3 warns about it, so it is not called healthy (issue 11); not red either:
        # nothing was waiting and no schedule came due.
        return Health(
            IDLE,
            str(_("No sync for more than 24 hours, though nothing was waiting to be sent.")),
            stale,
        )
    return Health(GREEN, str(_("The last sync completed without errors.")), stale)


def next_change(facts: Facts, now: datetime, next_scheduled: datetime | None = None):
    """The next moment health may change with the clock alone, or None.

    Records still on their way turn overdue 15 minutes after they arrived; a connector
    turns stale 24 hours after its last sync; a schedule coming due may turn a stale one
    red. A live page carries this moment in its version, so its poll re-renders once it
    has passed although nothing in the database changed (`core.live`).
    """
    if not facts.configured or not facts.enabled:
        return None
    moments = [next_scheduled]
    if facts.oldest_pending_at is not None:
        moments.append(facts.oldest_pending_at + ON_THEIR_WAY)
    if facts.last_sync_at is not None:
        moments.append(facts.last_sync_at + STALE_AFTER)
    ahead = [moment for moment in moments if moment is not None and moment > now]
    return min(ahead, default=None)


def _per_organization(queryset: QuerySet, aggregate, output=None) -> Subquery:
    """One aggregate of an organization's rows as a correlated subquery (no join fan-out)."""
    grouped = queryset.filter(organization=OuterRef("pk")).order_by().values("organization")
    return Subquery(grouped.annotate(value=aggregate).values("value")[:1], output_field=output)


def with_facts(organizations: QuerySet) -> QuerySet:
    """Annotate each organization with what `facts` needs: one query for any number."""
    from accounting_sync.models import FinancialRecord, SyncRun
    from integrations.models import CategoryMapping, Integration

    State = FinancialRecord.State
    records = FinancialRecord.objects.all()
    pending = records.filter(state=State.PENDING)
    mapping_of_category = CategoryMapping.objects.filter(
        integration__organization_id=OuterRef("organization_id"), category=OuterRef("category")
    )
    unmapped = records.filter(state__in=[State.PENDING, State.SKIPPED]).exclude(
        Exists(mapping_of_category)
    )
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
        payable_chosen=Exists(
            Integration.objects.filter(organization_id=OuterRef("pk")).exclude(payable_account="")
        ),
        any_mapping=Exists(
            CategoryMapping.objects.filter(integration__organization_id=OuterRef("pk"))
        ),
        unmapped_waiting=Coalesce(_per_organization(unmapped, Count("pk"), counted), Value(0)),
        ever_sent=Exists(
            records.filter(organization=OuterRef("pk"), state__in=[State.SYNCED, State.AWAITING])
        ),
        last_run_skipped_only=Subquery(
            last_run.annotate(
                skipped_only=ExpressionWrapper(
                    Q(sent=0, skipped__gt=0), output_field=BooleanField()
                )
            ).values("skipped_only")[:1]
        ),
        # Integration.has_credentials, answered by the database: the ciphertext stays unread.
        credentials_saved=ExpressionWrapper(
            Q(integration__credentials_ciphertext__gt=""), output_field=BooleanField()
        ),
    )


def facts(organization, now: datetime) -> Facts:
    """The facts of an organization annotated by `with_facts`."""
    integration = getattr(organization, "integration", None)
    configured = integration is not None and integration.connection_verified_at is not None
    return Facts(
        configured=configured,
        enabled=configured and integration is not None and integration.enabled,
        pending=organization.pending_count,
        failed=organization.failed_count,
        oldest_pending_at=organization.oldest_pending_at,
        last_sync_at=organization.last_sync_at,
        last_run_failures=bool(organization.last_run_failures),
        schedule_came_due=configured and schedule_came_due(integration, now),
        payable_chosen=organization.payable_chosen,
        any_mapping=organization.any_mapping,
        unmapped_waiting=organization.unmapped_waiting,
        ever_sent=organization.ever_sent,
        last_run_skipped_only=bool(organization.last_run_skipped_only),
        credentials_saved=bool(getattr(organization, "credentials_saved", False)),
    )
