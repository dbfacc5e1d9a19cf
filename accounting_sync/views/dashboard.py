"""What an organization's status dashboard shows (S3, S4.1, S4.3-S4.6), read in a few queries.

The view renders it whole, and its live part re-renders the same partial when the
organization's `live_version` has moved on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from accounting_sync import outcomes
from accounting_sync.health import Facts, Health, assess, facts, with_facts
from accounting_sync.models import FinancialRecord, SyncRun
from integrations.models import Integration
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
        return cls(
            organization=annotated,
            integration=integration,
            facts=known,
            health=assess(known, now),
            recent_runs=runs,
            running=running,
            next_run=upcoming[0] if upcoming else None,
            to_send=to_send,
            awaiting=awaiting,
        )

    @property
    def version(self) -> int:
        return self.organization.live_version

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
