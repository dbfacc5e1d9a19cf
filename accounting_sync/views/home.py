"""The organization's status dashboard and Trigger Sync Now (S3, S4)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from accounting_sync.models import SyncRun
from accounting_sync.triggers import SyncRefused, request_run
from accounting_sync.views.dashboard import Dashboard
from core import live
from organizations.access import organization_for


@login_required
@require_GET
def organization_home(request: HttpRequest, slug: str) -> HttpResponse:
    """The status dashboard (S4): health, counts, Trigger Sync Now, recent runs."""
    organization, can_write = organization_for(request.user, slug)
    return render(
        request,
        "accounting_sync/organization_home.html",
        _context(
            organization,
            can_write,
            Dashboard.build(organization),
            page=_records(request, organization),
        ),
    )


@login_required
@require_GET
@live.poll
def dashboard_live(request: HttpRequest, slug: str) -> HttpResponse:
    """The dashboard's live part (S4.6): 204 at once while nothing has changed."""
    organization, can_write = organization_for(request.user, slug)
    if live.unchanged(request, organization.live_version):
        return live.no_change()
    dashboard = Dashboard.build(organization)
    watched = dashboard.finished_since(request.GET.get("run"))
    announce = dashboard.outcome(watched) if watched else ""
    return _status(request, organization, can_write, dashboard, announce=announce)


@login_required
def trigger_sync(request: live.HtmxHttpRequest, slug: str) -> HttpResponse:
    """Trigger Sync Now (S3): GET asks to confirm (without JavaScript); POST starts the run.

    It answers at once; a worker does the sending. From the dialog (htmx) the answer is
    the live part, now showing the progress bar.
    """
    organization = organization_for(request.user, slug, write=True).organization
    if request.method == "GET":
        return render(
            request,
            "accounting_sync/confirm_sync.html",
            _context(organization, True, Dashboard.build(organization)),
        )
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "POST"])
    try:
        request_run(organization, SyncRun.Trigger.MANUAL, user=request.user)
        said, level = _("The sync has started."), messages.SUCCESS
    except SyncRefused as refusal:
        said, level = str(refusal), messages.WARNING
    if not request.htmx:
        messages.add_message(request, level, said)
        return redirect("organization_home", slug=organization.slug)
    organization.refresh_from_db(fields=["live_version"])
    return _status(request, organization, True, Dashboard.build(organization), announce=said)


def _records(request: HttpRequest, organization) -> Page:
    """A page of the latest records: in the live part, so their states move (issue 11)."""
    return Paginator(organization.records.all(), 50).get_page(request.GET.get("page"))


def _context(organization, can_write: bool, dashboard: Dashboard, **more) -> dict:
    return {"organization": organization, "dashboard": dashboard, "can_write": can_write, **more}


def _status(
    request: HttpRequest, organization, can_write: bool, dashboard: Dashboard, announce: str = ""
):
    context = _context(
        organization,
        can_write,
        dashboard,
        announce=announce,
        fragment=True,
        page=_records(request, organization),
    )
    return render(request, "accounting_sync/organization_home.html#status", context)
