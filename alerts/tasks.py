"""The alerts' Celery tasks: the periodic check (beat: `alerts-check`), the alert e-mails
and the daily digest (beat: `alerts-digest`), both in config/settings.py."""

from __future__ import annotations

from datetime import date

from celery import Task, shared_task

from alerts import mail, rules

# A mail server that is down or refuses for a while (any smtplib.SMTPException, a refused
# or dropped connection, a TLS failure: all OSError) is tried again after about 1, 2, 4 …
# minutes, at most an hour apart, 8 times (about 3 hours in all); then the e-mail is
# given up and the worker logs the failure. The alert stays in the app either way.
RETRY_ON = (OSError,)
BACKOFF_SECONDS = 60
BACKOFF_MAX_SECONDS = 3600
MAX_RETRIES = 8


@shared_task(ignore_result=True)
def check_alerts() -> None:
    """Open and resolve what time alone changes (S7.2's window, S7.3's 48 hours, S7.4).

    Safe to run twice at once: opening is refused by the database for a problem that
    already has an open alert, and resolving twice sets the same thing.
    """
    rules.periodic_check()


def queue_alert_emails(alert_id: int, change: str) -> None:
    """After an alert opened or resolved (rules.email_after_commit): one task per person
    who wants an e-mail at once, so that one mailbox's trouble retries only its e-mail."""
    for user_id in mail.recipients_at_once(alert_id, change):
        send_alert_email.delay(alert_id, user_id, change)


@shared_task(
    bind=True,
    ignore_result=True,
    autoretry_for=RETRY_ON,
    retry_backoff=BACKOFF_SECONDS,
    retry_backoff_max=BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
)
def send_alert_email(self: Task, alert_id: int, user_id: int, change: str) -> None:
    try:
        mail.send_alert_email(alert_id, user_id, change)
    except mail.Busy as busy:
        raise self.retry(countdown=busy.seconds) from busy


@shared_task(ignore_result=True)
def send_digests() -> None:
    """Every day at ALERT_DIGEST_HOUR: one task per person who chose the digest."""
    day = mail.digest_day().isoformat()
    for user_id in mail.digest_recipients():
        send_digest_email.delay(user_id, day)


@shared_task(
    bind=True,
    ignore_result=True,
    autoretry_for=RETRY_ON,
    retry_backoff=BACKOFF_SECONDS,
    retry_backoff_max=BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
)
def send_digest_email(self: Task, user_id: int, day: str) -> None:
    try:
        mail.send_digest(user_id, date.fromisoformat(day))
    except mail.Busy as busy:
        raise self.retry(countdown=busy.seconds) from busy
