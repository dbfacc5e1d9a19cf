"""The global overview (S4.2, S5): every organization on one page, for global admins."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounting_sync.models import FinancialRecord, WorkerHeartbeat
from integrations.access import organizations_for, require_global_admin

State = FinancialRecord.State
# Beat asks every worker to check in each minute; past this, say none is running.
WORKER_SILENCE = timedelta(minutes=5)


def _state_counts(path: str = "") -> dict[str, Count]:
    """One Count per record state, for aggregate() on records or annotate() through `path`."""
    return {
        state: Count(f"{path}pk", filter=Q(**{f"{path}state": state})) for state in State.values
    }


@login_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    """Every organization on one page, for global admins. One query however many there are."""
    require_global_admin(request.user)
    organizations = organizations_for(request.user).annotate(
        **_state_counts("records__"),
        last_received=Max("records__received_at"),
    )
    heartbeat = WorkerHeartbeat.objects.first()
    worker_silent = heartbeat is None or timezone.now() - heartbeat.seen_at > WORKER_SILENCE
    return render(
        request,
        "accounting_sync/overview.html",
        {"organizations": organizations, "heartbeat": heartbeat, "worker_silent": worker_silent},
    )
