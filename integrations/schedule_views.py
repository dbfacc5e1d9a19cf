"""The sync schedule page (S9.1-S9.3, S9.7): thin views over integrations/schedule.py."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from integrations import schedule
from integrations.forms import ScheduleForm
from integrations.models import Integration
from organizations.access import organization_for

TEMPLATE = "integrations/schedule.html"


def _integration(organization) -> Integration:
    integration = Integration.objects.filter(organization=organization).first()
    if integration is None:
        # The schedule belongs to the connection; there is nothing to schedule yet.
        raise Http404(_("Set up the accounting system first."))
    integration.organization = organization  # saves a query
    return integration


def _preview(integration: Integration) -> dict[str, object]:
    return {
        "description": schedule.describe(integration),
        "next_runs": schedule.next_runs(integration),
        "cron": schedule.cron_for(integration),
        "time_zone": integration.organization.time_zone,
    }


@login_required
@require_http_methods(["GET", "POST"])
def integration_schedule(request: HttpRequest, slug: str) -> HttpResponse:
    organization, can_write = organization_for(request.user, slug, write=request.method == "POST")
    integration = _integration(organization)
    form = ScheduleForm(
        request.POST or None,
        instance=integration,
        preview_url=reverse("integration_schedule_preview", args=[organization.slug]),
    )
    if request.method == "POST" and form.is_valid():
        saved = form.save_for(request.user)
        runs = schedule.next_runs(saved)
        if runs:
            messages.success(
                request,
                _("The schedule was saved. The next sync is %(when)s.")
                % {"when": runs[0].when_in_sentence},
            )
        else:
            messages.success(request, _("The schedule was saved. No automatic syncs are planned."))
        return redirect("integration_schedule", slug=organization.slug)
    # Shown is what is saved, not what a refused POST tried (the form shows that).
    saved = _integration(organization) if form.is_bound else integration
    return render(
        request,
        TEMPLATE,
        {
            "organization": organization,
            "integration": saved,
            "form": form,
            "can_write": can_write,
            "saved": _preview(saved),
            # A refused POST (no JavaScript) shows what the typed schedule would do; its
            # errors are shown beside the fields.
            "preview": _preview(form.instance)
            if form.is_bound and not form.schedule_errors()
            else None,
        },
    )


@login_required
@require_GET
def integration_schedule_preview(request: HttpRequest, slug: str) -> HttpResponse:
    """The schedule as typed so far, in words with its next runs, or what is wrong (S9.3).

    Nothing is saved: the form only checks the values and fills an unsaved copy.
    """
    organization = organization_for(request.user, slug).organization
    form = ScheduleForm(request.GET, instance=_integration(organization))
    form.is_valid()
    errors = form.schedule_errors()
    context = {
        "organization": organization,
        "form": form,
        "errors": errors,
        "preview": None if errors else _preview(form.instance),
    }
    return render(request, f"{TEMPLATE}#preview", context)
