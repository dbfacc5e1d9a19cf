"""How a live part of a page is refreshed without a reload (docs/architecture.md, "Live pages").

The part polls its fragment view with the version it shows (`?v=`). The view compares
that with `Organization.live_version` (read with the organization itself, which access
needs anyway): when nothing changed it answers 204 at once, with no further query, no
render and no swap. When there is nothing left to watch it answers 286, which tells
htmx to stop polling after it swaps in the final state.

What a page shows may also change with the clock alone (records turn overdue, a
connector stale), which `live_version` never sees. Such a page sends the moment of its
next change with its version (`versioned`): once that moment has passed, the poll counts
as changed and the part is rendered again. Checking it costs no query.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime

from django.http import HttpRequest, HttpResponse
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    """A request as django_htmx's middleware passes it on (for the type checker)."""

    htmx: HtmxDetails


# htmx stops polling an element whose request is answered with this status.
STOP_POLLING = 286


# Between a version and the moment (epoch seconds) its page changes with the clock.
UNTIL = "~"


def versioned(version: object, changes_at: datetime | None) -> str:
    """A version that also goes out of date at `changes_at` (see the module's doc)."""
    if changes_at is None:
        return str(version)
    return f"{version}{UNTIL}{math.ceil(changes_at.timestamp())}"


def unchanged(request: HttpRequest, version: object) -> bool:
    shown, _, until = request.GET.get("v", "").partition(UNTIL)
    if shown != str(version):
        return False
    if not until:
        return True
    # The page says when the clock changes what it shows; past that, render it again.
    return until.isdigit() and time.time() < int(until)


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
