"""Failed records (S6): each failed record, its error and attempts; Retry Selected / All."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounting_sync.models import FinancialRecord
from integrations.access import organization_for


@login_required
@require_GET
def failed_records(request: HttpRequest, slug: str) -> HttpResponse:
    organization = organization_for(request.user, slug)
    records = organization.records.filter(state=FinancialRecord.State.FAILED)
    return render(
        request,
        "accounting_sync/failed.html",
        {"organization": organization, "records": records},
    )
