"""The alerts page and the header badge (S7.5).

Everything goes through `deliveries_for(user)`: a person sees only the alerts
addressed to them, and an org admin only while they are still that organization's
admin. Auditors are never addressed, so their page is empty.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.i18n import set_language

from alerts.forms import AlertPreferenceForm
from alerts.models import AlertPreference, AlertRecipient
from core import live

PAGE_SIZE = 50
# Each language as the reader calls it, inside a sentence ("written in norsk bokmål").
LANGUAGE_NAMES = {"en": gettext_lazy("English"), "nb": gettext_lazy("Norwegian Bokmål")}


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


@login_required
@require_http_methods(["GET", "POST"])
def alert_settings(request: HttpRequest) -> HttpResponse:
    """The person's own choice of alert e-mails (there is no one else's to reach here)."""
    preference = AlertPreference.of(request.user)
    form = AlertPreferenceForm(request.POST or None, instance=preference)
    if request.method == "POST" and form.is_valid():
        preference = form.save(commit=False)
        # Whoever never used the header's picker reads the app in this language.
        preference.language = preference.language or get_language()
        preference.save()
        messages.success(request, _("Alert settings saved."))
        return redirect("alert_settings")
    return render(
        request,
        "alerts/settings.html",
        {
            "form": form,
            "emails_enabled": settings.ALERT_EMAILS_ENABLED,
            "email": getattr(request.user, "email", ""),
            "language_name": LANGUAGE_NAMES.get(
                preference.language or get_language() or "", LANGUAGE_NAMES["en"]
            ),
            "digest_hour": settings.ALERT_DIGEST_HOUR,
            "time_zone": settings.TIME_ZONE,
        },
    )


@require_POST
def choose_language(request: HttpRequest) -> HttpResponse:
    """The header's language picker: Django's set_language (the cookie), and for a person
    logged in also their alert preferences, so that their e-mails follow."""
    response = set_language(request)
    language = request.POST.get("language", "")
    if request.user.is_authenticated and response.cookies.get(settings.LANGUAGE_COOKIE_NAME):
        AlertPreference.remember_language(request.user, language)
    return response
