"""The sync history page (S9.5, S3.6): every run of one organization, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from accounting_sync.models import SyncRun
from integrations.models import CategoryLabels
from organizations.access import organization_for

PAGE_SIZE = 50
Status = SyncRun.Status

# Status is never told by colour alone: an icon (hidden from screen readers, which
# read the word beside it) and the word.
STATUS_LOOK: dict[str, tuple[str, str]] = {
    Status.RUNNING: ("⟳", "state-pending"),
    Status.SUCCEEDED: ("✓", "state-synced"),
    Status.PARTIAL: ("⚠", "state-skipped"),
    Status.FAILED: ("✗", "state-failed"),
}


@dataclass(frozen=True)
class Row:
    run: SyncRun
    duration: str
    icon: str
    css: str
    skip_reasons: list[str]


def duration_text(run: SyncRun) -> str:
    if run.finished_at is None:
        return _("still running") if run.is_running else ""
    seconds = max(0, round((run.finished_at - run.started_at) / timedelta(seconds=1)))
    if seconds < 60:
        return _("%(seconds)d s") % {"seconds": seconds}
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return _("%(minutes)d min %(seconds)d s") % {"minutes": minutes, "seconds": seconds}
    hours, minutes = divmod(minutes, 60)
    return _("%(hours)d h %(minutes)d min") % {"hours": hours, "minutes": minutes}


def row(run: SyncRun, labels: CategoryLabels | None = None) -> Row:
    icon, css = STATUS_LOOK.get(run.status, ("•", "state-pending"))
    return Row(run, duration_text(run), icon, css, run.skip_texts(labels))


@login_required
@require_GET
def sync_history(request: HttpRequest, slug: str) -> HttpResponse:
    organization = organization_for(request.user, slug).organization
    runs = (
        SyncRun.objects.filter(organization=organization)
        .select_related("triggered_by")
        .order_by("-started_at", "-id")
    )
    page = Paginator(runs, PAGE_SIZE).get_page(request.GET.get("page"))
    labels = CategoryLabels.of(organization)  # once for the page, not once per run
    return render(
        request,
        "accounting_sync/history.html",
        {
            "organization": organization,
            "page": page,
            "rows": [row(run, labels) for run in page.object_list],
        },
    )
