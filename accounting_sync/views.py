from __future__ import annotations

from datetime import timedelta
from functools import partial

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounting_sync.models import FinancialRecord, SyncRun
from accounting_sync.orchestrator import RunAlreadyGoing, start_run
from accounting_sync.tasks import run_sync
from audit.models import AdminAction
from integrations.access import organization_for
from integrations.models import Integration

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
def organization_home(request: HttpRequest, slug: str) -> HttpResponse:
    organization = organization_for(request.user, slug)
    counts = organization.records.aggregate(**_state_counts())
    page = Paginator(organization.records.all(), 50).get_page(request.GET.get("page"))
    return render(
        request,
        "accounting_sync/organization_home.html",
        {
            "organization": organization,
            "counts": [(State(state).label, counts[state]) for state in State.values],
            "page": page,
        },
    )


@login_required
@require_POST
def trigger_sync(request: HttpRequest, slug: str) -> HttpResponse:
    """Trigger Sync Now (S3): answers at once; a worker does the sending."""
    organization = organization_for(request.user, slug, write=True)
    _start(request, organization, SyncRun.Trigger.MANUAL)
    return redirect("organization_home", slug=organization.slug)


@login_required
@require_POST
def retry_records(request: HttpRequest, slug: str) -> HttpResponse:
    """Retry Selected (S6.2) or Retry All Failed (S6.3); ahead of any backoff (S6.6)."""
    organization = organization_for(request.user, slug, write=True)
    failed = organization.records.filter(state=State.FAILED)
    if request.POST.get("all"):
        ids = list(failed.values_list("pk", flat=True))
    else:
        wanted = [int(pk) for pk in request.POST.getlist("record") if pk.isdigit()]
        ids = list(failed.filter(pk__in=wanted).values_list("pk", flat=True))
    if not ids:
        messages.error(request, "Choose at least one failed record to retry.")
    else:
        _start(request, organization, SyncRun.Trigger.RETRY, record_ids=ids)
    return redirect("organization_home", slug=organization.slug)


def _start(request: HttpRequest, organization, trigger: str, record_ids=None) -> None:
    integration = Integration.objects.filter(organization=organization).first()
    if integration is None or not integration.enabled:
        messages.error(request, "The connector is not enabled, so nothing can be sent.")
        return
    try:
        run = start_run(organization, trigger, user=request.user, record_ids=record_ids)
    except RunAlreadyGoing:
        messages.warning(request, "A sync is already running for this organization.")
        return
    transaction.on_commit(partial(run_sync.delay, run.pk))
    AdminAction.record(
        request.user,
        organization,
        AdminAction.Kind.SYNC_TRIGGERED,
        run=run.pk,
        trigger=trigger,
        records=len(record_ids or []),
    )
    messages.success(request, "The sync has started.")
