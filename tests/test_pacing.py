"""Issue 13 item 8: every worker paces its requests in one window per ERP credential, kept
in Redis (the broker CI runs on) or in the database (the embedded default), so connectors
that share a credential stay under the ERP's limit and steady state sends no 429."""

from __future__ import annotations

import threading
import time

import pytest
from django.conf import settings
from django.db import connection

from erp_sandbox.client import SandboxProcess
from integrations import connectors, pacing
from integrations.clients import http
from integrations.clients.base import Outcome
from integrations.clients.limits import LimitReached, Pacer, Rate
from integrations.models import Integration
from organizations.models import Organization
from tests.factories import configure

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("trust_erp_sandbox"),
]

WORKERS = 3
CALLS_EACH = 4
# The sandbox refuses a sixth request within a second (its burst_limit, the shape of
# Xledger's); the connectors are told the same limit.
LIMIT = Rate(5, 1)


class FullWindow:
    """A limiter whose window frees in `wait` seconds, `times` times, then admits."""

    def __init__(self, wait: float, times: int) -> None:
        self.wait, self.times, self.calls = wait, times, 0

    def admit(self, key: str, rate: Rate) -> float:
        self.calls += 1
        return self.wait if self.calls <= self.times else 0.0


def test_issue13_item8_a_request_waits_for_a_slot_and_then_goes() -> None:
    slept: list[float] = []
    pacer = Pacer(FullWindow(0.4, 2), "key", LIMIT, max_wait=5, sleep=slept.append)
    assert pacer.before_request() == pytest.approx(0.8)
    assert slept == [0.4, 0.4]


def test_issue13_item8_past_the_longest_wait_the_request_is_not_sent_and_says_when() -> None:
    pacer = Pacer(FullWindow(20, 5), "key", LIMIT, max_wait=30, sleep=lambda _: None)
    with pytest.raises(LimitReached) as raised:
        pacer.before_request()
    assert raised.value.wait == 20  # one wait of 20 s fits, a second would not


def test_issue13_item8_a_held_back_request_is_rate_limited_before_a_byte_is_sent() -> None:
    failure = http.classify_failure(http.AddressRefused(http._paced_failure(12)))
    assert failure.outcome is Outcome.RATE_LIMITED
    assert failure.cause is http.Cause.PACED
    assert failure.retry_after == 12


def _hammer(organization: Organization, errors: list[BaseException]) -> None:
    """One worker: its own connector (as build_connector makes it), several reads."""
    try:
        integration = Integration.objects.get(organization_id=organization.pk)
        connector = integration.build_connector()
        for _ in range(CALLS_EACH):
            connector.list_accounts()
    except BaseException as problem:  # reported to the test's thread
        errors.append(problem)
    finally:
        connection.close()


def _run_workers(organization: Organization) -> tuple[list[BaseException], float]:
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_hammer, args=(organization, errors)) for _ in range(WORKERS)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors, time.monotonic() - started


@pytest.fixture
def limited(erp_sandbox: SandboxProcess, org: Organization, monkeypatch) -> Organization:
    erp_sandbox.set_faults(burst_limit={"requests": LIMIT.requests, "per_seconds": 1})
    monkeypatch.setattr(connectors, "XLEDGER_RATE", LIMIT)
    configure(org, erp_sandbox)
    return org


def test_issue13_item8_workers_sharing_a_credential_meet_no_429(
    limited: Organization, erp_sandbox: SandboxProcess, settings
) -> None:
    """Redis when the broker is Redis (CI), else the database: the same window for all."""
    settings.ERP_PACING_URL = (
        settings.CELERY_BROKER_URL if settings.CELERY_BROKER_URL.startswith("redis") else ""
    )
    pacing._limiter.cache_clear()

    errors, took = _run_workers(limited)

    assert errors == []
    counts = erp_sandbox.requests()["xledger"]
    assert counts["rate_limited"] == 0
    assert counts["ok"] == WORKERS * CALLS_EACH
    # Twelve requests at five per window cannot take less than two windows.
    assert took >= 2 * LIMIT.per_seconds


def test_issue13_item8_unpaced_the_same_workers_meet_the_limit(
    limited: Organization, erp_sandbox: SandboxProcess
) -> None:
    """The control: what pacing prevents does happen without it."""
    assert settings.ERP_PACING_URL == "off"  # the suite's default (conftest)

    errors, _took = _run_workers(limited)

    assert errors, "some reads should have been refused with the burst limit"
    assert erp_sandbox.requests()["xledger"]["rate_limited"] > 0


def test_issue13_item8_the_database_window_serves_the_embedded_default(
    limited: Organization, erp_sandbox: SandboxProcess, settings
) -> None:
    settings.ERP_PACING_URL = ""
    pacing._limiter.cache_clear()

    errors, _took = _run_workers(limited)

    assert errors == []
    assert erp_sandbox.requests()["xledger"]["rate_limited"] == 0
