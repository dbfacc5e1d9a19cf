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
# A test marked `postgres_only(reason=...)` needs what SQLite lacks. No test skips itself:
# `make test` leaves those out by selection (-m "not postgres_only") when DATABASE_URL is
# not PostgreSQL, and pytest reports them as deselected; CI's PostgreSQL pass runs them.


def _postgres_only_say_why(items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("postgres_only")
        if marker is not None and not marker.kwargs.get("reason"):
            raise pytest.UsageError(f"{item.nodeid}: postgres_only needs reason=")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        assert reporter is not None  # it counted them
        names = ", ".join(report.nodeid for report in skipped)
        reporter.write_line(
            f"CI=true: {len(skipped)} test(s) skipped; every test must run: {names}"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --- markers: what `make test-fast` leaves out ----------------------------------------------


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts a Celery worker is a worker test whatever its module says (its
    fixture is what makes it slow), and every browser or worker test is slow, so that
    `-m slow` and `-m "not slow"` mean what they say."""
    _postgres_only_say_why(items)
    for item in items:
        if "celery_worker" in getattr(item, "fixturenames", ()) and not item.get_closest_marker(
            "worker"
        ):
            item.add_marker(pytest.mark.worker)
        if item.get_closest_marker("browser") or item.get_closest_marker("worker"):
            item.add_marker(pytest.mark.slow)


# --- people and organizations --------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _unpaced(settings) -> None:
    """Tests share the sandbox's few credentials, and a pacing window outlives a test: one
    test's requests would slow the next. tests/test_pacing.py turns pacing on."""
    settings.ERP_PACING_URL = "off"


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
    from integrations.models import Integration
    from organizations.models import Organization

    organization = Organization.objects.create(name="Blindeforbundet", slug="blindeforbundet")
    Integration.objects.create(organization=organization, connector="xledger")
    return organization


@pytest.fixture
def other_org(db):
    from integrations.models import Integration
    from organizations.models import Organization

    organization = Organization.objects.create(name="HLF", slug="hlf")
    Integration.objects.create(organization=organization, connector="business_central")
    return organization


def make_user(username: str, *, organization=None, role: str | None = None, superuser=False):
    from django.contrib.auth import get_user_model

    from organizations.models import Membership

    user = get_user_model().objects.create_user(
        username=username, password=PASSWORD, is_staff=superuser, is_superuser=superuser
    )
    if organization is not None:
        assert role is not None  # a member has a role
        Membership.objects.create(user=user, organization=organization, role=role)
    return user


@pytest.fixture
def org_admin(org):
    return make_user("own-admin", organization=org, role="admin")


@pytest.fixture
def admin_client(org_admin):
    """A test client logged in as the organization's admin."""
    from django.test import Client

    client = Client()
    client.force_login(org_admin)
    return client


@pytest.fixture
def other_admin(other_org):
    return make_user("other-admin", organization=other_org, role="admin")


@pytest.fixture
def auditor(org):
    return make_user("auditor", organization=org, role="auditor")


@pytest.fixture
def global_admin(db):
    """A global admin who has set up two-factor authentication, as every one must."""
    user = make_user("global-admin", superuser=True)
    give_second_factor(user)
    return user


# --- the second factor (accounts/two_factor.py) --------------------------------------------


def give_second_factor(user):
    """A confirmed authenticator app for the user, as if they had set one up."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)


def totp_code(user, *, fresh: bool = True) -> str:
    """The code the user's app shows now. `fresh`: forget the last code used, so that a
    test may log the same person in twice within one 30-second step (django-otp refuses a
    code from a step already used, which protects real logins from replay)."""
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.get(user=user, confirmed=True)
    if fresh:
        TOTPDevice.objects.filter(pk=device.pk).update(last_t=-1)
    code = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits)
    return f"{code:0{device.digits}d}"


@pytest.fixture(autouse=True)
def _force_login_includes_second_factor() -> Iterator[None]:
    """`client.force_login(user)` stands for a whole login, so for someone with an app it
    stands for the second step too: the session is marked verified, as django_otp.login
    would. Only for the stand-in request the test client makes; a login through the real
    pages still asks for the code (the tests of the second step rely on that)."""
    from django.contrib.auth.signals import user_logged_in
    from django.http import HttpRequest
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    def mark_verified(sender, request, user, **kwargs) -> None:
        if type(request) is not HttpRequest:  # a real request (WSGIRequest): not force_login
            return
        device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
        if device is not None:
            request.session[DEVICE_ID_SESSION_KEY] = device.persistent_id

    user_logged_in.connect(mark_verified, dispatch_uid="tests-force-login-otp")
    yield
    user_logged_in.disconnect(dispatch_uid="tests-force-login-otp")


@pytest.fixture
def api_key(org) -> str:
    from organizations.models import ApiKey

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


def worker_command(name: str, *, heartbeat: bool = False) -> list[str]:
    """`celery -A config worker` as the tests start it: one task at a time (solo pool),
    named `name@host`, without the cluster chatter a lone test worker does not need."""
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=info"]
    command += ["--pool=solo", f"--hostname={name}@%h", "--without-gossip", "--without-mingle"]
    return command if heartbeat else [*command, "--without-heartbeat"]


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
        "ERP_PACING_URL": settings.ERP_PACING_URL,
    }
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            worker_command("test-worker", heartbeat=True),
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
        worker.log_path = log_path  # type: ignore[attr-defined]  # for the failure messages
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
