"""Shared fixtures: the five roles of the access matrix, Chromium, a real Celery worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

# Playwright's sync API runs an event loop in the test thread; Django would
# otherwise refuse database calls made from that thread (for fixtures).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

# The ERP sandbox fixtures live in their own module.
pytest_plugins = ["tests.sandbox_fixtures"]

BASE_DIR = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
PASSWORD = "correct-horse-battery-staple"


# --- CI runs every test: a skipped test fails the run ------------------------------------


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped; every test must run in CI.")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --- what SQLite cannot do ------------------------------------------------------------------


def pytest_runtest_setup(item: pytest.Item) -> None:
    """`@pytest.mark.postgres_only("why")`: a test of something only a database with
    concurrent writers can show. On SQLite (the zero-setup default) it is skipped with its
    reason said; CI runs on PostgreSQL, where every such test runs."""
    marker = item.get_closest_marker("postgres_only")
    if marker is not None and settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        pytest.skip(f"SQLite cannot show this: {marker.args[0]}")


# --- people and organizations --------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _english_after_each_test() -> Iterator[None]:
    """A request in Norwegian leaves Norwegian active in the test's thread: the next test
    would start in it. Each test starts in the default language."""
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture
def org(db):
    from integrations.models import Integration, Organization

    organization = Organization.objects.create(name="Blindeforbundet", slug="blindeforbundet")
    Integration.objects.create(organization=organization, connector="xledger")
    return organization


@pytest.fixture
def other_org(db):
    from integrations.models import Integration, Organization

    organization = Organization.objects.create(name="HLF", slug="hlf")
    Integration.objects.create(organization=organization, connector="business_central")
    return organization


def make_user(username: str, *, organization=None, role: str | None = None, superuser=False):
    from django.contrib.auth import get_user_model

    from integrations.models import Membership

    user = get_user_model().objects.create_user(
        username=username, password=PASSWORD, is_staff=superuser, is_superuser=superuser
    )
    if organization is not None:
        Membership.objects.create(user=user, organization=organization, role=role)
    return user


@pytest.fixture
def org_admin(org):
    return make_user("own-admin", organization=org, role="admin")


@pytest.fixture
def other_admin(other_org):
    return make_user("other-admin", organization=other_org, role="admin")


@pytest.fixture
def auditor(org):
    return make_user("auditor", organization=org, role="auditor")


@pytest.fixture
def global_admin(db):
    return make_user("global-admin", superuser=True)


@pytest.fixture
def api_key(org) -> str:
    from integrations.models import ApiKey

    _key, raw_key = ApiKey.issue(org)
    return raw_key


# --- Chromium -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
        ],
    }


# --- a real Celery worker process ------------------------------------------------------------


def _database_url_for_worker() -> str:
    """The URL of the database this test run is using (the test database, not the real one)."""
    params = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{params['NAME']}"
    user = params.get("USER") or ""
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    host = params.get("HOST") or "127.0.0.1"
    port = f":{params['PORT']}" if params.get("PORT") else ""
    return f"postgres://{user}{password}@{host}{port}/{params['NAME']}"


@pytest.fixture
def celery_worker(transactional_db, tmp_path) -> Iterator[subprocess.Popen]:
    """`celery -A config worker` in its own process, on the broker the settings name."""
    log_path = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url_for_worker(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "VAR_DIR": str(settings.VAR_DIR),
        "DEBUG": "true",
        # The CA the connectors trust: a test that uses the ERP sandbox points it there.
        "ERP_CA_BUNDLE": settings.ERP_CA_BUNDLE,
    }
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--loglevel=info",
                "--pool=solo",
                "--hostname=test-worker@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while b"ready." not in log_path.read_bytes():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        worker.log_path = log_path
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
