"""The production setup, end to end (issue 16 item 6): what the README's "Production"
section tells an operator to run, run.

gunicorn with `DEBUG=false` and the production settings (`BEHIND_TLS_PROXY=true`, a real
`SECRET_KEY` and `FIELD_ENCRYPTION_KEYS`, static files collected and served by WhiteNoise),
a Celery worker and beat as processes of their own, PostgreSQL and Redis, and the ERP sandbox
as the ERP. The test is the proxy: it sends `X-Forwarded-Proto: https`.

The `production` fixture starts it all and is meant to be shared: a check that needs more of
the environment (an SMTP server for the alert e-mails, issue 16 item 5) adds its variables
through `production_env_extra` and is a test of its own in this module.
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
from django.utils import timezone

from erp_sandbox.client import SandboxProcess
from tests.conftest import BASE_DIR, PASSWORD, _database_url_for_worker
from tests.factories import configure, ledger_counts
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


def _log_in(production: Production, user) -> None:
    """Through the login page. The tests' fast MD5 hashes are not among production's
    hashers: the password is stored as production stores it."""
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(PASSWORD, hasher.salt())
    user.save(update_fields=["password"])
    username = user.username
    page = production.request("GET", "/accounts/login/")
    assert page.status_code == 200, page.text[:500]
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert csrf is not None
    answer = production.request(
        "POST",
        "/accounts/login/",
        data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": csrf[1]},
        headers={"Origin": production.origin, "Referer": production.origin + "/accounts/login/"},
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
