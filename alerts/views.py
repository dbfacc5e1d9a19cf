"""The alerts page and the header badge (S7.5).

Everything goes through `deliveries_for(user)`: a person sees only the alerts
addressed to them, and an org admin only while they are still that organization's
admin. Auditors are never addressed, so their page is empty.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from alerts.models import AlertRecipient
from core import live

PAGE_SIZE = 50


def deliveries_for(user):
    return AlertRecipient.objects.for_user(user)


def unread_count(user) -> int:
    """The badge's number: one query on the partial index of unread deliveries."""
    return deliveries_for(user).unread().count()


def delivery_for(user, alert_id: int) -> AlertRecipient:
    """The person's copy of one alert, or 404 (also for alerts addressed to others)."""
    try:
        return deliveries_for(user).select_related("alert__organization").get(alert_id=alert_id)
    except AlertRecipient.DoesNotExist:
        raise Http404("No such alert.") from None


@login_required
@require_GET
def alert_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(deliveries_for(request.user).shown(), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(request, "alerts/alerts.html", {"page": page})


@require_GET
@live.poll
def alert_badge(request: live.HtmxHttpRequest) -> HttpResponse:
    """The header badge, polled with the count it shows (`?v=`): 204 while unchanged."""
    if not request.user.is_authenticated:
        if request.htmx:
            # Logged out in another tab: stop polling rather than swap the login page in.
            return HttpResponse(status=live.STOP_POLLING)
        return redirect_to_login(request)
    count = unread_count(request.user)
    if live.unchanged(request, count):
        return live.no_change()
    shown = request.GET.get("v", "")
    newest = None
    if shown.isdigit() and count > int(shown):
        # It rose: say so through the page's aria-live announcer, naming the newest.
        newest = (
            deliveries_for(request.user)
            .unread()
            .select_related("alert__organization")
            .order_by("-alert__opened_at", "-alert_id")
            .first()
        )
    return render(request, "alerts/_badge.html", {"alert_unread": count, "newest": newest})


def redirect_to_login(request: HttpRequest) -> HttpResponse:
    from django.contrib.auth.views import redirect_to_login as to_login

    return to_login(request.get_full_path())


@login_required
@require_POST
def mark_read(request: live.HtmxHttpRequest, alert_id: int) -> HttpResponse:
    delivery = delivery_for(request.user, alert_id)
    delivery.mark_read()
    return _answer(request, delivery)


@login_required
@require_POST
def dismiss(request: live.HtmxHttpRequest, alert_id: int) -> HttpResponse:
    delivery = delivery_for(request.user, alert_id)
    delivery.dismiss()
    return _answer(request, delivery)


def _answer(request: live.HtmxHttpRequest, delivery: AlertRecipient) -> HttpResponse:
    """htmx: the changed item and the header badge; without JavaScript: back to the page."""
    if not request.htmx:
        return redirect("alert_list")
    return render(
        request,
        "alerts/_changed.html",
        {"delivery": delivery, "alert_unread": unread_count(request.user)},
    )
