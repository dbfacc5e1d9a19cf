"""The operators' endpoints (issue 16): /healthz, /readyz, /metrics, and the log lines.

The whole production setup (gunicorn, separate worker and beat, PostgreSQL, Redis) is in
tests/test_production_smoke.py; these check each part on its own, quickly.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from accounting_sync.models import WorkerHeartbeat
from config.logging import JsonLines, PlainWithContext, WithContext
from core import logcontext
from erp_sandbox.client import SandboxProcess
from ops import health
from ops.middleware import PROBES
from tests.conftest import make_user
from tests.factories import configure, make_records, sync

TOKEN = "t" * 40


def alive(*, worker_age: timedelta = timedelta(seconds=10), beat_age=timedelta(seconds=10)):
    """A worker's heartbeat and beat's last send of it, this long ago."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        hostname="celery@secret-host-name", defaults={"seen_at": now - worker_age}
    )
    every, _ = IntervalSchedule.objects.get_or_create(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(
        name=health.HEARTBEAT_TASK,
        defaults={
            "task": "accounting_sync.tasks.record_worker_heartbeat",
            "interval": every,
            "last_run_at": now - beat_age,
        },
    )


def readyz(client: Client | None = None) -> tuple[int, dict]:
    response = (client or Client()).get("/readyz")
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    return response.status_code, json.loads(response.content)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics answer, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(settings) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    settings.METRICS_TOKEN = TOKEN
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return samples(response.content.decode())


# --- /healthz, /readyz ---------------------------------------------------------------------


def test_the_probes_are_answered_at_the_paths_the_urls_name() -> None:
    for name in ("healthz", "readyz", "metrics"):
        assert reverse(name) in PROBES


@pytest.mark.django_db
def test_healthz_says_the_process_answers_without_asking_the_database(
    django_assert_num_queries,
) -> None:
    with django_assert_num_queries(0):
        response = Client().get("/healthz")
    assert response.status_code == 200
    assert json.loads(response.content)["status"] == "ok"


@pytest.mark.django_db
def test_readyz_is_ok_when_database_broker_worker_and_beat_are(django_assert_num_queries) -> None:
    alive()
    with django_assert_num_queries(3):  # SELECT 1, the heartbeat, beat's last send
        status, body = readyz()
    assert status == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "worker", "beat"}
    for check in body["checks"].values():
        assert check["status"] == "ok" and check["took_ms"] >= 0
    assert body["checks"]["worker"]["age_seconds"] == pytest.approx(10, abs=5)
    assert "secret-host-name" not in json.dumps(body)  # no host names


@pytest.mark.django_db
def test_readyz_is_503_naming_a_worker_silent_for_over_five_minutes() -> None:
    alive(worker_age=timedelta(minutes=5, seconds=5))
    status, body = readyz()
    assert status == 503
    assert body["status"] == "fail"
    assert body["checks"]["worker"]["status"] == "fail"
    assert body["checks"]["worker"]["limit_seconds"] == 300
    assert [name for name, c in body["checks"].items() if c["status"] == "ok"] == [
        "database",
        "broker",
        "beat",
    ]


@pytest.mark.django_db
def test_readyz_is_503_when_beat_has_missed_the_heartbeat_interval() -> None:
    # The worker beat 30 s ago, but beat has sent nothing for two and a half minutes.
    alive(worker_age=timedelta(seconds=30), beat_age=timedelta(seconds=150))
    status, body = readyz()
    assert status == 503
    assert body["checks"]["beat"]["status"] == "fail"
    assert body["checks"]["worker"]["status"] == "ok"


@pytest.mark.django_db
def test_readyz_is_503_without_any_heartbeat_yet() -> None:
    status, body = readyz()
    assert status == 503
    assert body["checks"]["worker"] == {
        "status": "fail",
        "took_ms": body["checks"]["worker"]["took_ms"],
        "last_seen": None,
        "limit_seconds": 300,
    }


@pytest.mark.django_db
def test_an_unreachable_broker_is_named_without_its_address_or_password(settings) -> None:
    alive()
    settings.CELERY_BROKER_URL = "redis://:hunter2-password@127.0.0.1:1/0"
    status, body = readyz()
    assert status == 503
    assert body["checks"]["broker"]["status"] == "fail"
    assert body["checks"]["broker"]["error"] == "ConnectionError"
    assert "hunter2" not in json.dumps(body) and "127.0.0.1" not in json.dumps(body)


@pytest.mark.django_db
def test_probes_pass_the_second_factor_idle_timeout_https_redirect_and_host_check(
    settings,
) -> None:
    """A load balancer probes http://10.0.0.5:8000/readyz: no https, an address for a host.
    And a browser of someone who still owes the second factor gets JSON, not a redirect."""
    alive()
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["ledger.example.no"]
    probe = Client(HTTP_HOST="10.0.0.5:8000")
    assert probe.get("/healthz").status_code == 200
    assert readyz(probe)[0] == 200
    # Anything else on that address is still refused (Host check) or sent to https.
    assert probe.get(reverse("login")).status_code == 400

    settings.ALLOWED_HOSTS = ["testserver"]
    settings.SECURE_SSL_REDIRECT = False
    owes_enrolment = make_user("platform", superuser=True)  # a global admin without an app
    browser = Client()
    browser.force_login(owes_enrolment)
    assert browser.get(reverse("overview")).status_code == 302  # the site sends them to 2FA
    status, _body = readyz(browser)
    assert status == 200
    # No session written: a probe neither keeps an idle session alive nor sets a cookie.
    assert "sessionid" not in browser.get("/readyz").cookies


def test_the_probes_refuse_writes() -> None:
    assert Client().post("/healthz").status_code == 405


# --- /metrics ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_are_a_404_until_a_token_or_network_is_set(settings) -> None:
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = []
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


@pytest.mark.django_db
def test_metrics_need_the_token(settings) -> None:
    settings.METRICS_TOKEN = TOKEN
    assert Client().get("/metrics").status_code == 401
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer " + "x" * 40)
    assert wrong.status_code == 401 and wrong["WWW-Authenticate"].startswith("Bearer")
    odd = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer bl\u00e5b\u00e6r")
    assert odd.status_code == 401
    right = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert right.status_code == 200
    assert b"voluntary_ledger_records{" in right.content


@pytest.mark.django_db
def test_metrics_from_an_allowed_network_only_by_the_direct_peer(settings) -> None:
    import ipaddress

    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("10.20.0.0/16")]
    assert Client(REMOTE_ADDR="10.20.3.4").get("/metrics").status_code == 200
    outside = Client(REMOTE_ADDR="192.0.2.9", HTTP_X_FORWARDED_FOR="10.20.3.4")
    assert outside.get("/metrics").status_code == 401


@pytest.mark.django_db
def test_metrics_count_records_received_and_show_them_waiting(settings, org, api_key) -> None:
    before = scrape(settings)
    received = ("voluntary_ledger_records_received_total", (("connector", "xledger"),))
    pending = (
        "voluntary_ledger_records",
        (("connector", "xledger"), ("state", "pending")),
    )
    records = [
        {
            "source_id": f"claim-{n}",
            "kind": "reimbursement",
            "category": "travel",
            "amount": "120.50",
            "currency": "NOK",
            "expense_date": "2026-11-01",
            "approved_at": "2026-11-02T10:00:00+01:00",
            "claimant": {"reference": "V-1001", "name": "Kari Nordmann"},
        }
        for n in range(3)
    ]
    response = Client().post(
        reverse("api_records"),
        json.dumps(records),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_key}",
    )
    assert response.status_code == 201, response.content
    after = scrape(settings)
    assert after[received] - before.get(received, 0) == 3
    assert after[pending] == 3
    # No organization label anywhere: their number is unbounded.
    assert not any("organization" in dict(labels) for _name, labels in after)


@pytest.mark.django_db
def test_metrics_count_a_sync_its_attempts_duration_and_erp_latency(
    settings, org, trust_erp_sandbox: SandboxProcess
) -> None:
    configure(org, trust_erp_sandbox)
    make_records(org, 4)
    make_records(org, 2, category="unmapped: free text from the volunteer app")
    before = scrape(settings)
    sync(org)
    after = scrape(settings)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert moved("voluntary_ledger_sync_attempts_total", connector="xledger", outcome="succeeded")
    assert (
        moved("voluntary_ledger_sync_attempts_total", connector="xledger", outcome="succeeded") == 4
    )
    assert moved("voluntary_ledger_records_skipped_total", connector="xledger") == 2
    assert (
        moved(
            "voluntary_ledger_sync_runs_total",
            connector="xledger",
            trigger="manual",
            status="succeeded",
        )
        == 1
    )
    assert (
        moved(
            "voluntary_ledger_sync_run_duration_seconds_count",
            connector="xledger",
            trigger="manual",
        )
        == 1
    )
    erp_requests = sum(
        value - before.get((name, labels), 0)
        for (name, labels), value in after.items()
        if name == "voluntary_ledger_erp_request_duration_seconds_count"
        and dict(labels)["connector"] == "xledger"
    )
    assert erp_requests >= 1
    # Sent but awaiting Xledger's import: no longer pending.
    assert (
        after[("voluntary_ledger_records", (("connector", "xledger"), ("state", "pending")))] == 0
    )


# --- log lines -----------------------------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the production handler would print: JsonLines with the context filter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines())
    handler.addFilter(WithContext())
    root = logging.getLogger()
    root.addHandler(handler)
    django_logger = logging.getLogger("django")
    django_logger.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        django_logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.django_db
def test_a_request_log_line_is_one_json_object_with_request_id_and_organization(
    org, auditor, json_log
) -> None:
    client = Client()
    client.force_login(auditor)
    # An auditor may not switch the connector: Django logs the 403 (one line, config/logging).
    response = client.post(reverse("integration_toggle", args=[org.slug]))
    assert response.status_code == 403
    [line] = [entry for entry in lines(json_log) if entry["logger"] == "django.request"]
    assert line["level"] == "WARNING"
    assert line["request_id"] == response["X-Request-ID"]
    assert line["organization"] == org.slug
    assert line["status_code"] == 403
    assert line["time"].endswith("+00:00")
    # The request object itself (its path and query) is not printed.
    assert "request" not in line


@pytest.mark.django_db
def test_a_proxy_request_id_is_kept_and_a_forged_one_replaced() -> None:
    kept = Client().get("/healthz", HTTP_X_REQUEST_ID="lb-4f2a9c1e-0001")
    assert kept["X-Request-ID"] == "lb-4f2a9c1e-0001"
    forged = Client().get("/healthz", HTTP_X_REQUEST_ID='x" level="ERROR')
    assert forged["X-Request-ID"] != 'x" level="ERROR' and len(forged["X-Request-ID"]) == 32


@pytest.mark.django_db
def test_a_run_log_line_names_organization_run_and_record_but_no_claimant(
    org, trust_erp_sandbox: SandboxProcess, json_log
) -> None:
    configure(org, trust_erp_sandbox)
    [record] = make_records(org, 1)
    trust_erp_sandbox.set_faults(permanent_error_rate=1.0)
    run = sync(org)
    failed = [entry for entry in lines(json_log) if entry.get("record") == record.reference]
    assert failed, json_log.getvalue()
    assert failed[0]["run_id"] == run.pk
    assert failed[0]["organization"] == org.slug
    everything = json_log.getvalue()
    assert record.claimant_name not in everything
    assert "xl-demo" not in everything  # the API token


def test_the_demo_prints_plain_lines_with_the_context_in_brackets() -> None:
    record = logging.LogRecord("accounting_sync", logging.INFO, __file__, 1, "sent", None, None)
    with logcontext.bound(organization="hlf", run_id=7):
        WithContext().filter(record)
    assert PlainWithContext().format(record).endswith("sent [organization=hlf run_id=7]")


@pytest.mark.django_db
def test_the_line_django_writes_after_the_answer_names_the_request_too(json_log) -> None:
    """A 4xx a view returns (not raises) is logged once the middleware is done with it."""
    response = Client().post(reverse("api_records"), "[]", content_type="application/json")
    assert response.status_code == 401
    [line] = [entry for entry in lines(json_log) if entry["logger"] == "django.request"]
    assert line["request_id"] == response["X-Request-ID"]
    assert logcontext.current() == {}  # and nothing is left for the next request


class _Window:
    """A shared request window that answers the given waits, then has room."""

    def __init__(self, *waits: float) -> None:
        self.waits = list(waits)

    def admit(self, key: str, rate: object) -> float:
        return self.waits.pop(0) if self.waits else 0.0


def test_rate_limit_waits_and_refusals_are_counted(erp_sandbox: SandboxProcess) -> None:
    """The shared window made a request wait, or refused it: both show in /metrics."""
    from prometheus_client import REGISTRY

    from integrations.clients.http import AddressRefused, AllowList, make_session
    from integrations.clients.limits import Pacer, Rate

    def value(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    before = {
        name: value(name)
        for name in (
            "voluntary_ledger_erp_rate_limit_waits_total",
            "voluntary_ledger_erp_rate_limit_wait_seconds_total",
            "voluntary_ledger_erp_rate_limit_refusals_total",
        )
    }
    allowed = AllowList.parse(["localhost:*"])
    url = f"{erp_sandbox.url}/_sandbox/faults"
    waits = Pacer(_Window(0.25, 0.5), "k", Rate(1, 1), max_wait=5, sleep=lambda _s: None)
    make_session(str(erp_sandbox.ca_bundle), allowed=allowed, pacer=waits).get(url)
    refuses = Pacer(_Window(60.0), "k", Rate(1, 1), max_wait=5, sleep=lambda _s: None)
    with pytest.raises(AddressRefused):
        make_session(str(erp_sandbox.ca_bundle), allowed=allowed, pacer=refuses).get(url)

    moved = {name: value(name) - was for name, was in before.items()}
    # approx: the counters are floats, and earlier tests may have left them above zero.
    assert moved == pytest.approx(
        {
            "voluntary_ledger_erp_rate_limit_waits_total": 1,
            "voluntary_ledger_erp_rate_limit_wait_seconds_total": 0.75,
            "voluntary_ledger_erp_rate_limit_refusals_total": 1,
        }
    )
