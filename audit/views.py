from __future__ import annotations

import json
import re
import zoneinfo
from datetime import date
from functools import partial

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Count, Min, Q, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from accounting_sync.models import SyncLog
from audit.exports import csv_lines, export_values, json_chunks
from audit.filters import AdminTrailFilter, AuditLogFilter
from audit.models import AdminAction, ChainCheckpoint
from audit.tasks import verify_organization
from core import live
from core.chain import head
from integrations.models import CategoryLabels
from organizations.access import organization_for, require_global_admin
from organizations.models import Organization

PAGE_SIZE = 50
Chain = ChainCheckpoint.Chain


def _scope(
    request: HttpRequest, slug: str | None, model: type[SyncLog] | type[AdminAction] = SyncLog
) -> tuple[Organization | None, QuerySet]:
    """The organization (None: all, for global admins) and the rows the user may see."""
    if slug is None:
        require_global_admin(request.user)
        return None, model.objects.all()
    organization = organization_for(request.user, slug).organization
    return organization, model.objects.filter(organization=organization)


def _filtered(request: HttpRequest, organization, queryset) -> AuditLogFilter:
    return AuditLogFilter(
        request.GET or None, queryset=queryset, show_organization=organization is None
    )


# A row id as the URL carries it: ASCII digits ("²".isdigit() is true too), and few
# enough of them to fit the database's 64-bit ids.
_CURSOR = re.compile(r"[0-9]{1,18}")


def _cursor(value: str | None) -> int | None:
    """The edge row's id, or None for no cursor (anything else is not one)."""
    return int(value) if value and _CURSOR.fullmatch(value) else None


def keyset_page(
    queryset: QuerySet, visible: QuerySet, before: str | None, after: str | None
) -> tuple[list, bool, bool]:
    """Newest first, PAGE_SIZE at a time: page 1,000 costs what page 1 does.

    Ordered by time, then id, which the (organization, -created_at, -id) index serves
    and a date range narrows. The cursor in the URL is the edge row's id; its time is
    read inside the same query, and only from `visible` (the rows this viewer may see):
    another organization's id must not place the page, or its time could be probed.
    A cursor that resolves to nothing there answers 404, as an unknown id does.
    """
    newer_than = _cursor(after)
    edge_id = newer_than if newer_than is not None else _cursor(before)
    if edge_id is None:
        rows = list(queryset.order_by("-created_at", "-id")[: PAGE_SIZE + 1])
        return rows[:PAGE_SIZE], False, len(rows) > PAGE_SIZE
    edge_time = Subquery(visible.filter(pk=edge_id).order_by().values("created_at")[:1])
    if newer_than is not None:
        newer = queryset.filter(created_at__gte=edge_time).exclude(
            created_at=edge_time, id__lte=edge_id
        )
        rows = list(newer.order_by("created_at", "id")[: PAGE_SIZE + 1])
        page = rows[:PAGE_SIZE][::-1], len(rows) > PAGE_SIZE, True
    else:
        older = queryset.filter(created_at__lte=edge_time).exclude(
            created_at=edge_time, id__gte=edge_id
        )
        rows = list(older.order_by("-created_at", "-id")[: PAGE_SIZE + 1])
        page = rows[:PAGE_SIZE], True, len(rows) > PAGE_SIZE
    # An empty page is rare (the links never lead to one), so only then is the cursor
    # itself looked up: a normal page keeps its single query.
    if not rows and not visible.filter(pk=edge_id).exists():
        raise Http404(_("No such page."))
    return page


def _page_context(request: HttpRequest, filterset, rows, has_newer, has_older) -> dict:
    query = request.GET.copy()
    for key in ("before", "after"):
        query.pop(key, None)
    return {
        "filter": filterset,
        "rows": rows,
        "newer": rows[0].pk if has_newer and rows else None,
        "older": rows[-1].pk if has_older and rows else None,
        "query": query.urlencode(),
    }


def _chain_context(organization: Organization | None, chain: str) -> dict:
    """The chain badge (S8.6): the stored verification, never a walk on page load."""
    if organization is not None:
        return {"chain": chain, "checkpoint": ChainCheckpoint.shown(organization.pk, chain)}
    checkpoints = ChainCheckpoint.objects.filter(chain=chain, organization__isnull=False)
    summary = checkpoints.aggregate(
        verified=Count("pk", filter=Q(verified_at__isnull=False)),
        oldest=Min("verified_at"),
    )
    summary["organizations"] = Organization.objects.count()
    summary["broken"] = list(
        checkpoints.filter(broken_row_id__isnull=False)
        .select_related("organization")
        .order_by("organization__name")
    )
    return {"chain": chain, "chains": summary}


@login_required
@require_GET
def audit_log(request: HttpRequest, slug: str | None = None) -> HttpResponse:
    organization, queryset = _scope(request, slug)
    filterset = _filtered(request, organization, queryset)
    page = keyset_page(
        # The list shows neither payload nor response: they stay in the database.
        filterset.qs.select_related("record", "organization").defer("payload", "response_body"),
        queryset,
        request.GET.get("before"),
        request.GET.get("after"),
    )
    return render(
        request,
        "audit/log.html",
        {
            "organization": organization,
            **_page_context(request, filterset, *page),
            **_chain_context(organization, Chain.SYNC_LOG),
        },
    )


@login_required
@require_GET
def admin_trail(request: HttpRequest, slug: str | None = None) -> HttpResponse:
    """Who changed what and when: settings, credentials (never their values), mappings,
    schedule, toggles, syncs and retries asked for, exports, API keys, connection tests."""
    organization, queryset = _scope(request, slug, AdminAction)
    filterset = AdminTrailFilter(
        request.GET or None, queryset=queryset, show_organization=organization is None
    )
    page = keyset_page(
        filterset.qs.select_related("organization"),
        queryset,
        request.GET.get("before"),
        request.GET.get("after"),
    )
    return render(
        request,
        "audit/trail.html",
        {
            "organization": organization,
            **_page_context(request, filterset, *page),
            **_chain_context(organization, Chain.ADMIN_TRAIL),
        },
    )


def _chain_of(request: HttpRequest) -> str:
    chain = request.POST.get("chain") or request.GET.get("chain") or Chain.SYNC_LOG
    if chain not in Chain.values:
        raise Http404(_("No such chain."))
    return chain


def _badge(request: HttpRequest, organization, chain: str, announce: str = "") -> HttpResponse:
    context = {
        "organization": organization,
        **_chain_context(organization, chain),
        "fragment": True,
        "announce": announce,
    }
    return render(request, "audit/_chain_badge.html", context)


@login_required
@require_POST
def verify_now(request: live.HtmxHttpRequest, slug: str) -> HttpResponse:
    """Verify now: a worker walks the organization's chains and the badge shows its progress.

    Auditors may ask too: verifying reads the chain and changes nothing that is audited.
    """
    organization = organization_for(request.user, slug).organization
    chain = _chain_of(request)
    asked = [ChainCheckpoint.for_chain(organization.pk, c).request() for c in Chain.values]
    if any(asked):
        transaction.on_commit(partial(verify_organization.delay, organization.pk))
        said = _("Verification started: a worker is checking every row of the chain.")
    else:
        said = _("A verification is already under way.")
    if request.htmx:
        return _badge(request, organization, chain, announce=said)
    messages.info(request, said)
    page = "audit_log" if chain == Chain.SYNC_LOG else "admin_trail"
    return redirect(page, slug=organization.slug)


@login_required
@require_GET
@live.poll
def chain_badge(request: HttpRequest, slug: str) -> HttpResponse:
    """The badge's live part while a verification runs: 204 while nothing changed, the
    final state with 286 (stop polling) once it is done."""
    organization = organization_for(request.user, slug).organization
    chain = _chain_of(request)
    checkpoint = ChainCheckpoint.shown(organization.pk, chain)
    if live.unchanged(request, checkpoint.version):
        return live.no_change()
    announce = ""
    if not checkpoint.is_requested:
        if checkpoint.is_broken:
            announce = _("Verification finished: the chain is broken at row %(row)s.") % {
                "row": checkpoint.broken_row_id
            }
        else:
            announce = _("Verification finished: the chain is intact up to row %(row)s.") % {
                "row": checkpoint.last_row_id
            }
    response = _badge(request, organization, chain, announce=announce)
    if not checkpoint.is_requested:
        response.status_code = live.STOP_POLLING
    return response


@login_required
@require_GET
def audit_entry(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    organization, queryset = _scope(request, slug)
    try:
        entry = queryset.select_related("record", "run__triggered_by").get(pk=pk)
    except SyncLog.DoesNotExist:
        raise Http404(_("No such attempt.")) from None
    chain = SyncLog.objects.filter(record=entry.record).order_by("attempt_number", "id")
    return render(
        request,
        "audit/entry.html",
        {
            "organization": organization,
            "entry": entry,
            "payload": json.dumps(entry.payload, indent=2, ensure_ascii=False),
            "attempts": chain,
            "category_labels": CategoryLabels.of(entry.organization_id),
        },
    )


@login_required
@require_GET
def audit_export(
    request: HttpRequest, fmt: str, slug: str | None = None
) -> HttpResponse | StreamingHttpResponse:
    if fmt not in ("csv", "json"):
        raise Http404(_("Exports are CSV or JSON."))
    organization, queryset = _scope(request, slug)
    filterset = _filtered(request, organization, queryset)
    if filterset.form.is_bound and not filterset.is_valid():
        return HttpResponse(
            _("The filter is not valid; fix it on the audit log page."),
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    matched = filterset.qs
    count = matched.count()
    chains = _chain_heads(organization, matched)
    applied = _applied_filter(filterset)
    # What was exported, described by the server: never the caller's query string, or
    # any text (?note=…) could be written into the trail by following a link.
    AdminAction.record(
        request.user,
        organization,
        AdminAction.Kind.AUDIT_EXPORTED,
        format=fmt,
        filter=applied,
        rows=count,
    )
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    name = f"sync-log-{organization.slug if organization else 'all'}-{stamp}.{fmt}"
    rows = export_values(matched)
    if fmt == "csv":
        # Plain local times in the organization's zone: the CSV carries no offset.
        zone = zoneinfo.ZoneInfo(organization.time_zone) if organization else None
        response = StreamingHttpResponse(
            csv_lines(rows, zone), content_type="text/csv; charset=utf-8"
        )
    else:
        meta = {
            "exported_at": timezone.localtime().isoformat(),
            "filter": applied,  # as the trail records it
            "rows": count,
            "chain_heads": chains,
        }
        response = StreamingHttpResponse(json_chunks(rows, meta), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Row-Count"] = str(count)
    response["X-Chain-Heads"] = json.dumps(chains)
    return response


def _applied_filter(filterset: AuditLogFilter) -> dict[str, str]:
    """The filters the export applied, from the validated form: only known filters with
    a value, each as plain text (a date as YYYY-MM-DD, an organization as its slug)."""
    if not filterset.form.is_bound:
        return {}
    applied = {}
    for name, value in filterset.form.cleaned_data.items():
        if value in (None, ""):
            continue
        if isinstance(value, Organization):
            value = value.slug
        elif isinstance(value, date):
            value = value.isoformat()
        applied[name] = str(value)
    return applied


def _chain_heads(organization, matched: QuerySet[SyncLog]) -> dict[str, str]:
    """The newest hash of each organization's chain, so the export can be verified later."""
    if organization is not None:
        return {organization.slug: head(SyncLog, organization.pk)}
    ids = matched.order_by().values_list("organization_id", flat=True).distinct()
    return {org.slug: head(SyncLog, org.pk) for org in Organization.objects.filter(pk__in=ids)}
