from __future__ import annotations

from functools import partial
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core import live
from core.events import TrailKind, record_action
from integrations.forms import IntegrationSettingsForm, MappingsForm
from integrations.models import CategoryLabels, ConnectionTest, Integration, SetupSteps
from integrations.tasks import run_connection_test
from organizations.access import (
    organization_for,
)

# --- the integration: settings, connection test, enable toggle, mappings ------------------


def _integration_or_none(organization) -> Integration | None:
    return Integration.objects.filter(organization=organization).first()


def _connection_context(
    organization, can_write: bool, integration: Integration | None
) -> dict[str, Any]:
    test = integration.connection_tests.first() if integration else None
    setup = integration.setup_steps() if integration else SetupSteps.not_started()
    return {
        "organization": organization,
        "integration": integration,
        "test": test,
        "why_not_enable": integration.why_not_enable() if integration else None,
        "setup": None if setup.ready else setup,  # the checklist, shown until all is done
        "category_labels": None if setup.ready else CategoryLabels.of(organization),
        "can_write": can_write,
    }


@login_required
@require_http_methods(["GET", "POST"])
def integration_settings(request: live.HtmxHttpRequest, slug: str) -> HttpResponse:
    organization, can_write = organization_for(request.user, slug, write=request.method == "POST")
    integration = _integration_or_none(organization)
    chosen = request.POST.get("connector") or request.GET.get("connector")
    if chosen not in Integration.Connector.values:
        chosen = integration.connector if integration else Integration.Connector.XLEDGER
    form = IntegrationSettingsForm(
        request.POST or None,
        instance=integration or Integration(organization=organization),
        connector=chosen,
        xledger_auth=request.POST.get("xledger_auth") or request.GET.get("xledger_auth"),
    )
    if request.method == "POST" and form.is_valid():
        was_enabled = bool(integration and integration.enabled)
        saved = form.save_for(request.user)
        messages.success(request, _("The connection settings were saved."))
        if was_enabled and not saved.enabled:
            messages.warning(
                request,
                _(
                    "The connector was disabled because the connection "
                    "changed. Test the connection, then enable it again."
                ),
            )
        return redirect("integration_settings", slug=organization.slug)
    template = "integrations/settings.html"
    if request.htmx and request.htmx.target == "connector-fields":
        template += "#connector-fields"  # the radio buttons swap in the chosen system's fields
    elif request.htmx and request.htmx.target == "xledger-auth-fields":
        template += "#xledger-auth-fields"  # only the sign-in fields: typed values elsewhere stay
    context = {
        **_connection_context(organization, can_write, integration),
        "form": form,
        "allowed_hosts": settings.ERP_ALLOWED_HOSTS,
    }
    return render(request, template, context)


@login_required
@require_GET
@live.poll
def integration_connection(request: HttpRequest, slug: str) -> HttpResponse:
    """The connection card alone; polled while a test runs."""
    organization, can_write = organization_for(request.user, slug)
    integration = _integration_or_none(organization)
    context = _connection_context(organization, can_write, integration)
    test = context["test"]
    seen = f"{test.pk}:{test.status}" if test else ""
    if request.GET.get("seen") == seen:
        return HttpResponse(status=204)  # nothing changed: htmx leaves the page alone
    return render(request, "integrations/settings.html#connection-card", context)


@login_required
@require_POST
def integration_test(request: live.HtmxHttpRequest, slug: str) -> HttpResponse:
    organization = organization_for(request.user, slug, write=True).organization
    integration = _integration_or_none(organization)
    if integration is None:
        raise Http404(_("Save the connection settings first."))
    running = integration.connection_tests.filter(
        status__in=[ConnectionTest.Status.QUEUED, ConnectionTest.Status.RUNNING]
    ).first()
    if running is None:
        assert request.user.is_authenticated  # login_required
        test = ConnectionTest.objects.create(integration=integration, requested_by=request.user)
        record_action(
            request.user,
            organization,
            TrailKind.CONNECTION_TESTED,
            connector=integration.connector,
        )
        transaction.on_commit(partial(run_connection_test.delay, test.pk))
    if request.htmx:
        return render(
            request,
            "integrations/settings.html#connection-card",
            _connection_context(organization, True, integration),
        )
    return redirect("integration_settings", slug=organization.slug)


@login_required
@require_POST
def integration_toggle(request: HttpRequest, slug: str) -> HttpResponse:
    organization = organization_for(request.user, slug, write=True).organization
    integration = _integration_or_none(organization)
    if integration is None:
        raise Http404(_("Save the connection settings first."))
    enable = request.POST.get("enabled") == "true"
    refusal = integration.set_enabled(enable, request.user)
    if refusal:
        messages.error(
            request, _("The connector was not enabled. %(reason)s") % {"reason": refusal}
        )
    else:
        said = {"erp": integration.get_connector_display()}
        messages.success(
            request,
            _("The %(erp)s connector is enabled.") % said
            if integration.enabled
            else _("The %(erp)s connector is disabled.") % said,
        )
    return redirect("integration_settings", slug=organization.slug)


@login_required
@require_http_methods(["GET", "POST"])
def integration_mappings(request: HttpRequest, slug: str) -> HttpResponse:
    organization, can_write = organization_for(request.user, slug, write=request.method == "POST")
    integration = _integration_or_none(organization)
    if integration is None or integration.connection_verified_at is None:
        return render(
            request,
            "integrations/mappings.html",
            {"organization": organization, "integration": integration, "form": None},
        )
    # Named categories stay listed while named, so a name can be changed or cleared.
    categories = sorted(
        set(organization.records.values_list("category", flat=True).distinct())
        | set(integration.mappings.values_list("category", flat=True))
        | set(organization.category_names.values_list("category", flat=True))
    )
    form = MappingsForm(request.POST or None, integration=integration, categories=categories)
    if request.method == "POST" and form.is_valid():
        form.save_for(request.user)
        messages.success(request, _("The mappings were saved."))
        return redirect("integration_mappings", slug=organization.slug)
    return render(
        request,
        "integrations/mappings.html",
        {
            "organization": organization,
            "integration": integration,
            "form": form,
            "can_write": can_write,
            "held_back": _held_back(organization, integration),
        },
    )


def _held_back(organization, integration: Integration) -> int:
    """Records a sync would now send that waited for a mapping: the page offers to send them.

    Counted through the organization's records by their state's stored value, as this
    layer does not import the engine's models.
    """
    mapped = integration.mappings.values("category")
    if not integration.payable_account:
        return 0
    return organization.records.filter(
        state__in=["pending", "skipped"], category__in=mapped
    ).count()
