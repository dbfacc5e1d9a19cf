"""Settings come from the environment; a malformed value stops start-up and names itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parent.parent
VARIABLES = (
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "FIELD_ENCRYPTION_KEYS",
    "CSRF_TRUSTED_ORIGINS",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "CONN_MAX_AGE",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "METRICS_TOKEN",
    "METRICS_ALLOWED_NETWORKS",
    "BEHIND_TLS_PROXY",
    "ERP_ALLOWED_HOSTS",
    "ERP_CA_BUNDLE",
    "ERP_SANDBOX_URL",
    "SYNC_STALE_AFTER_SECONDS",
    "SYNC_APPROVAL_DELAY_SECONDS",
    "SYNC_SWEEP_SECONDS",
    "SYNC_BATCHES_PER_TURN",
    "SYNC_PARKED_REQUEUE_SECONDS",
    "EMAIL_HOST",
    "EMAIL_PORT",
    "EMAIL_USE_TLS",
    "EMAIL_USE_SSL",
    "EMAIL_HOST_USER",
    "EMAIL_HOST_PASSWORD",
    "EMAIL_TIMEOUT",
    "DEFAULT_FROM_EMAIL",
    "SITE_URL",
    "ALERT_DIGEST_HOUR",
    "RECONCILIATION_NIGHTLY_HOUR",
    "RECONCILIATION_NIGHTLY_DAYS",
)
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "p7$Qw9!zL2m#Xv4rT8nB1cY6hJ3kF0sD5gA-uE_iO+pR=tW@yN&bM*vC^xZ%qL~eH",
    "ALLOWED_HOSTS": "ledger.example.no",
    "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
}


def manage(tmp_path: Path, *args: str, **variables: str) -> subprocess.CompletedProcess:
    """Run manage.py in a clean environment holding only `variables` (and a private var/)."""
    # Not even the test harness's DJANGO_ALLOW_ASYNC_UNSAFE: production never has it.
    inherited = set(VARIABLES) | {"DJANGO_ALLOW_ASYNC_UNSAFE"}
    env = {name: value for name, value in os.environ.items() if name not in inherited}
    env.update(VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings", **variables)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow  # starts manage.py in its own process
def test_with_production_values_check_deploy_reports_nothing(tmp_path) -> None:
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "DEBUG", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.slow  # starts manage.py in its own process
def test_the_demo_starts_with_no_variables_at_all(tmp_path) -> None:
    result = manage(tmp_path, "check", DEBUG="true")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        pytest.param({"DEBUG": "maybe"}, "DEBUG", id="debug-not-a-boolean"),
        pytest.param({**PRODUCTION, "SECRET_KEY": ""}, "SECRET_KEY", id="no-secret-in-production"),
        pytest.param({**PRODUCTION, "SECRET_KEY": "short"}, "SECRET_KEY", id="short-secret"),
        pytest.param(
            {"DEBUG": "true", "DATABASE_URL": "mysql://root@localhost/x"},
            "DATABASE_URL",
            id="database-unknown-scheme",
        ),
        pytest.param(
            {"DEBUG": "true", "DATABASE_URL": "postgres://localhost"},
            "DATABASE_URL",
            id="database-no-name",
        ),
        pytest.param(
            {"DEBUG": "true", "CELERY_BROKER_URL": "http://localhost"},
            "CELERY_BROKER_URL",
            id="broker-unknown-scheme",
        ),
        pytest.param(
            {"DEBUG": "true", "FIELD_ENCRYPTION_KEYS": "not-a-key"},
            "FIELD_ENCRYPTION_KEYS",
            id="encryption-key-malformed",
        ),
        pytest.param(
            {**PRODUCTION, "FIELD_ENCRYPTION_KEYS": ""},
            "FIELD_ENCRYPTION_KEYS",
            id="no-encryption-key-in-production",
        ),
        pytest.param(
            {"DEBUG": "true", "ALLOWED_HOSTS": "a.example,,b.example"},
            "ALLOWED_HOSTS",
            id="hosts-empty-item",
        ),
        pytest.param(
            {"DEBUG": "true", "SECURE_HSTS_SECONDS": "a year"},
            "SECURE_HSTS_SECONDS",
            id="hsts-not-a-number",
        ),
        pytest.param(
            {
                "DEBUG": "true",
                "CONN_MAX_AGE": "-1",
                "DATABASE_URL": "postgres://postgres@127.0.0.1/x",
            },
            "CONN_MAX_AGE",
            id="conn-max-age-negative",
        ),
        pytest.param({"DEBUG": "true", "LOG_LEVEL": "LOUD"}, "LOG_LEVEL", id="log-level-unknown"),
        pytest.param({"DEBUG": "true", "LOG_FORMAT": "xml"}, "LOG_FORMAT", id="log-format-unknown"),
        pytest.param(
            {"DEBUG": "true", "METRICS_TOKEN": "guessable"},
            "METRICS_TOKEN",
            id="metrics-token-short",
        ),
        pytest.param(
            {"DEBUG": "true", "METRICS_ALLOWED_NETWORKS": "10.0.0.0/8,10.0.0.300"},
            "METRICS_ALLOWED_NETWORKS",
            id="metrics-network-malformed",
        ),
        pytest.param(
            {"DEBUG": "true", "SYNC_STALE_AFTER_SECONDS": "1"},
            "SYNC_STALE_AFTER_SECONDS",
            id="stale-after-too-short",
        ),
        pytest.param(
            {"DEBUG": "true", "ERP_ALLOWED_HOSTS": "a.example,"},
            "ERP_ALLOWED_HOSTS",
            id="erp-hosts-empty-item",
        ),
        pytest.param(
            {**PRODUCTION, "EMAIL_HOST": "smtp.example.no", "SITE_URL": "https://l.example.no"},
            "DEFAULT_FROM_EMAIL",
            id="email-without-a-sender",
        ),
        pytest.param(
            {**PRODUCTION, "EMAIL_HOST": "smtp.example.no", "DEFAULT_FROM_EMAIL": "a@b.no"},
            "SITE_URL",
            id="email-without-the-sites-address",
        ),
        pytest.param(
            {"DEBUG": "true", "EMAIL_USE_SSL": "true", "EMAIL_USE_TLS": "true"},
            "EMAIL_USE_TLS",
            id="email-tls-and-ssl",
        ),
        pytest.param(
            {"DEBUG": "true", "ALERT_DIGEST_HOUR": "24"}, "ALERT_DIGEST_HOUR", id="digest-hour-24"
        ),
        pytest.param(
            {"DEBUG": "true", "RECONCILIATION_NIGHTLY_HOUR": "24"},
            "RECONCILIATION_NIGHTLY_HOUR",
            id="nightly-hour-24",
        ),
    ],
)
def test_a_malformed_value_stops_start_up_naming_the_variable(tmp_path, variables, named) -> None:
    result = manage(tmp_path, "check", **variables)
    assert result.returncode != 0
    assert f"Environment variable {named}:" in result.stderr


@pytest.mark.slow  # starts manage.py in its own process, twice
def test_issue16_5_email_goes_over_smtp_when_configured_and_nowhere_in_production_otherwise(
    tmp_path,
) -> None:
    show = (
        "from django.conf import settings as s; "
        "print(s.EMAIL_BACKEND, s.ALERT_EMAILS_ENABLED, s.EMAIL_PORT, s.SITE_URL)"
    )
    mail = {
        "EMAIL_HOST": "smtp.example.no",
        "DEFAULT_FROM_EMAIL": "Voluntary Ledger <alerts@ledger.example.no>",
        "SITE_URL": "https://ledger.example.no/",
    }
    configured = manage(tmp_path, "shell", "-c", show, **PRODUCTION, **mail)
    # The last line: Django's shell first says what it imported.
    assert configured.stdout.splitlines()[-1].split() == [
        "django.core.mail.backends.smtp.EmailBackend",
        "True",
        "587",
        "https://ledger.example.no",
    ], configured.stderr
    without = manage(tmp_path, "shell", "-c", show, **PRODUCTION)
    assert without.stdout.splitlines()[-1].split()[1] == "False", without.stderr


@pytest.mark.slow  # starts manage.py in its own process, twice
def test_the_sandbox_host_is_allowed_in_development_only(tmp_path) -> None:
    show = "from django.conf import settings; print(settings.ERP_ALLOWED_HOSTS)"
    production = manage(tmp_path, "shell", "-c", show, **PRODUCTION)
    development = manage(tmp_path, "shell", "-c", show, DEBUG="true")
    assert "www.xledger.net" in production.stdout and "localhost" not in production.stdout
    assert "localhost" in development.stdout


@pytest.mark.slow  # starts manage.py in its own process
def test_encryption_keys_accept_several_for_rotation(tmp_path) -> None:
    keys = f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}"
    result = manage(tmp_path, "check", DEBUG="true", FIELD_ENCRYPTION_KEYS=keys)
    assert result.returncode == 0, result.stderr


def test_every_variable_is_documented_in_env_example_and_readme() -> None:
    example = (BASE_DIR / ".env.example").read_text()
    readme = (BASE_DIR / "README.md").read_text()
    for name in (*VARIABLES, "VAR_DIR"):
        assert f"{name}=" in example, f"{name} is missing from .env.example"
        assert f"`{name}`" in readme, f"{name} is missing from the README"


def test_oslo_is_the_time_zone(settings) -> None:
    assert settings.TIME_ZONE == "Europe/Oslo"
    assert settings.USE_TZ
