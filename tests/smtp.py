"""A real SMTP server (aiosmtpd) on this machine, for the tests of the alert e-mails.

It runs in a thread of the test process and keeps every message it is given. The app's
SMTP backend reaches it either in the test's own process (settings pointed at `port`,
tests/test_alert_emails.py) or from the production processes, a Celery worker of its own
(its environment pointed at it, tests/test_production_smoke.py). No TLS and no login:
EMAIL_USE_TLS and EMAIL_USE_SSL false, no user or password.
"""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage

from aiosmtpd.controller import Controller

HOST = "127.0.0.1"


class Inbox:
    """aiosmtpd's handler: keeps what it is given. Appended to from the server's thread,
    read from the test's (a list's append is atomic, and a test only polls its length)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.recipients.append(list(envelope.rcpt_tos))
        self.messages.append(parsed)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@contextmanager
def smtp_server() -> Iterator[Inbox]:
    """An SMTP server listening on HOST:<inbox.port> while the block runs."""
    inbox = Inbox(free_port())
    controller = Controller(inbox, hostname=HOST, port=inbox.port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


def subject_of(message: EmailMessage) -> str:
    """The Subject as a mail client shows it. A subject longer than a line is sent folded
    right after "Subject:" (Django leaves that to the email package), and the email
    parser of the Python we run keeps the fold's space at the start of the value (fixed
    upstream: CPython gh-124452); a mail client does not show it."""
    return str(message["Subject"]).lstrip()
