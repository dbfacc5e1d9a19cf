"""Two checks on every request of a logged-in person: the idle timeout, the second factor.

Both work in process_view, where the view is known: a live part's poll is told apart by its
view's mark (core.live.poll), and the second factor's own pages by their names.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, resolve_url
from django.utils.translation import gettext as _
from django_htmx.http import HttpResponseClientRedirect

from accounts import two_factor
from core import live

# Session key: when the person last did something (Unix time).
LAST_SEEN = "last_seen"
# The time is written at most this often, so that a page view does not always write the
# session row; the timeout is that much coarser.
RENEW_AFTER_SECONDS = 60


def _go(request: HttpRequest, to: str) -> HttpResponse:
    """A redirect a live part follows too: htmx gets one for the whole page, not the
    login page swapped into a fragment."""
    if request.headers.get("HX-Request") == "true":
        return HttpResponseClientRedirect(to)
    return redirect(to)


def _with_next(url_name: str, request: HttpRequest) -> str:
    target = request.get_full_path()
    if request.headers.get("HX-Request") == "true":
        target = request.headers.get("HX-Current-URL", target)
    return f"{resolve_url(url_name)}?{urlencode({'next': target})}"


class SessionTimeoutMiddleware:
    """Logs out a session with no real activity for SESSION_IDLE_SECONDS.

    Live parts poll every few seconds; those requests neither count as activity nor are
    refused until the time is up: then the page is sent to the login page.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        if not request.user.is_authenticated:
            return None
        now = time.time()
        last_seen = request.session.get(LAST_SEEN)
        if last_seen is not None and now - last_seen > settings.SESSION_IDLE_SECONDS:
            logout(request)
            messages.info(
                request,
                _("You were logged out after %(minutes)d minutes without activity.")
                % {"minutes": settings.SESSION_IDLE_SECONDS // 60},
            )
            return _go(request, _with_next(settings.LOGIN_URL, request))
        if last_seen is None or (
            not live.is_poll(view_func) and now - last_seen >= RENEW_AFTER_SECONDS
        ):
            request.session[LAST_SEEN] = now
        return None


# Session key: what this session still owes, VERIFY, ENROL or "" (nothing).
OWED = "two_factor_owed"
VERIFY, ENROL = "two_factor_verify", "two_factor"
# Reachable while the second factor is still owed: its page, leaving, choosing a language,
# and the icon the browser fetches for the tab.
ALWAYS_OPEN = {"logout", "set_language", "admin:logout", "favicon"}
OPEN = {VERIFY: ALWAYS_OPEN | {VERIFY}, ENROL: ALWAYS_OPEN | {ENROL}}


def owed_by(user) -> str:
    """Someone with an app owes the login's second step; someone who must have one and
    has none owes setting it up; anyone else owes nothing."""
    if two_factor.has_device(user):
        return VERIFY
    if two_factor.required_for(user):
        return ENROL
    return ""


class TwoFactorMiddleware:
    """A session that owes the second factor reaches only the page that takes it.

    Someone with an authenticator app is sent to the login's second step; someone who must
    have one (global admins; admins of an organization that requires it) and has none, to
    setting it up. That covers Django's admin (/admin/) too.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        user = request.user
        # is_verified: django_otp's OTPMiddleware adds it to the user (django_otp has no types).
        if not user.is_authenticated or user.is_verified():  # type: ignore[attr-defined]
            return None
        owed = self._owed(request, user, poll=live.is_poll(view_func))
        if not owed:
            return None
        # The header hides the rest of the site on the pages that are open.
        request.two_factor_pending = True  # type: ignore[attr-defined]  # read by the header
        assert request.resolver_match is not None  # resolved before process_view
        if request.resolver_match.view_name in OPEN[owed]:
            return None
        return _go(request, _with_next(owed, request))

    @staticmethod
    def _owed(request: HttpRequest, user, *, poll: bool) -> str:
        """Worked out on every page view, remembered in the session for the live polls
        between them: a poll every 2 s stays at the access check's queries (README), and
        a change (an organization starting to require it) counts from the next page."""
        owed = request.session.get(OWED)
        if owed is None or not poll:
            owed = owed_by(user)
            if request.session.get(OWED) != owed:
                request.session[OWED] = owed
        return owed
