"""Alerts by e-mail (issue 16 item 5, S7): who is mailed, in which language, exactly once per
alert opening and resolving, the daily digest, retries when the mail server fails, and one
e-mail through a real SMTP server (aiosmtpd) on this machine.

Mail goes through Django's locmem backend (`mailoutbox`) unless a test says otherwise; the
Celery tasks run eagerly in the test (`eager`), retries included (their countdown is not
waited for), and the commit that opens an alert is stood in for by
`django_capture_on_commit_callbacks(execute=True)`.
"""

from __future__ import annotations

import random
import smtplib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail as django_mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from alerts import mail, rules, tasks
from alerts.models import Alert, AlertEmail, AlertPreference, AlertRecipient
from config.celery import app as celery_app
from tests import smtp
from tests.conftest import make_user
from tests.smtp import Inbox

Kind = Alert.Kind
Delivery = AlertPreference.Delivery
SITE = "https://ledger.example.no"
# What an ERP may say about a record: a claimant's name, which no e-mail may carry.
ERP_ERROR = "Supplier Kari Nordmann has no bank account 1234.56.78903"


@pytest.fixture(autouse=True)
def _site(settings) -> None:
    settings.SITE_URL = SITE
    settings.ALERT_EMAILS_ENABLED = True


@pytest.fixture
def eager() -> Iterator[None]:
    """Celery tasks run in the test's thread, as a worker would run them."""
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = False


def person(username: str, org, *, kinds=(), delivery=Delivery.AT_ONCE, language="en", address=True):
    user = make_user(username, organization=org, role="admin")
    if address:
        user.email = f"{username}@example.org"
        user.save(update_fields=["email"])
    if kinds:
        AlertPreference.objects.create(
            user=user, email_kinds=list(kinds), delivery=delivery, language=language
        )
    return user


def open_failing(org, n: int = 17, *, now=None) -> Alert:
    alert = rules.open_alert(
        org.pk,
        Kind.RECORD_FAILING,
        {
            "reference": f"VH-{org.pk}-{n}",
            "record_kind": "reimbursement",
            "attempts": 3,
            "error": ERP_ERROR,
        },
        key=rules.record_key(n),
        now=now,
    )
    assert alert is not None
    return alert


def html_of(message) -> str:
    (html, mimetype), *_ = message.alternatives
    assert mimetype == "text/html"
    return html


# --- at once: one e-mail when an alert opens, one when it resolves ------------------------------


def test_issue16_5_s7_1_opening_mails_each_opted_in_admin_once_in_their_language(
    org, eager, mailoutbox, django_capture_on_commit_callbacks
):
    english = person("ingrid", org, kinds=[Kind.RECORD_FAILING])
    norwegian = person("ola", org, kinds=[Kind.RECORD_FAILING], language="nb")

    with django_capture_on_commit_callbacks(execute=True):
        alert = open_failing(org)

    assert sorted(m.to[0] for m in mailoutbox) == [english.email, norwegian.email]
    by_address = {m.to[0]: m for m in mailoutbox}
    en, nb = by_address[english.email], by_address[norwegian.email]

    assert en.subject == "Alert: Record keeps failing · Blindeforbundet"
    assert f"Reimbursement VH-{org.pk}-17 failed 3 attempts in a row." in en.body
    assert f"{SITE}/alerts/#alert-{alert.pk}" in en.body  # back to the alert, absolute
    assert f"{SITE}/orgs/blindeforbundet/failed/" in en.body
    assert f'href="{SITE}/alerts/#alert-{alert.pk}"' in html_of(en)
    assert '<html lang="en">' in html_of(en)
    assert en.extra_headers["Auto-Submitted"] == "auto-generated"

    assert nb.subject == "Varsel: Bilag feiler gang på gang · Blindeforbundet"
    assert f"Refusjon VH-{org.pk}-17 har feilet 3 forsøk på rad." in nb.body
    assert '<html lang="nb">' in html_of(nb)

    for message in mailoutbox:  # the record's reference, never what the ERP said about it
        assert "Kari Nordmann" not in message.body + html_of(message)
        assert "1234.56.78903" not in message.body + html_of(message)
    rows = AlertEmail.objects.filter(alert=alert, kind=AlertEmail.Kind.OPENED)
    assert rows.count() == 2 and all(row.sent_at for row in rows)


def test_issue16_5_s7_4_resolving_mails_once_and_a_second_resolve_nothing(
    org, eager, mailoutbox, django_capture_on_commit_callbacks
):
    admin = person("ingrid", org, kinds=[Kind.RECORD_FAILING])
    with django_capture_on_commit_callbacks(execute=True):
        alert = open_failing(org)
    mailoutbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        rules.resolve([org.pk], Kind.RECORD_FAILING, keys=[rules.record_key(17)])
        rules.resolve([org.pk], Kind.RECORD_FAILING, keys=[rules.record_key(17)])  # again

    (resolved,) = mailoutbox
    assert resolved.to == [admin.email]
    assert resolved.subject == "Resolved: Record keeps failing · Blindeforbundet"
    assert "The alert has resolved itself" in resolved.body
    assert AlertEmail.objects.get(alert=alert, kind=AlertEmail.Kind.RESOLVED).sent_at


def test_issue16_5_a_redelivered_task_sends_no_second_email(org, eager, mailoutbox):
    admin = person("ingrid", org, kinds=[Kind.RECORD_FAILING])
    alert = open_failing(org)  # no commit in this test: the task is delivered by hand

    for _delivery in range(3):  # the broker hands the same message out again
        tasks.send_alert_email.apply(args=(alert.pk, admin.pk, AlertEmail.Kind.OPENED))

    assert len(mailoutbox) == 1
    row = AlertEmail.objects.get(alert=alert, user=admin)
    assert row.tries == 1 and row.sent_at is not None


def test_issue16_5_a_copy_arriving_during_a_try_waits_and_a_dead_try_is_taken_over(org, mailoutbox):
    admin = person("ingrid", org, kinds=[Kind.RECORD_FAILING])
    alert = open_failing(org)
    # A worker claimed the e-mail and is sending it (or died doing so).
    AlertEmail.objects.create(
        alert=alert, user=admin, kind=AlertEmail.Kind.OPENED, claimed_at=timezone.now(), tries=1
    )

    with pytest.raises(mail.Busy) as busy:
        mail.send_alert_email(alert.pk, admin.pk, AlertEmail.Kind.OPENED)
    assert 0 < busy.value.seconds <= AlertEmail.CLAIM_SECONDS
    assert mailoutbox == []

    later = timezone.now() + timedelta(seconds=AlertEmail.CLAIM_SECONDS + 1)
    with time_machine.travel(later):
        assert mail.send_alert_email(alert.pk, admin.pk, AlertEmail.Kind.OPENED) is True
    assert len(mailoutbox) == 1


def test_issue16_5_people_who_did_not_choose_the_kind_get_no_email(
    org, other_org, eager, mailoutbox, django_capture_on_commit_callbacks
):
    person("no-choice", org)  # never opened the settings: in-app only
    person("other-kinds", org, kinds=[Kind.MANY_ERRORS, Kind.PENDING_TOO_LONG])
    person("digest", org, kinds=[Kind.RECORD_FAILING], delivery=Delivery.DAILY)
    person("no-address", org, kinds=[Kind.RECORD_FAILING], address=False)
    person("other-org", other_org, kinds=[Kind.RECORD_FAILING])
    gone = person("no-longer-admin", org, kinds=[Kind.RECORD_FAILING])

    with django_capture_on_commit_callbacks(execute=True):
        alert = open_failing(org)
        gone.memberships.all().delete()  # stopped being the organization's admin

    assert mailoutbox == []
    assert AlertRecipient.objects.filter(alert=alert).count() == 5  # all still see it in-app
    assert not AlertEmail.objects.exists()


def test_issue16_5_an_alert_rolled_back_with_its_transaction_mails_nobody(
    org, eager, mailoutbox, django_capture_on_commit_callbacks
):
    person("ingrid", org, kinds=[Kind.RECORD_FAILING])

    with django_capture_on_commit_callbacks(execute=True) as queued:
        try:
            with transaction.atomic():
                open_failing(org)
                raise RuntimeError("the sync's batch failed to write")
        except RuntimeError:
            pass

    assert queued == [] and mailoutbox == []
    assert not Alert.objects.exists()


def test_issue16_5_the_alerts_own_hooks_queue_nothing_when_email_is_off(
    org, eager, mailoutbox, django_capture_on_commit_callbacks, settings
):
    settings.ALERT_EMAILS_ENABLED = False  # production without EMAIL_HOST
    person("ingrid", org, kinds=[Kind.RECORD_FAILING])
    with django_capture_on_commit_callbacks(execute=True) as queued:
        open_failing(org)
    assert queued == [] and mailoutbox == []


# --- the mail server fails: retried, bounded ---------------------------------------------------


class FlakyBackend(LocmemBackend):
    """The mail server drops the connection `failures` times, then takes the mail."""

    failures = 0
    calls = 0

    def send_messages(self, messages):
        FlakyBackend.calls += 1
        if FlakyBackend.calls <= FlakyBackend.failures:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return super().send_messages(messages)


@pytest.fixture
def flaky(settings) -> type[FlakyBackend]:
    settings.EMAIL_BACKEND = f"{__name__}.FlakyBackend"
    FlakyBackend.calls = 0
    return FlakyBackend


def test_issue16_5_an_smtp_failure_is_retried_and_the_email_sent_once(
    org, eager, flaky, django_capture_on_commit_callbacks
):
    flaky.failures = 2
    admin = person("ingrid", org, kinds=[Kind.RECORD_FAILING])

    with django_capture_on_commit_callbacks(execute=True):
        alert = open_failing(org)

    assert flaky.calls == 3
    (sent,) = django_mail.outbox
    assert sent.to == [admin.email]
    row = AlertEmail.objects.get(alert=alert, user=admin)
    assert row.tries == 3 and row.sent_at is not None and row.claimed_at is None


def test_issue16_5_retries_back_off_and_end_the_alert_stays_in_the_app(
    org, eager, flaky, django_capture_on_commit_callbacks, monkeypatch
):
    flaky.failures = 1000  # the server never comes back
    admin = person("ingrid", org, kinds=[Kind.RECORD_FAILING])
    # The countdowns a worker would wait (an eager retry runs at once): jitter at its top.
    monkeypatch.setattr(random, "randrange", lambda stop: stop - 1)  # as celery.utils.time
    countdowns: list[int] = []
    task: Any = tasks.send_alert_email
    original_retry = task.retry

    def recording_retry(*args: Any, **kwargs: Any):
        countdowns.append(kwargs["countdown"])
        return original_retry(*args, **kwargs)

    monkeypatch.setattr(task, "retry", recording_retry)

    with django_capture_on_commit_callbacks(execute=True):
        alert = open_failing(org)

    assert flaky.calls == tasks.MAX_RETRIES + 1  # bounded: the first try and 8 retries
    # Doubling from a minute, at most an hour; the ninth retry is refused (the task fails).
    assert countdowns[: tasks.MAX_RETRIES] == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert django_mail.outbox == []
    row = AlertEmail.objects.get(alert=alert, user=admin)
    assert row.sent_at is None and row.claimed_at is None  # free for a later try
    assert AlertRecipient.objects.for_user(admin).unread().count() == 1


# --- the daily digest ---------------------------------------------------------------------------

DAY = date(2026, 3, 10)
# 07:00 in Oslo (CET, UTC+1) on DAY: the digest covers the 24 hours before it.
DIGEST_AT = datetime(2026, 3, 10, 6, 0, 20, tzinfo=UTC)


def test_issue16_5_the_digest_gathers_the_last_24_hours_chosen_kinds_in_one_email(
    org, eager, mailoutbox
):
    reader = person(
        "ingrid", org, kinds=[Kind.RECORD_FAILING, Kind.MANY_ERRORS], delivery=Delivery.DAILY
    )
    opened = open_failing(org, 1, now=datetime(2026, 3, 9, 10, 0, tzinfo=UTC))
    resolved = open_failing(org, 2, now=datetime(2026, 3, 8, 12, 0, tzinfo=UTC))
    rules.resolve(
        [org.pk],
        Kind.RECORD_FAILING,
        keys=[rules.record_key(2)],
        now=datetime(2026, 3, 9, 20, 0, tzinfo=UTC),
    )
    open_failing(org, 3, now=datetime(2026, 3, 8, 5, 0, tzinfo=UTC))  # before the window
    open_failing(org, 4, now=datetime(2026, 3, 10, 6, 30, tzinfo=UTC))  # after it
    rules.open_alert(  # in the window, a kind not chosen
        org.pk,
        Kind.PENDING_TOO_LONG,
        {"count": 2, "hours": 48},
        now=datetime(2026, 3, 9, 11, 0, tzinfo=UTC),
    )

    with time_machine.travel(DIGEST_AT):
        tasks.send_digests.apply()

    (digest,) = mailoutbox
    assert digest.to == [reader.email]
    assert digest.subject == "Alerts of the last 24 hours: 1 opened, 1 resolved"
    assert f"VH-{org.pk}-1 failed 3 attempts" in digest.body
    assert f"VH-{org.pk}-2 failed 3 attempts" in digest.body
    for left_out in (f"VH-{org.pk}-3 ", f"VH-{org.pk}-4 ", "waited more than"):
        assert left_out not in digest.body
    assert f"{SITE}/alerts/#alert-{opened.pk}" in digest.body
    assert f'href="{SITE}/alerts/#alert-{resolved.pk}"' in html_of(digest)
    assert (
        "Your alerts from 2026-03-09 07:00 to 2026-03-10 07:00 (Europe/Oslo): "
        "1 opened, 1 resolved." in digest.body
    )
    assert "Record keeps failing (resolved)" in digest.body
    assert "Record keeps failing (opened)" in digest.body

    with time_machine.travel(DIGEST_AT + timedelta(hours=3)):  # beat or task again that day
        tasks.send_digests.apply()
        tasks.send_digest_email.apply(args=(reader.pk, DAY.isoformat()))
    assert len(mailoutbox) == 1
    assert AlertEmail.objects.get(kind=AlertEmail.Kind.DIGEST).digest_day == DAY


def test_issue16_5_the_digest_sends_nothing_on_a_quiet_day(org, eager, mailoutbox):
    person("ingrid", org, kinds=[Kind.RECORD_FAILING], delivery=Delivery.DAILY)
    open_failing(org, 1, now=datetime(2026, 3, 7, 10, 0, tzinfo=UTC))  # days before

    with time_machine.travel(DIGEST_AT):
        tasks.send_digests.apply()

    assert mailoutbox == []
    assert not AlertEmail.objects.exists()


def test_issue16_5_a_late_digest_covers_the_day_it_was_meant_for(settings):
    before_the_hour = datetime(2026, 3, 10, 5, 59, tzinfo=UTC)  # 06:59 in Oslo
    assert mail.digest_day(before_the_hour) == date(2026, 3, 9)
    assert mail.digest_day(DIGEST_AT + timedelta(hours=5)) == DAY
    since, until = mail.digest_window(DAY)
    assert (since, until) == (
        datetime(2026, 3, 9, 6, 0, tzinfo=UTC),
        datetime(2026, 3, 10, 6, 0, tzinfo=UTC),
    )
    _since, summer_until = mail.digest_window(date(2026, 7, 1))  # CEST: UTC+2
    assert summer_until == datetime(2026, 7, 1, 5, 0, tzinfo=UTC)


# --- the person's language and settings ---------------------------------------------------------


def test_issue16_5_choosing_a_language_in_the_header_is_kept_for_the_emails(
    admin_client, org_admin, client
):
    response = admin_client.post(reverse("set_language"), {"language": "nb", "next": "/alerts/"})
    assert response.status_code == 302
    assert AlertPreference.objects.get(user=org_admin).language == "nb"
    assert AlertPreference.of(org_admin).email_kinds == []  # still in-app only

    admin_client.post(reverse("set_language"), {"language": "de", "next": "/"})  # not offered
    assert AlertPreference.objects.get(user=org_admin).language == "nb"

    client.post(reverse("set_language"), {"language": "en", "next": "/"})  # nobody logged in
    assert AlertPreference.objects.count() == 1


def test_issue16_5_the_settings_page_saves_only_ones_own_choices(org, admin_client, org_admin):
    colleague = person("ola", org, kinds=[Kind.PENDING_TOO_LONG])
    url = reverse("alert_settings")

    page = admin_client.get(url)
    assert page.status_code == 200
    assert 'value="record_failing"' in page.content.decode()
    assert not AlertPreference.objects.filter(user=org_admin).exists()  # defaults, unsaved

    response = admin_client.post(
        url, {"email_kinds": [Kind.MANY_ERRORS, Kind.RECORD_FAILING], "delivery": "daily"}
    )
    assert response.status_code == 302 and response.url == url
    mine = AlertPreference.objects.get(user=org_admin)
    assert mine.email_kinds == [Kind.RECORD_FAILING, Kind.MANY_ERRORS]
    assert mine.delivery == Delivery.DAILY
    assert mine.language == "en"  # the language the page was read in
    assert AlertPreference.objects.get(user=colleague).email_kinds == [Kind.PENDING_TOO_LONG]

    refused = admin_client.post(url, {"email_kinds": ["everything"], "delivery": "hourly"})
    assert refused.status_code == 200
    assert AlertPreference.objects.get(user=org_admin).delivery == Delivery.DAILY


# --- a real SMTP server ---------------------------------------------------------------------------


@pytest.fixture
def smtp_server(settings) -> Iterator[Inbox]:
    """A real SMTP server in a thread of this test, and the app's SMTP backend pointed at it."""
    with smtp.smtp_server() as inbox:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = smtp.HOST
        settings.EMAIL_PORT = inbox.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.DEFAULT_FROM_EMAIL = "Voluntary Ledger <alerts@ledger.example.no>"
        yield inbox


def test_issue16_5_an_opened_alert_arrives_at_a_real_smtp_server(
    org, eager, smtp_server, django_capture_on_commit_callbacks
):
    admin = person("ingrid", org, kinds=[Kind.RECORD_FAILING])

    with django_capture_on_commit_callbacks(execute=True):
        alert = open_failing(org)

    assert smtp_server.recipients == [[admin.email]]
    (received,) = smtp_server.messages
    assert received["Subject"] == "Alert: Record keeps failing · Blindeforbundet"
    assert received["From"] == "Voluntary Ledger <alerts@ledger.example.no>"
    assert received["Auto-Submitted"] == "auto-generated"
    assert received.get_content_type() == "multipart/alternative"
    text = received.get_body(("plain",))
    html = received.get_body(("html",))
    assert text is not None and html is not None
    assert f"{SITE}/alerts/#alert-{alert.pk}" in text.get_content()
    assert f'href="{SITE}/alerts/#alert-{alert.pk}"' in html.get_content()
    assert AlertEmail.objects.get(alert=alert, user=admin).sent_at is not None
