"""Failed records (S6): each failed record, its error and attempts; Retry Selected / All.

The list is a live part (docs/architecture.md, "Live pages"): it polls `failed_records_live`, which
renders the same partial as the page, answers 204 while the organization's
`live_version` has not moved, and stops the polling once no sync is going and no failed
record is left. Retrying goes through `triggers.request_run`, the one way a person starts a
sync, so the rule "one run at a time" (S3.4) and the admin trail are the dashboard's.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from accounting_sync import outcomes
from accounting_sync.models import FinancialRecord, SyncLog, SyncRun
from accounting_sync.triggers import SyncRefused, request_run
from core import live
from integrations.models import CategoryLabels, Integration
from organizations.access import organization_for
from organizations.models import Organization

PAGE_SIZE = 50
TEMPLATE = "accounting_sync/failed.html"
State = FinancialRecord.State


@dataclass(frozen=True)
class Row:
    """One failed record with its attempts, oldest first (S8.4's chain, on this page)."""

    record: FinancialRecord
    attempts: list[SyncLog]

    @property
    def retrying(self) -> bool:
        return self.record.state == State.SENDING

    @property
    def last_attempt(self) -> SyncLog | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def retries(self) -> int:
        """Attempts after the first: one attempt is no retry (retry_count counts attempts)."""
        return max(len(self.attempts) - 1, 0)


@dataclass(frozen=True)
class FailedRecords:
    """What the page shows, read in a fixed number of queries however long the list is."""

    organization: Organization
    page: Page
    rows: list[Row]
    running: SyncRun | None
    enabled: bool
    now: datetime
    category_labels: CategoryLabels  # the organization's names for its categories

    @classmethod
    def build(cls, organization: Organization, page_number: str | None = None) -> FailedRecords:
        queue = FinancialRecord.objects.filter(organization=organization).failed_queue()
        page = Paginator(queue, PAGE_SIZE).get_page(page_number)
        records = list(page.object_list)
        return cls(
            organization=organization,
            page=page,
            rows=_rows(records),
            running=(
                SyncRun.objects.filter(organization=organization, status=SyncRun.Status.RUNNING)
                .select_related("triggered_by")
                .first()
            ),
            enabled=Integration.objects.filter(organization=organization, enabled=True).exists(),
            now=timezone.now(),
            category_labels=CategoryLabels.of(organization) if records else CategoryLabels(),
        )

    @property
    def count(self) -> int:
        return self.page.paginator.count

    @property
    def watching(self) -> bool:
        """Something can still change here: a sync is going or records wait for a retry."""
        return self.running is not None or self.count > 0

    @property
    def can_retry(self) -> bool:
        return self.enabled and self.running is None and self.count > 0

    def poll_url(self) -> str:
        """The fragment's URL, with the version shown and the run being watched."""
        query = {"v": self.organization.live_version}
        if self.page.number > 1:
            query["page"] = self.page.number
        if self.running is not None:
            query["run"] = self.running.pk
        url = reverse("failed_records_live", kwargs={"slug": self.organization.slug})
        return f"{url}?{urlencode(query)}"

    def announcement(self, watched: str | None) -> str:
        """What a screen reader hears after a poll brought news (the #announcer).

        `watched` is the run the list showed going when it last rendered: once that run
        has ended, its outcome is said. A run that started since is said too.
        """
        watched_id = int(watched) if watched and watched.isdigit() else None
        if watched_id is None:
            if self.running is None:
                return ""
            return _("A sync is running; records can be retried again when it has finished.")
        if self.running is not None and self.running.pk == watched_id:
            return ""
        finished = (
            SyncRun.objects.filter(organization=self.organization, pk=watched_id)
            .exclude(status=SyncRun.Status.RUNNING)
            .first()
        )
        return outcomes.retry_announcement(finished) if finished is not None else ""


def _rows(records: list[FinancialRecord]) -> list[Row]:
    """Each record with its attempts, from one query for the whole page (not one per row)."""
    attempts: dict[int, list[SyncLog]] = defaultdict(list)
    # The payload and response can be large and are shown on the audit entry, not here.
    for attempt in (
        SyncLog.objects.filter(record__in=[record.pk for record in records])
        .defer("payload", "response_body", "row_hash", "prev_hash")
        .order_by("record_id", "attempt_number", "id")
    ):
        attempts[attempt.record_id].append(attempt)
    return [Row(record, attempts[record.pk]) for record in records]


def chosen_records(organization: Organization, form: QueryDict) -> list[int]:
    """The failed records of this organization that the form names (S6.2), or all (S6.3).

    Ids of other organizations' records, of records no longer failed, or that are not
    numbers are dropped: the run re-sends exactly what is failed here and was chosen.
    """
    failed = FinancialRecord.objects.filter(organization=organization).failed()
    if not form.get("all"):
        wanted = [int(pk) for pk in form.getlist("record") if pk.isdigit()]
        failed = failed.filter(pk__in=wanted)
    return list(failed.order_by("pk").values_list("pk", flat=True))


def _context(
    organization: Organization, can_write: bool, failed: FailedRecords, **more: object
) -> dict:
    return {
        "organization": organization,
        "failed": failed,
        "can_write": can_write,
        **more,
    }


@login_required
@require_GET
def failed_records(request: HttpRequest, slug: str) -> HttpResponse:
    organization, can_write = organization_for(request.user, slug)
    failed = FailedRecords.build(organization, request.GET.get("page"))
    return render(request, TEMPLATE, _context(organization, can_write, failed))


@login_required
@require_GET
@live.poll
def failed_records_live(request: HttpRequest, slug: str) -> HttpResponse:
    """The list's live part: 204 with no further query while nothing has changed."""
    organization, can_write = organization_for(request.user, slug)
    if live.unchanged(request, organization.live_version):
        return live.no_change()
    failed = FailedRecords.build(organization, request.GET.get("page"))
    announce = failed.announcement(request.GET.get("run"))
    context = _context(organization, can_write, failed, announce=announce)
    response = render(request, f"{TEMPLATE}#live", context)
    if not failed.watching:
        response.status_code = live.STOP_POLLING
    return response


@login_required
@require_POST
def retry_records(request: live.HtmxHttpRequest, slug: str) -> HttpResponse:
    """Retry Selected (S6.2) or Retry All Failed (S6.3), ahead of any backoff (S6.6).

    Without JavaScript it redirects back to the list with a message; from htmx it answers
    with the list's live part, now showing the retry going.
    """
    organization = organization_for(request.user, slug, write=True).organization
    ids = chosen_records(organization, request.POST)
    level = messages.WARNING
    if not ids:
        said = _("Choose at least one failed record to retry.")
    else:
        try:
            request_run(organization, SyncRun.Trigger.RETRY, user=request.user, record_ids=ids)
        except SyncRefused as refusal:
            said = str(refusal)
        else:
            level = messages.SUCCESS
            said = ngettext(
                "Retrying %(count)d record.", "Retrying %(count)d records.", len(ids)
            ) % {"count": len(ids)}
    page = request.POST.get("page", "")
    if not request.htmx:
        messages.add_message(request, level, said)
        url = reverse("failed_records", kwargs={"slug": organization.slug})
        return redirect(f"{url}?page={page}" if page.isdigit() else url)
    # The run was started after access read the version: show the one that includes it.
    organization.refresh_from_db(fields=["live_version"])
    failed = FailedRecords.build(organization, page)
    notice = "" if level == messages.SUCCESS else said
    context = _context(organization, True, failed, announce=said, notice=notice)
    return render(request, f"{TEMPLATE}#live", context)
