"""Where each person lands, the global admins' organization switcher, and API keys."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from core.events import TrailKind, record_action
from organizations.access import (
    is_global_admin,
    organization_for,
    organization_for_global_admin,
    organizations_for,
    require_global_admin,
)
from organizations.models import ApiKey


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Send each person to where they work."""
    if is_global_admin(request.user):
        return redirect("overview")
    organizations = list(organizations_for(request.user))
    if len(organizations) == 1:
        return redirect("organization_home", slug=organizations[0].slug)
    return render(
        request, "organizations/choose_organization.html", {"organizations": organizations}
    )


@login_required
@require_GET
def switch_organization(request: HttpRequest) -> HttpResponse:
    """The header's organization switcher submits here (it works without JavaScript)."""
    require_global_admin(request.user)
    organization = organization_for(request.user, request.GET.get("organization", "")).organization
    return redirect("organization_home", slug=organization.slug)


@never_cache  # the page may show a new key once; no copy may stay in a cache
@login_required
@require_http_methods(["GET", "POST"])
def api_keys(request: HttpRequest, slug: str) -> HttpResponse:
    organization = organization_for_global_admin(request.user, slug)
    new_key = None
    if request.method == "POST":
        key, new_key = ApiKey.issue(organization, created_by=request.user)
        record_action(request.user, organization, TrailKind.API_KEY_ISSUED, prefix=key.prefix)
        messages.success(request, _("A new API key was issued; the previous key no longer works."))
    return render(
        request,
        "organizations/api_keys.html",
        {
            "organization": organization,
            "keys": organization.api_keys.select_related("created_by"),
            "new_key": new_key,
        },
    )
