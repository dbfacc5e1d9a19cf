"""How a live part of a page is refreshed without a reload (docs/architecture.md, "Live pages").

The part polls its fragment view with the version it shows (`?v=`). The view compares
that with `Organization.live_version` (read with the organization itself, which access
needs anyway): when nothing changed it answers 204 at once, with no further query, no
render and no swap. When there is nothing left to watch it answers 286, which tells
htmx to stop polling after it swaps in the final state.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    """A request as django_htmx's middleware passes it on (for the type checker)."""

    htmx: HtmxDetails


# htmx stops polling an element whose request is answered with this status.
STOP_POLLING = 286


def unchanged(request: HttpRequest, version: object) -> bool:
    return request.GET.get("v") == str(version)


def no_change() -> HttpResponse:
    return HttpResponse(status=204)


def poll(view: Callable) -> Callable:
    """Marks a live part's fragment view. Its requests are the page refreshing itself, not
    the person doing something: they do not keep an idle session alive
    (accounts.middleware.SessionTimeoutMiddleware), or a forgotten tab never times out.
    Put it nearest the function: the decorators above copy the mark (functools.wraps)."""
    view.live_poll = True  # type: ignore[attr-defined]  # a mark on the function object
    return view


def is_poll(view: Callable) -> bool:
    return getattr(view, "live_poll", False)
