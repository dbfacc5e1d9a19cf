"""The reconciliation page of one organization (issue 15 items 3 and 5).

Auditors and admins run a reconciliation for a period of posting dates, see every one
kept (nightly ones too), drill into one (counts per class, each item with both sides),
and export it. Admins act on what it found through `reconciliation.actions`, each action
in the trail. A reading in progress is a live part (docs/architecture.md, "Live pages"):
the page polls `reconciliation_live` with the progress it shows and gets a 204 until the
worker has read more, then the result, once, with 286 to stop the polling.

The page reads a fixed number of queries however many items a reconciliation holds: the
latest readings, the integration, and one page of items (a count and the rows).
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Page, Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from core import live
from core.events import TrailKind, record_action
from integrations.models import Integration
from integrations.notes import joined, words
from organizations.access import organization_for
from organizations.models import Organization
from reconciliation import actions, engine, exports
from reconciliation.forms import ItemFilter, RunForm
from reconciliation.models import Item, Reconciliation

TEMPLATE = "reconciliation/page.html"
PAGE_SIZE = 50
LISTED = 10  # the latest readings listed; older ones stay kept and exportable
MAX_COMMENT = 2000
Status = Reconciliation.Status
Klass = Item.Klass

# Never told by colour alone: an icon (hidden from screen readers) beside the word.
STATUS_LOOK: dict[str, tuple[str, str]] = {
    Status.QUEUED: ("⟳", "state-pending"),
    Status.RUNNING: ("⟳", "state-pending"),
    Status.DONE: ("✓", "state-synced"),
    Status.FAILED: ("✗", "state-failed"),
}
CLASS_LOOK: dict[str, tuple[str, str]] = {
    Klass.MATCHED: ("✓", "state-synced"),
    Klass.NOT_POSTED: ("✓", "state-synced"),
    Klass.MISSING_THERE: ("✗", "state-failed"),
    Klass.THERE_NOT_HERE: ("⚠", "state-skipped"),
    Klass.DIFFERENT: ("≠", "state-failed"),
    Klass.UNEXPLAINED: ("?", "state-failed"),
    Klass.IN_FLIGHT: ("⟳", "state-pending"),
    Klass.NOT_SENT: ("•", "state-pending"),
}
FIELDS = (
    ("amount", gettext_lazy("Amount")),
    ("account", gettext_lazy("Account")),
    ("cost_center", gettext_lazy("Cost center")),
    ("posting_date", gettext_lazy("Posting date")),
)
# Where in the accounting system an entry was read (integrations.clients.base.EntrySource).
SOURCES = {
    "journal_line": gettext_lazy("Journal line, not posted yet"),
    "ledger_entry": gettext_lazy("Posted entry"),
    "import_item": gettext_lazy("Import item, not processed yet"),
}
# Why an action was refused (actions.NotAllowed.code), in the reader's language.
REFUSALS = {
    "not_missing": gettext_lazy(
        "Only a record missing in the accounting system can be sent again."
    ),
    "already_resolved": gettext_lazy("Someone has already resolved this item."),
    "record_moved_on": gettext_lazy(
        "The record has changed since this reconciliation (it is being sent, or is no "
        "longer marked as sent), so it was not sent again. Run a new reconciliation."
    ),
    "comment_required": gettext_lazy("Write why the difference is accepted."),
    "comment_too_long": gettext_lazy("The comment is too long: at most %(max)d characters."),
    "nothing_to_accept": gettext_lazy(
        "Only a difference, a missing record or an unexplained entry can be accepted."
    ),
    "no_such_item": gettext_lazy("There is no such item in this organization's reconciliations."),
}


def look(status: str) -> tuple[str, str]:
    return STATUS_LOOK.get(status, ("•", "state-pending"))


def today_of(organization: Organization) -> date:
    return timezone.localtime(timezone.now(), zoneinfo.ZoneInfo(organization.time_zone)).date()


def version_of(reconciliation: Reconciliation | None) -> str:
    """What the live part shows: the reading's status and progress."""
    if reconciliation is None:
        return "none"
    r = reconciliation
    return f"{r.pk}.{r.status}.{r.entries_read}.{r.pages_read}"


def why_not_run(integration: Integration | None) -> str:
    """Why no reconciliation can be run now, or "" (read before and checked again on POST)."""
    if integration is None:
        return _(
            "No accounting system is set up for this organization, so there is nothing to read."
        )
    if integration.connection_verified_at is None:
        return _(
            "The connection to the accounting system has not been tested, so it cannot be "
            "read. An admin tests it on the accounting system page."
        )
    if not integration.enabled:
        return _(
            "The connector is disabled, so the accounting system is not read. An admin "
            "enables it on the accounting system page."
        )
    return ""


def running_refusal(running: Reconciliation | None) -> str:
    if running is None:
        return _("A reconciliation is already running.")
    return _(
        "A reconciliation is already running (posting dates %(start)s to %(end)s). "
        "Wait for it to finish before starting another."
    ) % {"start": running.period_start.isoformat(), "end": running.period_end.isoformat()}


# --- one item as the table shows it -------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One compared field: our value, the ERP's, and whether they differ."""

    name: str
    label: str
    ours: str
    theirs: str
    differs: bool


@dataclass(frozen=True)
class Row:
    item: Item
    sides: list[Side]
    icon: str
    css: str

    @classmethod
    def of(cls, item: Item) -> Row:
        ours, theirs = item.ours or {}, item.theirs or {}
        differences = set(item.differences or [])
        sides = [
            Side(name, str(label), ours.get(name, ""), theirs.get(name, ""), name in differences)
            for name, label in FIELDS
        ]
        icon, css = CLASS_LOOK.get(item.klass, ("•", "state-pending"))
        return cls(item, sides, icon, css)

    @property
    def audit_query(self) -> str:
        """The audit log filtered to this record's attempts."""
        return urlencode({"reference": self.item.reference})

    @property
    def source(self) -> str:
        code = str((self.item.theirs or {}).get("source", ""))
        return str(SOURCES.get(code, code))

    @property
    def is_problem(self) -> bool:
        return self.item.klass in Klass.problems()

    @property
    def is_open(self) -> bool:
        return self.item.resolution == Item.Resolution.NONE

    @property
    def can_resend(self) -> bool:
        return (
            self.is_open
            and self.item.klass in actions.RESENDABLE
            and self.item.record_id is not None
        )

    @property
    def can_accept(self) -> bool:
        return self.is_open and self.item.klass in actions.ACCEPTABLE


@dataclass(frozen=True)
class Listed:
    """A reading in the list of the latest ones."""

    reconciliation: Reconciliation
    icon: str
    css: str
    counts: list[tuple[str, str, int]]  # (class code, its words, count), in Klass order


def class_counts(reconciliation: Reconciliation) -> list[tuple[str, str, int]]:
    counts = reconciliation.counts or {}
    return [(code, str(label), counts[code]) for code, label in Klass.choices if counts.get(code)]


def listed(reconciliation: Reconciliation) -> Listed:
    return Listed(reconciliation, *look(reconciliation.status), class_counts(reconciliation))


# --- the page ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReconciliationPage:
    """What the page shows, read in a fixed number of queries."""

    organization: Organization
    latest: list[Listed]
    selected: Reconciliation | None
    running: Reconciliation | None  # of the organization: the newest one, if not finished
    blocked: str  # why no reconciliation can be run with this integration, or ""
    filters: ItemFilter
    page: Page | None
    rows: list[Row]

    @classmethod
    def build(cls, organization: Organization, query: QueryDict) -> ReconciliationPage:
        kept = list(
            Reconciliation.objects.filter(organization=organization).select_related("requested_by")[
                :LISTED
            ]
        )
        # One at a time (a partial unique index), so a reading not finished is the newest.
        running = kept[0] if kept and not kept[0].is_finished else None
        selected = _selected(organization, kept, query.get("run"))
        integration = Integration.objects.filter(organization=organization).first()
        blocked = why_not_run(integration)
        filters = ItemFilter(query if query.get("klass") or query.get("q") else None)
        page, rows = None, []
        if selected is not None and selected.status == Status.DONE:
            wanted = filters.values()
            items = selected.items.select_related("resolved_by")
            if "klass" in wanted:
                items = items.filter(klass=wanted["klass"])
            if "q" in wanted:
                items = items.filter(reference__icontains=wanted["q"])
            page = Paginator(items, PAGE_SIZE).get_page(query.get("page"))
            rows = [Row.of(item) for item in page.object_list]
        return cls(
            organization, [listed(r) for r in kept], selected, running, blocked, filters, page, rows
        )

    @property
    def busy(self) -> str:
        """Why another reconciliation cannot start now: one is running."""
        return running_refusal(self.running) if self.running else ""

    @property
    def watching(self) -> bool:
        return self.selected is not None and not self.selected.is_finished

    @property
    def class_links(self) -> list[dict[str, Any]]:
        """Each class found, its count and the link that filters the items by it."""
        if self.selected is None:
            return []
        current = self.filters.values().get("klass")
        return [
            {
                "code": code,
                "label": label,
                "count": count,
                "url": "?" + urlencode({"run": str(self.selected.pk), "klass": code}),
                "current": code == current,
            }
            for code, label, count in class_counts(self.selected)
        ]

    @property
    def selected_look(self) -> tuple[str, str]:
        return look(self.selected.status) if self.selected else ("", "")

    @property
    def failure(self) -> str:
        """A failed reading's reason: our note worded now, then the ERP's own words."""
        if self.selected is None or self.selected.status != Status.FAILED:
            return ""
        return joined(words(self.selected.failure_note), self.selected.failure_words)

    @property
    def problems(self) -> int:
        return self.selected.problems if self.selected else 0

    @property
    def filter_query(self) -> str:
        """The run and the filters, for the pages' links and the actions' way back."""
        query: dict[str, str | int] = {"run": self.selected.pk} if self.selected else {}
        query.update(self.filters.values())
        return urlencode(query)

    def poll_url(self) -> str:
        assert self.selected is not None
        url = reverse("reconciliation_live", kwargs={"slug": self.organization.slug})
        return f"{url}?{urlencode({'run': str(self.selected.pk), 'v': version_of(self.selected)})}"


def _selected(
    organization: Organization, kept: list[Reconciliation], wanted: str | None
) -> Reconciliation | None:
    if not wanted:
        return kept[0] if kept else None
    if not wanted.isdigit():
        raise Http404(_("No such reconciliation."))
    for reconciliation in kept:
        if reconciliation.pk == int(wanted):
            return reconciliation
    found = (
        Reconciliation.objects.filter(organization=organization, pk=int(wanted))
        .select_related("requested_by")
        .first()
    )
    if found is None:
        raise Http404(_("No such reconciliation."))
    return found


def outcome(reconciliation: Reconciliation) -> str:
    """What a screen reader hears when the reading it watched has ended."""
    if reconciliation.status == Status.FAILED:
        return _("The reconciliation failed: %(reason)s") % {
            "reason": joined(words(reconciliation.failure_note), reconciliation.failure_words)
        }
    counts = reconciliation.counts or {}
    return _("Reconciliation finished: %(items)d items, %(problems)d to look at.") % {
        "items": sum(counts.values()),
        "problems": reconciliation.problems,
    }


def _context(
    request: HttpRequest, organization: Organization, can_write: bool, **more: Any
) -> dict[str, Any]:
    view = more.pop("view", None) or ReconciliationPage.build(organization, request.GET)
    return {
        "organization": organization,
        "can_write": can_write,
        "view": view,
        "run_form": more.pop("run_form", None) or RunForm(today=today_of(organization)),
        "max_comment": MAX_COMMENT,
        "fields": FIELDS,
        **more,
    }


@login_required
@require_GET
def reconciliation(request: HttpRequest, slug: str) -> HttpResponse:
    organization, can_write = organization_for(request.user, slug)
    return render(request, TEMPLATE, _context(request, organization, can_write))


@login_required
@require_GET
@live.poll
def reconciliation_live(request: HttpRequest, slug: str) -> HttpResponse:
    """The reading's live part: 204 while its progress has not moved; its result, once."""
    organization, can_write = organization_for(request.user, slug)
    wanted = request.GET.get("run", "")
    watched = (
        Reconciliation.objects.filter(organization=organization, pk=int(wanted)).first()
        if wanted.isdigit()
        else None
    )
    if watched is None:
        raise Http404(_("No such reconciliation."))
    if live.unchanged(request, version_of(watched)):
        return live.no_change()
    view = ReconciliationPage.build(organization, QueryDict(urlencode({"run": watched.pk})))
    announce = outcome(view.selected) if view.selected and view.selected.is_finished else ""
    context = _context(request, organization, can_write, view=view, announce=announce)
    response = render(request, f"{TEMPLATE}#live", context)
    if not view.watching:
        response.status_code = live.STOP_POLLING
    return response


@login_required
@require_POST
def reconciliation_run(request: HttpRequest, slug: str) -> HttpResponse:
    """Run one for a period: admins and auditors alike (it reads, and changes nothing that
    is audited; what it finds is corrected only through the engine's lookup)."""
    organization, can_write = organization_for(request.user, slug)
    form = RunForm(request.POST, today=today_of(organization))
    refusal = why_not_run(Integration.objects.filter(organization=organization).first())
    if form.is_valid() and not refusal:
        start, end = form.cleaned_data["start"], form.cleaned_data["end"]
        try:
            with transaction.atomic():
                queued = engine.request(organization, start, end, user=request.user)
                record_action(
                    request.user,
                    organization,
                    TrailKind.RECONCILIATION_REQUESTED,
                    reconciliation=queued.pk,
                    period=f"{start.isoformat()}..{end.isoformat()}",
                )
        except engine.AlreadyReconciling as busy:
            refusal = running_refusal(busy.running)
        else:
            messages.success(
                request,
                _("Reconciliation started for posting dates %(start)s to %(end)s.")
                % {"start": start.isoformat(), "end": end.isoformat()},
            )
            url = reverse("reconciliation", kwargs={"slug": organization.slug})
            return redirect(f"{url}?{urlencode({'run': queued.pk, 'started': 1})}")
    context = _context(request, organization, can_write, run_form=form, run_refused=refusal)
    return render(request, TEMPLATE, context)


@login_required
@require_POST
def reconciliation_act(request: HttpRequest, slug: str) -> HttpResponse:
    """Send again, or accept with a comment: admins only, through reconciliation.actions."""
    organization = organization_for(request.user, slug, write=True).organization
    item = _item(organization, request.POST.get("item", ""))
    back = _back(organization, item, request.POST)
    if item is None:
        messages.warning(request, str(REFUSALS["no_such_item"]))
        return redirect(back)
    comment = request.POST.get("comment", "")
    try:
        if request.POST.get("action") == "resend":
            run = actions.resend(item, request.user)
            said = (
                _("%(reference)s is sent again: it is looked up in the accounting system first.")
                if run is not None
                else _(
                    "%(reference)s is due to be sent again: the next sync takes it (a sync is "
                    "running or the connector is off), after looking it up first."
                )
            ) % {"reference": item.reference}
        elif request.POST.get("action") == "accept":
            if len(comment) > MAX_COMMENT:
                raise actions.NotAllowed("comment_too_long")
            actions.accept(item, request.user, comment)
            said = _("The difference of %(reference)s is accepted.") % {"reference": item.reference}
        else:
            raise Http404(_("No such action."))
    except actions.NotAllowed as refused:
        reason = REFUSALS.get(refused.code)
        text = str(reason) % {"max": MAX_COMMENT} if reason else _("This cannot be done now.")
        messages.warning(request, f"{item.reference}: {text}")
    else:
        messages.success(request, said)
    return redirect(back)


def _item(organization: Organization, wanted: str) -> Item | None:
    if not wanted.isdigit():
        return None
    return (
        Item.objects.select_related("reconciliation__organization")
        .filter(pk=int(wanted), reconciliation__organization=organization)
        .first()
    )


def _back(organization: Organization, item: Item | None, form: QueryDict) -> str:
    """The page the action came from: the item's reading, its filters and page, the row."""
    url = reverse("reconciliation", kwargs={"slug": organization.slug})
    if item is None:
        return url
    query: dict[str, str | int] = {"run": item.reconciliation_id}
    filters = ItemFilter(form)
    query.update(filters.values())
    page = form.get("page", "")
    if page.isdigit():
        query["page"] = page
    return f"{url}?{urlencode(query)}#item-{item.pk}"


@login_required
@require_GET
def reconciliation_export(
    request: HttpRequest, slug: str, fmt: str
) -> HttpResponse | StreamingHttpResponse:
    """One reading as CSV or JSON, with its evidence; auditors and admins, in the trail."""
    if fmt not in ("csv", "json"):
        raise Http404(_("Exports are CSV or JSON."))
    organization = organization_for(request.user, slug).organization
    chosen = Reconciliation.objects.filter(organization=organization).select_related(
        "organization", "requested_by"
    )
    wanted = request.GET.get("run", "")
    if wanted:
        chosen = chosen.filter(pk=int(wanted)) if wanted.isdigit() else chosen.none()
    reconciliation = chosen.first()
    if reconciliation is None:
        raise Http404(_("No such reconciliation."))
    if not reconciliation.is_finished:
        return HttpResponse(
            _("This reconciliation is still running; export it when it has finished."),
            status=409,
            content_type="text/plain; charset=utf-8",
        )
    rows = reconciliation.items.count()
    zone = zoneinfo.ZoneInfo(organization.time_zone)
    now = timezone.now()
    meta = exports.metadata(reconciliation, now, rows, zone)
    record_action(
        request.user,
        organization,
        TrailKind.RECONCILIATION_EXPORTED,
        reconciliation=reconciliation.pk,
        period=f"{meta['period_start']}..{meta['period_end']}",
        format=fmt,
        rows=rows,
    )
    values = exports.item_values(reconciliation)
    if fmt == "csv":
        body = exports.csv_lines(meta, values, zone)
        response = StreamingHttpResponse(body, content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(
            exports.json_chunks(meta, values), content_type="application/json"
        )
    stamp = timezone.localtime(now, zone).strftime("%Y%m%d-%H%M")
    name = f"reconciliation-{organization.slug}-{reconciliation.pk}-{stamp}.{fmt}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Row-Count"] = str(rows)
    return response
