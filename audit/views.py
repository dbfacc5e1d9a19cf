from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounting_sync.models import SyncLog
from audit.chain import head
from audit.exports import csv_lines, export_rows, json_chunks
from audit.filters import AuditLogFilter
from audit.models import AdminAction
from integrations.access import organization_for, require_global_admin

PAGE_SIZE = 50


def _scope(request: HttpRequest, slug: str | None) -> tuple[object | None, QuerySet[SyncLog]]:
    """The organization (None: all, for global admins) and the attempts the user may see."""
    if slug is None:
        require_global_admin(request.user)
        return None, SyncLog.objects.all()
    organization = organization_for(request.user, slug)
    return organization, SyncLog.objects.filter(organization=organization)


def _filtered(request: HttpRequest, organization, queryset) -> AuditLogFilter:
    return AuditLogFilter(
        request.GET or None, queryset=queryset, show_organization=organization is None
    )


def keyset_page(queryset: QuerySet[SyncLog], before: str | None, after: str | None):
    """Newest first, PAGE_SIZE at a time, by id: page 1,000 costs what page 1 does."""
    if after and after.isdigit():
        rows = list(queryset.filter(id__gt=int(after)).order_by("id")[: PAGE_SIZE + 1])
        has_newer = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE][::-1]
        return rows, has_newer, True
    if before and before.isdigit():
        queryset = queryset.filter(id__lt=int(before))
    rows = list(queryset.order_by("-id")[: PAGE_SIZE + 1])
    return rows[:PAGE_SIZE], bool(before), len(rows) > PAGE_SIZE


@login_required
@require_GET
def audit_log(request: HttpRequest, slug: str | None = None) -> HttpResponse:
    organization, queryset = _scope(request, slug)
    filterset = _filtered(request, organization, queryset)
    rows, has_newer, has_older = keyset_page(
        filterset.qs.select_related("record", "organization"),
        request.GET.get("before"),
        request.GET.get("after"),
    )
    query = request.GET.copy()
    for key in ("before", "after"):
        query.pop(key, None)
    return render(
        request,
        "audit/log.html",
        {
            "organization": organization,
            "filter": filterset,
            "rows": rows,
            "newer": rows[0].pk if has_newer and rows else None,
            "older": rows[-1].pk if has_older and rows else None,
            "query": query.urlencode(),
        },
    )


@login_required
@require_GET
def audit_entry(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    organization, queryset = _scope(request, slug)
    try:
        entry = queryset.select_related("record", "run__triggered_by").get(pk=pk)
    except SyncLog.DoesNotExist:
        raise Http404("No such attempt.") from None
    chain = SyncLog.objects.filter(record=entry.record).order_by("attempt_number", "id")
    return render(
        request,
        "audit/entry.html",
        {
            "organization": organization,
            "entry": entry,
            "payload": json.dumps(entry.payload, indent=2, ensure_ascii=False),
            "attempts": chain,
        },
    )


@login_required
@require_GET
def audit_export(request: HttpRequest, fmt: str, slug: str | None = None) -> HttpResponse:
    if fmt not in ("csv", "json"):
        raise Http404("Exports are CSV or JSON.")
    organization, queryset = _scope(request, slug)
    filterset = _filtered(request, organization, queryset)
    if filterset.form.is_bound and not filterset.is_valid():
        return HttpResponse("The filter is not valid; fix it on the audit log page.", status=400)
    matched = filterset.qs
    count = matched.count()
    chains = _chain_heads(organization, matched)
    AdminAction.record(
        request.user,
        organization,
        AdminAction.Kind.AUDIT_EXPORTED,
        format=fmt,
        filter=request.GET.dict(),
        rows=count,
    )
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    name = f"sync-log-{organization.slug if organization else 'all'}-{stamp}.{fmt}"
    rows = export_rows(matched)
    if fmt == "csv":
        response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
    else:
        meta = {
            "exported_at": timezone.localtime().isoformat(),
            "filter": request.GET.dict(),
            "rows": count,
            "chain_heads": chains,
        }
        response = StreamingHttpResponse(json_chunks(rows, meta), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Row-Count"] = str(count)
    response["X-Chain-Heads"] = json.dumps(chains)
    return response


def _chain_heads(organization, matched: QuerySet[SyncLog]) -> dict[str, str]:
    """The newest hash of each organization's chain, so the export can be verified later."""
    if organization is not None:
        return {organization.slug: head(SyncLog, organization.pk)}
    ids = matched.order_by().values_list("organization_id", flat=True).distinct()
    from integrations.models import Organization

    return {org.slug: head(SyncLog, org.pk) for org in Organization.objects.filter(pk__in=ids)}
