"""What happens at login and at a lockout, whichever login page was used."""

from __future__ import annotations

import time
from datetime import timedelta

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone

from accounts.middleware import LAST_SEEN, OWED, owed_by
from audit.models import AdminAction


@receiver(user_logged_in)
def start_session(sender, request: HttpRequest, user, **kwargs) -> None:
    """A session ends SESSION_COOKIE_AGE after login however active it is (a fixed date,
    which saving the session does not push back), and the idle clock starts now."""
    request.session.set_expiry(timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE))
    request.session[LAST_SEEN] = time.time()
    # What the second factor asks of this session, known from the first page on.
    request.session[OWED] = owed_by(user)


@receiver(user_locked_out)
def record_lockout(sender, request: HttpRequest, username: str | None, ip_address, **kwargs):
    """A new lock goes in the platform's administrative trail.

    Axes also sends this for each try while a lock holds; only the failure that set the
    lock has been counted (axes_failures_since_start is set only then).
    """
    if getattr(request, "axes_failures_since_start", None) is None:
        return
    AdminAction.record(
        None,
        None,
        AdminAction.Kind.LOGIN_LOCKED,
        username=username or "",
        ip_address=ip_address or "",
        via=request.path,
    )
