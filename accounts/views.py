"""Pages for the second factor (set up, use at login, renew codes, turn off) and the
global admins' list of locked logins."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_otp import login as otp_login

from accounts import lockout, two_factor
from accounts.forms import ConfirmAppForm, VerifyForm
from audit.models import AdminAction
from organizations.access import require_global_admin

# Session key: the recovery codes just made, until the page showing them is read once.
NEW_CODES = "two_factor_new_codes"


def _next_or_home(request: HttpRequest) -> str:
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    safe = url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return wanted if safe else settings.LOGIN_REDIRECT_URL


def _show_new_codes(request: HttpRequest, codes: list[str]) -> HttpResponse:
    request.session[NEW_CODES] = codes
    return redirect("two_factor_recovery_codes")


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def two_factor_page(request: HttpRequest) -> HttpResponse:
    """With an app: its state and what can be done. Without: setting one up."""
    user = request.user
    if two_factor.has_device(user):
        return render(
            request,
            "accounts/two_factor.html",
            {
                "required": two_factor.required_for(user),
                "codes_left": two_factor.remaining_recovery_codes(user),
                "disable_form": VerifyForm(user),
            },
        )
    device = two_factor.pending_device(user)
    form = ConfirmAppForm(device, request.POST or None)
    if request.method == "POST" and form.is_valid():
        otp_login(request, device)  # this session has just shown it holds the app
        AdminAction.record(user, None, AdminAction.Kind.TWO_FACTOR_ENABLED)
        messages.success(request, _("Two-factor authentication is on."))
        return _show_new_codes(request, two_factor.new_recovery_codes(user))
    return render(
        request,
        "accounts/enrol.html",
        {
            "form": form,
            "required": two_factor.required_for(user),
            "qr_svg": mark_safe(two_factor.qr_svg(device)),  # segno's markup: paths only
            "secret": two_factor.secret_text(device),
        },
    )


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def recovery_codes(request: HttpRequest) -> HttpResponse:
    """GET: the codes just made, shown this once. POST: make new ones (the old stop working)."""
    if request.method == "POST":
        if not two_factor.has_device(request.user):
            return redirect("two_factor")
        AdminAction.record(request.user, None, AdminAction.Kind.RECOVERY_CODES_RENEWED)
        return _show_new_codes(request, two_factor.new_recovery_codes(request.user))
    codes = request.session.pop(NEW_CODES, None)
    if not codes:
        return redirect("two_factor")
    return render(request, "accounts/recovery_codes.html", {"codes": codes})


@login_required
@require_POST
def two_factor_disable(request: HttpRequest) -> HttpResponse:
    """Turning it off takes a code, so a session left open cannot do it alone. Someone who
    must have it is sent straight to setting up a new app (replacing a lost phone)."""
    user = request.user
    form = VerifyForm(user, request.POST)
    if not form.is_valid():
        return render(
            request,
            "accounts/two_factor.html",
            {
                "required": two_factor.required_for(user),
                "codes_left": two_factor.remaining_recovery_codes(user),
                "disable_form": form,
            },
            status=400,
        )
    two_factor.remove(user)
    AdminAction.record(user, None, AdminAction.Kind.TWO_FACTOR_DISABLED)
    messages.success(request, _("Two-factor authentication is off."))
    return redirect("two_factor")


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def two_factor_verify(request: HttpRequest) -> HttpResponse:
    """The login's second step, after the password."""
    # django_otp's OTPMiddleware adds is_verified to the user (django_otp has no types).
    user: Any = request.user
    if user.is_verified() or not two_factor.has_device(user):
        return redirect(_next_or_home(request) if user.is_verified() else "two_factor")
    form = VerifyForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        otp_login(request, form.device)
        return redirect(_next_or_home(request))
    return render(
        request,
        "accounts/verify.html",
        {"form": form, "next": request.POST.get("next") or request.GET.get("next", "")},
    )


@login_required
@require_GET
def lockouts(request: HttpRequest) -> HttpResponse:
    """Global admins: every login locked now, with Unlock."""
    require_global_admin(request.user)
    return render(
        request,
        "accounts/lockouts.html",
        {
            "locks": lockout.current_locks(),
            "pair_limit": settings.LOGIN_FAILURE_LIMITS[lockout.PAIR],
            "user_limit": settings.LOGIN_FAILURE_LIMITS[lockout.USER],
            "address_limit": settings.LOGIN_FAILURE_LIMITS[lockout.ADDRESS],
            "minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
        },
    )


@login_required
@require_POST
def lockout_unlock(request: HttpRequest) -> HttpResponse:
    require_global_admin(request.user)
    scope = request.POST.get("scope", "")
    username = request.POST.get("username", "")
    ip_address = request.POST.get("ip_address", "")
    if lockout.unlock(scope, username, ip_address):
        AdminAction.record(
            request.user,
            None,
            AdminAction.Kind.LOGIN_UNLOCKED,
            scope=scope,
            username=username,
            ip_address=ip_address,
        )
        messages.success(request, _("Unlocked. Logging in works again at once."))
    else:
        messages.info(request, _("That lock had already ended."))
    return redirect("lockouts")
