"""Password guessing: django-axes counts failed logins; this module adds what it lacks.

Axes checks every login that goes through `authenticate()` (the app's login page and
/admin/login/ alike) and refuses it while the user, the address or the two together have
failed too often. Here: one limit per lockout parameter (settings.LOGIN_FAILURE_LIMITS),
the client's address taken only from what the deployment vouches for, the lockout page in
the reader's language, and the list of current locks a global admin may lift.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import datetime

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Max, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

# The scopes a lock can have, in the order of settings.AXES_LOCKOUT_PARAMETERS.
PAIR, USER, ADDRESS = "username+ip_address", "username", "ip_address"


def client_ip(request: HttpRequest) -> str | None:
    """The address failures are counted against.

    REMOTE_ADDR, unless the deployment says a TLS proxy stands in front (BEHIND_TLS_PROXY):
    then REMOTE_ADDR is the proxy's own, and the client's is the last X-Forwarded-For
    entry, the one the proxy appended. Earlier entries are whatever the client sent, so
    they are never read; without the setting the header is ignored altogether, or anyone
    could dodge the per-address limit by sending a new one with every guess.
    """
    remote = request.META.get("REMOTE_ADDR")
    if not settings.BEHIND_TLS_PROXY:
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(forwarded))
    except ValueError:
        return remote


class LockoutHandler(AxesDatabaseHandler):
    """Axes' database handler with a limit of its own for each lockout parameter."""

    def get_failures(self, request: HttpRequest, credentials: dict | None = None) -> int:
        """Axes compares one number with one limit (AXES_FAILURE_LIMIT). Each parameter's
        count is scaled to that limit, rounding down, and the highest is reported: it
        reaches the limit exactly when some parameter reaches its own."""
        common = settings.AXES_FAILURE_LIMIT
        limits = settings.LOGIN_FAILURE_LIMITS.values()
        worst = 0
        for attempts, own in zip(self.get_user_attempts(request, credentials), limits, strict=True):
            failures = attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0
            worst = max(worst, failures * common // own)
        return worst

    def user_logged_in(self, sender, request, user, **kwargs) -> None:
        """The right password (while not locked) forgets that user's own failures, so old
        typing errors do not linger; other users' failures from the address stay."""
        super().user_logged_in(sender, request, user, **kwargs)
        AccessAttempt.objects.filter(username=user.get_username()).delete()


# --- what the person who is locked out reads -------------------------------------------


def locked_until(username: str | None, ip_address: str | None) -> datetime:
    """When the lock that refused this login ends, at the latest: attempts during a lock
    are not counted (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT), so it does not move."""
    now = timezone.now()
    cool_off = settings.AXES_COOLOFF_TIME
    latest = (
        AccessAttempt.objects.filter(Q(username=username) | Q(ip_address=ip_address))
        .filter(attempt_time__gte=now - cool_off)
        .aggregate(latest=Max("attempt_time"))["latest"]
    )
    return (latest or now) + cool_off


def locked_out_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    """The login page again, saying the login is locked, until when, and what to do.

    The same page for /admin/login/: Django's admin login is English only, and the person
    needs the message in their own language.
    """
    # axes_ip_address: set on the request by django-axes (which has no types).
    ip_address = request.axes_ip_address  # type: ignore[attr-defined]
    until = locked_until(get_client_username(request, credentials), ip_address)
    minutes = max(1, math.ceil((until - timezone.now()).total_seconds() / 60))
    context = {
        "form": AuthenticationForm(request),
        "locked_until": until,
        "locked_minutes": minutes,
        "next": request.POST.get("next", ""),
    }
    return TemplateResponse(
        request,
        "registration/login.html",
        context,
        # django-axes gives the setting its default; django-stubs knows only config.settings.
        status=settings.AXES_HTTP_RESPONSE_CODE,  # type: ignore[misc]  # 429 Too Many Requests
    ).render()


# --- what a global admin sees and lifts -------------------------------------------------


@dataclass(frozen=True)
class Lock:
    scope: str  # PAIR, USER or ADDRESS
    username: str
    ip_address: str
    failures: int
    until: datetime


def _recent() -> QuerySet[AccessAttempt]:
    return AccessAttempt.objects.filter(
        attempt_time__gte=timezone.now() - settings.AXES_COOLOFF_TIME
    )


def current_locks() -> list[Lock]:
    """Every lock in force now, as the handler counts them (one limit per scope)."""
    limits = settings.LOGIN_FAILURE_LIMITS
    cool_off = settings.AXES_COOLOFF_TIME
    locks = [
        Lock(
            PAIR,
            row.username or "",
            row.ip_address or "",
            row.failures_since_start,
            row.attempt_time + cool_off,
        )
        for row in _recent().filter(failures_since_start__gte=limits[PAIR])
    ]
    for scope, field in ((USER, "username"), (ADDRESS, "ip_address")):
        grouped = (
            _recent()
            .values(field)
            .annotate(failures=Sum("failures_since_start"), latest=Max("attempt_time"))
            .filter(failures__gte=limits[scope])
        )
        for row in grouped:
            value = row[field] or ""
            locks.append(
                Lock(
                    scope,
                    value if scope == USER else "",
                    value if scope == ADDRESS else "",
                    row["failures"],
                    row["latest"] + cool_off,
                )
            )
    return sorted(locks, key=lambda lock: lock.until, reverse=True)


def unlock(scope: str, username: str, ip_address: str) -> int:
    """Forget the failures behind one lock; the number of attempt rows removed."""
    if scope not in (PAIR, USER, ADDRESS):
        return 0
    attempts = AccessAttempt.objects.all()
    if scope in (PAIR, USER):
        attempts = attempts.filter(username=username)
    if scope in (PAIR, ADDRESS):
        attempts = attempts.filter(ip_address=ip_address)
    deleted, _by_model = attempts.delete()
    return deleted
