"""What an organization's status dashboard shows (S3, S4.1, S4.3-S4.6), read in a few queries.

The view renders it whole, and its live part re-renders the same partial when the
organization's `live_version` has moved on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count
from django.utils import timezone

from accounting_sync import outcomes
from accounting_sync.health import Facts, Health, assess, facts, next_change, with_facts
from accounting_sync.models import FinancialRecord, SyncRun
from core import live
from integrations.models import CategoryLabels, CategoryMapping, Integration, SetupSteps
from integrations.schedule import NextRun, next_runs
from organizations.models import Organization

RECENT_RUNS = 5


@dataclass(frozen=True)
class Dashboard:
    organization: Organization
    integration: Integration | None
    facts: Facts
    health: Health
    recent_runs: list[SyncRun]
    running: SyncRun | None
    next_run: NextRun | None
    to_send: int  # what Trigger Sync Now would send: the number in its dialog (S3.1)
    awaiting: int = 0  # sent, but the ERP's import may still refuse them (Xledger)
    setup: SetupSteps | None = None  # the checklist; None once everything is done
    # Records held back until their category is mapped: (category, how many), most first.
    waiting_for_mapping: tuple[tuple[str, int], ...] = ()
    changes_at: datetime | None = None  # when health next changes with the clock alone
    # The organization's names for its categories: the page shows them for the slugs.
    category_labels: CategoryLabels = field(default_factory=CategoryLabels)

    @classmethod
    def build(cls, organization: Organization, now: datetime | None = None) -> Dashboard:
        now = now or timezone.now()
        annotated = with_facts(Organization.objects.filter(pk=organization.pk)).get()
        integration = getattr(annotated, "integration", None)
        known = facts(annotated, now)
        runs = list(
            SyncRun.objects.filter(organization=organization).select_related("triggered_by")[
                :RECENT_RUNS
            ]
        )
        running = next((run for run in runs if run.is_running), None)
        to_send = 0
        if known.enabled and integration is not None:
            to_send = FinancialRecord.objects.sendable(annotated, integration, now).count()
        upcoming = (
            next_runs(integration, 1, now=now) if known.enabled and integration is not None else []
        )
        awaiting = 0
        if integration is not None and integration.connector == Integration.Connector.XLEDGER:
            awaiting = FinancialRecord.objects.filter(organization=organization).awaiting().count()
        next_run = upcoming[0] if upcoming else None
        steps = integration.setup_steps() if integration else SetupSteps.not_started()
        return cls(
            organization=annotated,
            integration=integration,
            facts=known,
            health=assess(known, now),
            recent_runs=runs,
            running=running,
            next_run=next_run,
            to_send=to_send,
            awaiting=awaiting,
            setup=None if steps.ready else steps,
            waiting_for_mapping=cls._waiting_for_mapping(annotated, known),
            changes_at=next_change(known, now, next_run.moment if next_run else None),
            category_labels=CategoryLabels.of(organization),
        )

    @staticmethod
    def _waiting_for_mapping(organization: Organization, known: Facts) -> tuple:
        """Counted from the records themselves (pending or skipped, no mapping)."""
        if not known.unmapped_waiting:
            return ()
        mapped = CategoryMapping.objects.filter(integration__organization=organization)
        rows = (
            FinancialRecord.objects.filter(
                organization=organization,
                state__in=[FinancialRecord.State.PENDING, FinancialRecord.State.SKIPPED],
            )
            .exclude(category__in=mapped.values("category"))
            .values("category")
            .annotate(count=Count("pk"))
            .order_by("-count", "category")
        )
        return tuple((row["category"], row["count"]) for row in rows)

    @property
    def version(self) -> str:
        """What the live part sends back: it goes out of date when the clock changes health."""
        return live.versioned(self.organization.live_version, self.changes_at)

    @property
    def last_finished(self) -> SyncRun | None:
        return next((run for run in self.recent_runs if not run.is_running), None)

    @property
    def last_outcome(self) -> str:
        last = self.last_finished
        return self.outcome(last) if last else ""

    def outcome(self, run: SyncRun) -> str:
        """A finished run's outcome in one sentence, for the page and for screen readers."""
        return outcomes.announcement(run)

    def finished_since(self, run_id: str | None) -> SyncRun | None:
        """The run a page was watching, if it has ended since: its outcome is announced."""
        if not run_id or not run_id.isdigit():
            return None
        return next(
            (run for run in self.recent_runs if run.pk == int(run_id) and not run.is_running),
            None,
        )
