"""The production setup, end to end (issue 16 item 6): what the README's "Production"
section tells an operator to run, run.

gunicorn with `DEBUG=false` and the production settings (`BEHIND_TLS_PROXY=true`, a real
`SECRET_KEY` and `FIELD_ENCRYPTION_KEYS`, static files collected and served by WhiteNoise),
a Celery worker and beat as processes of their own, PostgreSQL and Redis, and the ERP sandbox
as the ERP. The test is the proxy: it sends `X-Forwarded-Proto: https`.

The `production` fixture starts it all and is meant to be shared: a check that needs more of
the environment (an SMTP server for the alert e-mails, issue 16 item 5) adds its variables
through `production_env_extra` and is a test of its own in this module (`TestAlertEmail`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from accounting_sync.models import SyncRun
from alerts.models import Alert, AlertEmail, AlertPreference
from erp_sandbox.client import SandboxProcess
from tests import smtp
from tests.conftest import BASE_DIR, PASSWORD, _database_url_for_worker
from tests.factories import configure, ledger_counts
from tests.smtp import Inbox, smtp_server, subject_of
from tests.test_ops import samples

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres_only(
        reason="production runs on PostgreSQL and Redis; the SQLite pass has neither"
    ),
]

START_TIMEOUT = 60  # seconds for gunicorn, a worker or beat to come up
METRICS_TOKEN = secrets.token_urlsafe(32)
# The variables the test harness may have set that production never has.
NOT_IN_PRODUCTION = {"DJANGO_ALLOW_ASYNC_UNSAFE", "LOG_FORMAT", "ERP_PACING_URL", "DEBUG"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Production:
    url: str
    env: dict[str, str]
    logs: dict[str, Path]
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return "https://" + self.url.removeprefix("http://")

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """As through the TLS proxy. Cookies by hand: the session cookie is Secure, and
        requests would not send it over the proxy's plain-HTTP hop."""
        headers = {"X-Forwarded-Proto": "https", **kwargs.pop("headers", {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = requests.request(
            method, self.url + path, headers=headers, allow_redirects=False, timeout=30, **kwargs
        )
        self.cookies.update(response.cookies.get_dict())
        return response

    def log_lines(self, process: str) -> list[dict[str, Any]]:
        """A process's log, each line parsed as the JSON object it must be."""
        parsed = []
        for line in self.logs[process].read_text().splitlines():
            if line.startswith("{"):
                parsed.append(json.loads(line))
        return parsed

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = self.request(
            "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        assert response.status_code == 200, response.text
        return samples(response.text)


def _start(
    name: str, command: list[str], env: dict[str, str], logs: Path, ready: Callable[[], bool]
) -> subprocess.Popen:
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{name} did not start:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.3)
    return process


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def procfile() -> dict[str, str]:
    """The processes of Procfile.production: name → command."""
    lines = (BASE_DIR / "Procfile.production").read_text().splitlines()
    return dict(
        (name.strip(), command.strip())
        for name, _, command in (line.partition(":") for line in lines if line.strip())
    )


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).ok
    except requests.RequestException:  # not listening yet, or still loading Django
        return False


def _heartbeat_due_now() -> None:
    """As when beat starts again after a pause: the worker heartbeat was last sent two
    minutes ago, so beat sends it at once rather than a minute after it starts."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every, _ = IntervalSchedule.objects.get_or_create(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(
        name="worker-heartbeat",
        defaults={
            "task": "accounting_sync.tasks.record_worker_heartbeat",
            "interval": every,
            "last_run_at": timezone.now() - timedelta(minutes=2),
        },
    )


@pytest.fixture
def production_env_extra() -> dict[str, str]:
    """More environment for the production processes (an SMTP server's, for instance)."""
    return {}


@pytest.fixture
def production(
    transactional_db,
    erp_sandbox: SandboxProcess,
    tmp_path: Path,
    production_env_extra: dict[str, str],
) -> Iterator[Production]:
    assert settings.CELERY_BROKER_URL.startswith("redis://"), (
        "the production smoke test needs Redis: set CELERY_BROKER_URL=redis://..."
    )
    port = _free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in NOT_IN_PRODUCTION}
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        # The key the test process encrypted the ERP credentials with.
        FIELD_ENCRYPTION_KEYS=",".join(settings.FIELD_ENCRYPTION_KEYS),
        ALLOWED_HOSTS="127.0.0.1",
        BEHIND_TLS_PROXY="true",
        DATABASE_URL=_database_url_for_worker(),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        VAR_DIR=str(tmp_path / "var"),
        # Production allows no ERP sandbox by default: this one, its port, its CA.
        ERP_ALLOWED_HOSTS=f"localhost:{erp_sandbox.port}",
        ERP_CA_BUNDLE=str(erp_sandbox.ca_bundle),
        METRICS_TOKEN=METRICS_TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        GUNICORN_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS="2",
        SYNC_APPROVAL_DELAY_SECONDS="1",
        CELERY_CONCURRENCY="2",
        # The Procfile names its programs; they are this interpreter's.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **production_env_extra,
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert collected.returncode == 0, collected.stderr

    _heartbeat_due_now()
    commands = procfile()
    ready: dict[str, Callable[[], bool]] = {
        "worker": lambda: b"ready." in (logs / "worker.log").read_bytes(),
        "beat": lambda: b"beat: Starting" in (logs / "beat.log").read_bytes(),
        "web": lambda: _answers(f"http://127.0.0.1:{port}/healthz"),
    }
    assert set(commands) == set(ready)
    processes: list[subprocess.Popen] = []
    try:
        for name in ("worker", "beat", "web"):
            # As honcho or systemd would: the Procfile's line through a shell (it expands
            # ${CELERY_CONCURRENCY:-4}), `exec`, so the signal to stop reaches the process.
            command = ["bash", "-c", f"exec {commands[name]}"]
            processes.append(_start(name, command, env, logs, ready[name]))
        yield Production(
            url=f"http://127.0.0.1:{port}",
            env=env,
            logs={name: logs / f"{name}.log" for name in ("web", "worker", "beat")},
        )
    finally:
        _stop(processes)


def _wait_for(what: str, condition: Callable[[], Any], timeout: float, logs: Production) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            tails = {
                name: path.read_text()[-3000:] for name, path in logs.logs.items() if path.exists()
            }
            raise AssertionError(f"{what} within {timeout} s; logs: {tails}")
        time.sleep(0.5)
    return result


def _submit(
    production: Production, page: str, data: dict[str, Any], *, action: str | None = None
) -> requests.Response:
    """Fill in a form as a browser would: read the page for its CSRF token, then post to
    the form's address (the page's own unless `action` says otherwise) from this origin."""
    read = production.request("GET", page)
    assert read.status_code == 200, read.text[:500]
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', read.text)
    assert csrf is not None
    return production.request(
        "POST",
        action or page,
        data={**data, "csrfmiddlewaretoken": csrf[1]},
        headers={"Origin": production.origin, "Referer": production.origin + page},
    )


def _log_in(production: Production, user) -> None:
    """Through the login page. The tests' fast MD5 hashes are not among production's
    hashers: the password is stored as production stores it."""
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(PASSWORD, hasher.salt())
    user.save(update_fields=["password"])
    answer = _submit(
        production, "/accounts/login/", {"username": user.username, "password": PASSWORD}
    )
    assert answer.status_code == 302, answer.text[:1000]


def test_production_serves_pages_syncs_records_and_reports_ready_and_metrics(
    production: Production, org, org_admin, api_key, erp_sandbox: SandboxProcess
) -> None:
    configure(org, erp_sandbox)

    # Plain HTTP to the app itself is sent to https, as the proxy in front would be.
    insecure = requests.get(production.url + "/accounts/login/", allow_redirects=False, timeout=10)
    assert insecure.status_code == 301 and insecure.headers["Location"].startswith("https://")

    # A person logs in and sees the organization's dashboard, stylesheet and all.
    _log_in(production, org_admin)
    dashboard = production.request("GET", f"/orgs/{org.slug}/")
    assert dashboard.status_code == 200, dashboard.text[:500]
    assert org.name in dashboard.text
    assert "Strict-Transport-Security" in dashboard.headers
    stylesheet = re.search(r'href="(/static/[^"]+\.css)"', dashboard.text)
    assert stylesheet is not None and re.search(r"\.[0-9a-f]{12}\.css$", stylesheet[1])
    static = production.request("GET", stylesheet[1])
    assert static.status_code == 200 and "max-age=315360000" in static.headers["Cache-Control"]

    before = production.metrics()

    # The volunteer app posts three approved claims with the organization's API key.
    claims = [
        {
            "source_id": f"smoke-{n}",
            "kind": "reimbursement",
            "category": "travel",
            "amount": f"{100 + n}.50",
            "currency": "NOK",
            "expense_date": "2026-11-01",
            "approved_at": "2026-11-02T10:00:00+01:00",
            "claimant": {"reference": f"V-{n}", "name": "Kari Nordmann"},
        }
        for n in range(3)
    ]
    posted = production.request(
        "POST", "/api/v1/records", json=claims, headers={"Authorization": f"Bearer {api_key}"}
    )
    assert posted.status_code == 201, posted.text
    references = {item["reference"] for item in posted.json()["records"]}

    # The worker sends them to the ERP after the approval delay.
    ledger = _wait_for(
        "the records reached the ERP",
        lambda: references <= set(ledger_counts(erp_sandbox)) and ledger_counts(erp_sandbox),
        timeout=90,
        logs=production,
    )
    assert all(ledger[reference] == 1 for reference in references)

    # Ready: database, Redis, a worker heartbeat and beat's send of it.
    def ready() -> dict | None:
        answer = production.request("GET", "/readyz")
        return answer.json() if answer.status_code == 200 else None

    body = _wait_for("/readyz answered 200", ready, timeout=100, logs=production)
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "broker": "ok",
        "worker": "ok",
        "beat": "ok",
    }

    # The counters moved, in the web process (received) and the worker's (attempts), both
    # read by one scrape of the web: multiprocess mode across gunicorn and Celery.
    after = production.metrics()

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert moved("voluntary_ledger_records_received_total", connector="xledger") == 3
    assert (
        moved("voluntary_ledger_sync_attempts_total", connector="xledger", outcome="succeeded") == 3
    )
    assert any(
        name == "voluntary_ledger_erp_request_duration_seconds_count" and value > 0
        for (name, _labels), value in after.items()
    )
    waiting = ("voluntary_ledger_records", (("connector", "xledger"), ("state", "pending")))
    assert after[waiting] == 0
    assert after[("voluntary_ledger_worker_heartbeat_age_seconds", ())] < 300

    # Production logs JSON: the worker's lines about the run name it and the organization.
    run_lines = [line for line in production.log_lines("worker") if "run_id" in line]
    assert run_lines, production.logs["worker"].read_text()[-3000:]
    assert {line["organization"] for line in run_lines} == {org.slug}
    assert "Kari Nordmann" not in production.logs["worker"].read_text()
    # gunicorn's own lines too: every line of the web's log is a JSON object.
    web_log = production.logs["web"].read_text().splitlines()
    booted = [line for line in web_log if "Booting worker" in line]
    assert len(booted) == len(set(booted)) == 2, booted  # two workers, each said once
    for line in web_log:
        entry = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(entry), line


# --- the alert e-mail (issue 16 items 5 and 6) ------------------------------------------------

SITE_URL = "https://ledger.example.no"
FROM = "Voluntary Ledger <alerts@ledger.example.no>"
MAIL_TIMEOUT = 60  # seconds from the ERP's refusal to the e-mail at the mail server
# After the run that changed nothing has finished: long enough for a stray e-mail's task
# to reach the worker and the mail server, were one queued.
QUIET_SECONDS = 3


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with smtp_server() as server:
        yield server


def _runs_finished(org, count: int) -> list[SyncRun]:
    """The organization's runs, oldest first, once there are `count` and none is running."""
    runs = list(SyncRun.objects.filter(organization=org).order_by("started_at", "pk"))
    if len(runs) < count or any(run.status == SyncRun.Status.RUNNING for run in runs):
        return []
    return runs


def _sync_now(production: Production, org) -> None:
    """Trigger Sync Now on the dashboard (its confirmation page, without JavaScript)."""
    answer = _submit(production, f"/orgs/{org.slug}/sync/", {})
    assert answer.status_code == 302, answer.text[:1000]


class TestAlertEmail:
    """The production processes with a mail server in their environment: the worker sends
    the alert e-mails by SMTP, as the README's production section configures it."""

    @pytest.fixture
    def production_env_extra(self, inbox: Inbox) -> dict[str, str]:
        return {
            "EMAIL_HOST": smtp.HOST,
            "EMAIL_PORT": str(inbox.port),
            "EMAIL_USE_TLS": "false",
            "EMAIL_USE_SSL": "false",
            "DEFAULT_FROM_EMAIL": FROM,
            "SITE_URL": SITE_URL,
        }

    def test_issue16_6_s7_6_refused_credentials_reach_the_admin_by_email_once_in_her_language(
        self,
        production: Production,
        inbox: Inbox,
        org,
        org_admin,
        api_key,
        erp_sandbox: SandboxProcess,
    ) -> None:
        configure(org, erp_sandbox)
        org_admin.email = "ingrid@example.org"
        org_admin.save(update_fields=["email"])
        _log_in(production, org_admin)

        # She reads the app in Norwegian (the header's picker) and asks, on her alert
        # settings page, for an e-mail at once when the ERP refuses the credentials.
        chosen = _submit(
            production,
            "/alerts/settings/",
            {"language": "nb", "next": "/alerts/settings/"},
            action="/i18n/setlang/",
        )
        assert chosen.status_code == 302, chosen.text[:1000]
        saved = _submit(
            production,
            "/alerts/settings/",
            {"email_kinds": [Alert.Kind.AUTHENTICATION_FAILED], "delivery": "at_once"},
        )
        assert saved.status_code == 302, saved.text[:1000]
        preference = AlertPreference.objects.get(user=org_admin)
        assert (preference.email_kinds, preference.language) == (["authentication_failed"], "nb")

        # The ERP starts refusing the credentials; a claim arrives and its sync is refused.
        erp_sandbox.set_faults(expired_credentials=True)
        claim = {
            "source_id": "smoke-mail",
            "kind": "reimbursement",
            "category": "travel",
            "amount": "240.00",
            "currency": "NOK",
            "expense_date": "2026-11-03",
            "approved_at": "2026-11-04T09:00:00+01:00",
            "claimant": {"reference": "V-9", "name": "Kari Nordmann"},
        }
        posted = production.request(
            "POST", "/api/v1/records", json=[claim], headers={"Authorization": f"Bearer {api_key}"}
        )
        assert posted.status_code == 201, posted.text

        _wait_for("the alert e-mail arrived", lambda: inbox.messages, MAIL_TIMEOUT, production)
        alert = Alert.objects.get(organization=org)
        assert alert.kind == Alert.Kind.AUTHENTICATION_FAILED and alert.is_open
        assert inbox.recipients == [[org_admin.email]]
        (opened,) = inbox.messages
        assert opened["From"] == FROM
        assert subject_of(opened) == "Varsel: Påloggingsopplysninger avvist · Blindeforbundet"
        text, html = opened.get_body(("plain",)), opened.get_body(("html",))
        assert text is not None and html is not None
        body = text.get_content()
        assert body.startswith("Blindeforbundet: Påloggingsopplysninger avvist")
        assert "Regnskapssystemet avviste påloggingsopplysningene" in body
        assert '<html lang="nb">' in html.get_content()
        assert "Kari Nordmann" not in body + html.get_content()
        # Links back into the app under SITE_URL: to the alert and to the connection's
        # settings. The first, followed through the proxy, shows her the alert.
        assert f"{SITE_URL}{reverse('integration_settings', args=[org.slug])}" in body
        link = re.search(rf"{re.escape(SITE_URL)}(/\S*)#alert-{alert.pk}\b", body)
        assert link is not None, body
        shown = production.request("GET", link[1])
        assert shown.status_code == 200 and f'id="alert-{alert.pk}"' in shown.text

        # Refused again on Sync Now: the same problem, still open, so no second e-mail.
        _wait_for("the first run finished", lambda: _runs_finished(org, 1), 60, production)
        _sync_now(production, org)
        runs = _wait_for("the second run finished", lambda: _runs_finished(org, 2), 60, production)
        assert [run.error_class for run in runs] == ["authentication", "authentication"]
        time.sleep(QUIET_SECONDS)
        assert len(inbox.messages) == 1
        assert Alert.objects.filter(organization=org).count() == 1

        # The credentials are taken again: the next sync sends the claim and the alert
        # resolves, with one e-mail saying so.
        erp_sandbox.set_faults()
        _sync_now(production, org)
        _wait_for("the resolved e-mail arrived", lambda: len(inbox.messages) > 1, 60, production)
        assert not Alert.objects.get(pk=alert.pk).is_open
        resolved = inbox.messages[1]
        assert subject_of(resolved) == "Løst: Påloggingsopplysninger avvist · Blindeforbundet"
        assert inbox.recipients == [[org_admin.email]] * 2
        # Each recorded as sent once (the worker records it just after the server took it).
        sent = AlertEmail.objects.filter(alert=alert, user=org_admin, sent_at__isnull=False)
        _wait_for(
            "both e-mails recorded as sent",
            lambda: sorted(sent.values_list("kind", flat=True)) == ["opened", "resolved"],
            10,
            production,
        )
        time.sleep(QUIET_SECONDS)
        assert len(inbox.messages) == 2
