"""Alerts by e-mail (issue 16 item 5): who gets which e-mail, what it says, and sending it once.

Each person chooses in their alert settings (`AlertPreference`) which kinds of alert also
come by e-mail, at once or in a daily digest. At once means one e-mail when an alert opens
and one when it resolves, the same dedupe as in the app: an `Alert` row is one opening,
and `AlertEmail`'s unique constraints allow one e-mail per (opening, person, opened or
resolved) and one digest per person and day.

The guarantee, with Celery delivering each task at least once: an e-mail is sent again only
if its worker dies after the mail server took it and before the database recorded it (then
the person may get it twice); a task delivered again after that, or while another try is
under way, sends nothing. A try that fails at the mail server sends nothing and is retried
(alerts/tasks.py), so an e-mail is not lost to a server that is down for a while.

What an e-mail holds: the organization, the kind of problem, a sentence with counts and at
most the record's reference (`Alert.summary`: never the ERP's error text, which may quote a
claimant), and links back into the app. No secrets, no amounts, no names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext

from alerts.models import (
    Alert,
    AlertEmail,
    AlertPreference,
    AlertRecipient,
    AlertRecipientQuerySet,
)

logger = logging.getLogger(__name__)

Change = AlertEmail.Kind
# Mail that says it was sent by a program (RFC 3834): no out-of-office replies to it.
HEADERS = {"Auto-Submitted": "auto-generated"}
DIGEST_HOURS = 24


def absolute(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


# --- who ------------------------------------------------------------------------------------


def addressed(alert_id: int, change: str) -> AlertRecipientQuerySet:
    """The alert's recipients who may still see it; for its resolving, those who have not
    dismissed it (they said they are done with it)."""
    deliveries = AlertRecipient.objects.filter(alert_id=alert_id).still_addressed()
    if change == Change.RESOLVED:
        deliveries = deliveries.filter(dismissed_at__isnull=True)
    return deliveries.exclude(user__email="")


def recipients_at_once(alert_id: int, change: str) -> list[int]:
    """The people to e-mail now about this alert's opening or resolving."""
    kind = Alert.objects.filter(pk=alert_id).values_list("kind", flat=True).first()
    if kind is None:
        return []  # gone with its organization
    preferences = AlertPreference.objects.filter(
        user_id__in=addressed(alert_id, change).values("user_id"),
        delivery=AlertPreference.Delivery.AT_ONCE,
    )
    return sorted(
        p.user_id for p in preferences if p.wants_email(kind, AlertPreference.Delivery.AT_ONCE)
    )


def digest_recipients() -> list[int]:
    """Everyone who chose the daily digest for some kind and has an address."""
    preferences = AlertPreference.objects.filter(
        delivery=AlertPreference.Delivery.DAILY, user__is_active=True
    ).exclude(Q(user__email="") | Q(email_kinds=[]))
    return sorted(preferences.values_list("user_id", flat=True))


# --- sending once ---------------------------------------------------------------------------


class Busy(Exception):
    """Another try holds this e-mail; try again after `seconds`."""

    def __init__(self, seconds: int) -> None:
        super().__init__(f"another try holds this e-mail for {seconds} s")
        self.seconds = seconds


def send_alert_email(alert_id: int, user_id: int, change: str) -> bool:
    """E-mail one person about one alert opening or resolving, once; True if sent now.

    Asked again at sending time: whether the person still wants it and may still see it
    (they may have turned it off, or stopped being an admin, since it was queued).
    A mail server's refusal propagates (the task retries) and leaves the e-mail unsent.
    """
    if user_id not in recipients_at_once(alert_id, change):
        return False
    state, row = AlertEmail.claim(user_id, change, alert_id=alert_id)
    if state == AlertEmail.Claim.SENT:
        return False
    if state == AlertEmail.Claim.BUSY:
        raise Busy(row.busy_for())
    alert = Alert.objects.select_related("organization").get(pk=alert_id)
    user = get_user_model().objects.get(pk=user_id)
    _deliver(row, alert_message(alert, user, change))
    logger.info("alert %s: %s e-mail sent to user %s", alert_id, change, user_id)
    return True


def send_digest(user_id: int, day: date) -> bool:
    """The person's digest for this day, once; nothing when there is nothing to tell."""
    user = get_user_model().objects.get(pk=user_id)
    preference = AlertPreference.of(user)
    if preference.delivery != AlertPreference.Delivery.DAILY or not user.email:
        return False
    items = digest_items(user, preference, day)
    if not items:
        return False
    state, row = AlertEmail.claim(user_id, Change.DIGEST, digest_day=day)
    if state == AlertEmail.Claim.SENT:
        return False
    if state == AlertEmail.Claim.BUSY:
        raise Busy(row.busy_for())
    _deliver(row, digest_message(user, preference, day, items))
    logger.info("alert digest of %s sent to user %s (%s alerts)", day, user_id, len(items))
    return True


def _deliver(row: AlertEmail, message: EmailMultiAlternatives) -> None:
    try:
        message.send(fail_silently=False)
    except BaseException:
        row.release()
        raise
    row.mark_sent()


# --- the daily digest's window ---------------------------------------------------------------


def digest_day(now: datetime | None = None) -> date:
    """The day of the latest digest moment at or before now (a late beat still sends the
    digest of the day it was meant for, covering the same 24 hours)."""
    local = timezone.localtime(now or timezone.now(), ZoneInfo(settings.TIME_ZONE))
    if local.hour < settings.ALERT_DIGEST_HOUR:
        return local.date() - timedelta(days=1)
    return local.date()


def digest_window(day: date) -> tuple[datetime, datetime]:
    """The 24 hours a day's digest covers, ending at that day's digest hour."""
    until = datetime.combine(
        day, time(settings.ALERT_DIGEST_HOUR), tzinfo=ZoneInfo(settings.TIME_ZONE)
    )
    return until - timedelta(hours=DIGEST_HOURS), until


@dataclass(frozen=True)
class DigestItem:
    alert: Alert
    opened: bool  # opened within the window
    resolved: bool  # resolved within the window


def digest_items(user, preference: AlertPreference, day: date) -> list[DigestItem]:
    """The person's alerts, of the kinds they chose, opened or resolved in the window."""
    since, until = digest_window(day)
    opened = Q(alert__opened_at__gte=since, alert__opened_at__lt=until)
    resolved = Q(alert__resolved_at__gte=since, alert__resolved_at__lt=until)
    deliveries = (
        AlertRecipient.objects.filter(user=user, dismissed_at__isnull=True)
        .still_addressed()
        .filter(alert__kind__in=preference.email_kinds)
        .filter(opened | resolved)
        .select_related("alert__organization")
        .order_by("alert__organization__name", "alert__opened_at", "alert_id")
    )
    return [
        DigestItem(
            alert=d.alert,
            opened=since <= d.alert.opened_at < until,
            resolved=d.alert.resolved_at is not None and since <= d.alert.resolved_at < until,
        )
        for d in deliveries
    ]


# --- what the e-mails say ------------------------------------------------------------------


def alert_message(alert: Alert, user, change: str) -> EmailMultiAlternatives:
    """One alert's opening or resolving, in the person's language and the organization's
    time zone, as plain text with an HTML alternative."""
    preference = AlertPreference.of(user)
    with (
        translation.override(preference.email_language),
        timezone.override(ZoneInfo(alert.organization.time_zone)),
    ):
        context = {
            "alert": alert,
            "resolved": change == Change.RESOLVED,
            "kind": alert.get_kind_display(),
            "organization": alert.organization.name,
            "summary": alert.summary,
            "alert_url": absolute(reverse("alert_list")) + f"#alert-{alert.pk}",
            "problem_url": absolute(alert.link),
            "problem_label": alert.link_label,
            "settings_url": absolute(reverse("alert_settings")),
            "time_zone": alert.organization.time_zone,
        }
        words = {"kind": context["kind"], "organization": context["organization"]}
        if context["resolved"]:
            subject = gettext("Resolved: %(kind)s · %(organization)s") % words
        else:
            subject = gettext("Alert: %(kind)s · %(organization)s") % words
        return _message(subject, "alerts/email/alert", context, user.email, preference)


def digest_message(user, preference: AlertPreference, day: date, items: list[DigestItem]):
    with (
        translation.override(preference.email_language),
        timezone.override(ZoneInfo(settings.TIME_ZONE)),
    ):
        since, until = digest_window(day)
        context = {
            "items": [
                {
                    "item": item,
                    "kind": item.alert.get_kind_display(),
                    "organization": item.alert.organization.name,
                    "summary": item.alert.summary,
                    "alert_url": absolute(reverse("alert_list")) + f"#alert-{item.alert.pk}",
                }
                for item in items
            ],
            "opened": sum(item.opened for item in items),
            "resolved": sum(item.resolved for item in items),
            "since": since,
            "until": until,
            "alerts_url": absolute(reverse("alert_list")),
            "settings_url": absolute(reverse("alert_settings")),
            "time_zone": settings.TIME_ZONE,
        }
        subject = gettext(
            "Alerts of the last 24 hours: %(opened)s opened, %(resolved)s resolved"
        ) % {"opened": context["opened"], "resolved": context["resolved"]}
        return _message(subject, "alerts/email/digest", context, user.email, preference)


def _message(subject, template, context, to: str, preference) -> EmailMultiAlternatives:
    context = {**context, "language": preference.email_language}
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"{template}.txt", context),
        to=[to],
        headers=HEADERS,
    )
    message.attach_alternative(render_to_string(f"{template}.html", context), "text/html")
    return message
