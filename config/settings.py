"""Settings, all read from the environment (see .env.example and the README)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from celery.schedules import crontab
from csp.constants import NONE, SELF

from config.env import (
    bad,
    env,
    get_bool,
    get_database,
    get_fernet_keys,
    get_int,
    get_list,
    get_networks,
    get_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# A .env file beside manage.py is read if present; real environment variables win.
env.read_env(BASE_DIR / ".env")

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = get_bool("DEBUG", default=False)

_DEV_SECRET = "insecure-development-key-do-not-use-in-production-0123456789abcdef"
SECRET_KEY = env.str("SECRET_KEY", default="") or (_DEV_SECRET if DEBUG else "")
if not SECRET_KEY:
    raise bad("SECRET_KEY", "required when DEBUG is false")
if not DEBUG and (len(SECRET_KEY) < 50 or SECRET_KEY == _DEV_SECRET):
    raise bad("SECRET_KEY", "must be a unique random value of at least 50 characters")

ALLOWED_HOSTS = get_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = get_list("CSRF_TRUSTED_ORIGINS", [])

# Credentials for the ERPs are encrypted with these (MultiFernet, newest key first).
FIELD_ENCRYPTION_KEYS = get_fernet_keys(
    "FIELD_ENCRYPTION_KEYS", fallback_secret=SECRET_KEY if DEBUG else None
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "django_celery_beat",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
    # The project's apps, bottom layer first (docs/architecture.md).
    "core",
    "organizations",
    "integrations",
    "accounting_sync",
    "audit",
    "alerts",
    "reconciliation",
    "ops",
    "accounts",
]

MIDDLEWARE = [
    # First: a request id for every log line, then the probes, answered before the rest
    # (sessions, login, second factor, https redirect) runs for them (ops/middleware.py).
    "ops.middleware.RequestContextMiddleware",
    "ops.middleware.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy and Permissions-Policy on every response (issue 12 item 8).
    "csp.middleware.CSPMiddleware",
    "config.security_headers.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # After sessions (it reads the chosen language), before CommonMiddleware (which
    # may redirect, and should do so in the person's language).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # After authentication: whether the session passed the second factor (user.is_verified).
    "django_otp.middleware.OTPMiddleware",
    # Idle timeout first (an idle session ends before anything else), then the second factor.
    "accounts.middleware.SessionTimeoutMiddleware",
    "accounts.middleware.TwoFactorMiddleware",
    # Last: turns a refused login into the lockout page (accounts.lockout).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "organizations.context_processors.navigation",
                "alerts.context_processors.alerts",
            ],
        },
    },
]

DATABASES = {"default": get_database("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one file in `make run`: WAL lets readers and a
    # writer work at once, IMMEDIATE takes the write lock up front so two writers
    # wait for each other instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # A file, not memory, so a worker process started by a test sees the test data.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
    # SQLite has no covering indexes, so the `include=` columns of the overview's indexes
    # (meant for PostgreSQL, where they make those reads index-only) are ignored there and
    # Django says so as models.W040 on every start. Only that check, only on SQLite.
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
else:
    DATABASES["default"]["CONN_MAX_AGE"] = get_int("CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Password guessing (accounts/lockout.py): django-axes counts failed logins, on the app's
# login and /admin/login/ alike, per user at one address, per user and per address, each
# with its own limit; reaching one locks logins for that scope for the cool-off period.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses a locked login before the password
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_FAILURE_LIMITS = {"username+ip_address": 5, "username": 10, "ip_address": 20}
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "username", "ip_address"]
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMITS["username+ip_address"]
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_HANDLER = "accounts.lockout.LockoutHandler"
AXES_CLIENT_IP_CALLABLE = "accounts.lockout.client_ip"
AXES_LOCKOUT_CALLABLE = "accounts.lockout.locked_out_response"
# Tries while locked do not push the end further: the page can say when it ends.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# Unlocking happens on the app's page, which records it in the trail; not in Django admin.
AXES_ENABLE_ADMIN = False

# Sessions: logged out after SESSION_IDLE_SECONDS without a page view (live polls do not
# count, see accounts/middleware.py) and SESSION_COOKIE_AGE after logging in, whatever.
SESSION_IDLE_SECONDS = get_int("SESSION_IDLE_SECONDS", 30 * 60, minimum=60)
SESSION_COOKIE_AGE = 12 * 60 * 60

# Second factor (accounts/two_factor.py): TOTP apps, with one-time recovery codes.
OTP_TOTP_ISSUER = "Voluntary Ledger"

LANGUAGE_CODE = "en"  # for a browser that asks for neither language
# The person picks one in the header (a cookie); until then the browser's Accept-Language.
LANGUAGES = [("en", "English"), ("nb", "Norsk bokmål")]
# Committed compiled (.mo) as well as .po: `make run` needs no gettext tools.
LOCALE_PATHS = [BASE_DIR / "locale"]
# The picker's choice: sent over https only in production, never read by scripts.
LANGUAGE_COOKIE_SECURE = not DEBUG
LANGUAGE_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SAMESITE = "Lax"
TIME_ZONE = "Europe/Oslo"
USE_I18N = True
FORMAT_MODULE_PATH = ["config.formats"]  # English with a 24-hour clock, see there
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns at start-up if it is missing
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Production hardening; `manage.py check --deploy` reports nothing with DEBUG=false.
SECURE_SSL_REDIRECT = get_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Behind the proxy its X-Forwarded-Proto is trusted, and the last X-Forwarded-For address
# (the one it appended) is the client's for login throttling; never without it.
BEHIND_TLS_PROXY = get_bool("BEHIND_TLS_PROXY", default=False)
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = get_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): everything from this origin, nothing inline, no
# eval. No page has inline script, style or on* handlers (tests/test_csp.py scans them);
# htmx is told not to evaluate anything or insert its own <style> (the htmx-config meta in
# base.html), so neither 'unsafe-inline' nor 'unsafe-eval' nor a nonce is needed. Images:
# none but our own (2FA QR codes are inline SVG markup, which img-src does not govern).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "connect-src": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}
# Browser features no page uses, denied to this site and anything it might embed
# (config/security_headers.py). Only names Chromium knows: an unknown one is logged.
PERMISSIONS_POLICY: dict[str, tuple[str, ...]] = dict.fromkeys(
    [
        "accelerometer",
        "autoplay",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "hid",
        "idle-detection",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "screen-wake-lock",
        "serial",
        "usb",
        "xr-spatial-tracking",
    ],
    (),  # the allow-list: empty, so no origin at all, this one neither
)

# ERP hosts the server may contact (https only), checked at save and on every request
# (integrations/clients/http.py, AllowList): `host` means port 443 only, `host:8443`
# that port, `host:*` 443 or any port from 1024. With DEBUG, `localhost:*` for the ERP
# sandbox (8443 in the demo, a random port in tests).
ERP_ALLOWED_HOSTS = get_list(
    "ERP_ALLOWED_HOSTS",
    [
        "www.xledger.net",
        "demo.xledger.net",
        "api.businesscentral.dynamics.com",
        "login.microsoftonline.com",
    ],
) + (["localhost:*"] if DEBUG else [])
# The hosts Business Central's sign-in address may name: it receives the client secret,
# so Microsoft's own sign-in host, not just any allowed host; with DEBUG the sandbox's.
ERP_SIGN_IN_HOSTS = get_list("ERP_SIGN_IN_HOSTS", ["login.microsoftonline.com"]) + (
    ["localhost"] if DEBUG else []
)
# CA bundle the connectors trust: empty for the public CAs (certifi); in
# development the ERP sandbox writes one under var/sandbox that also holds them.
ERP_CA_BUNDLE = env.str("ERP_CA_BUNDLE", default="") or (
    str(VAR_DIR / "sandbox" / "ca-bundle.pem") if DEBUG else ""
)
# Where the demo's integrations point (make run starts the sandbox there).
ERP_SANDBOX_URL = env.str("ERP_SANDBOX_URL", default="https://localhost:8443")

# E-mail (alerts by e-mail, alerts/mail.py). With EMAIL_HOST set, mail goes out over SMTP;
# without it, the demo and tests print it (console) and production sends none, and the
# alert e-mail settings page says so. Links in e-mails are absolute: SITE_URL.
EMAIL_HOST = env.str("EMAIL_HOST", default="").strip()
EMAIL_USE_SSL = get_bool("EMAIL_USE_SSL", default=False)  # implicit TLS, usually port 465
EMAIL_USE_TLS = get_bool("EMAIL_USE_TLS", default=not EMAIL_USE_SSL)  # STARTTLS, usually 587
if EMAIL_USE_SSL and EMAIL_USE_TLS:
    raise bad("EMAIL_USE_TLS", "cannot be true together with EMAIL_USE_SSL; choose one")
EMAIL_PORT = get_int("EMAIL_PORT", 465 if EMAIL_USE_SSL else 587, minimum=1)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
# A server that does not answer within this many seconds fails the try; the task retries.
EMAIL_TIMEOUT = get_int("EMAIL_TIMEOUT", 30, minimum=1)
ALERT_EMAILS_ENABLED = bool(EMAIL_HOST) or DEBUG
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="").strip()
SITE_URL = ""
if env.str("SITE_URL", default="").strip() or DEBUG:
    SITE_URL = get_url("SITE_URL", "http://localhost:8000", {"http", "https"}).rstrip("/")
if EMAIL_HOST and not DEBUG:
    if not DEFAULT_FROM_EMAIL:
        raise bad("DEFAULT_FROM_EMAIL", "required when EMAIL_HOST is set")
    if not SITE_URL.startswith("https://"):
        raise bad("SITE_URL", "required when EMAIL_HOST is set: https://<this site's host>")
DEFAULT_FROM_EMAIL = DEFAULT_FROM_EMAIL or "Voluntary Ledger <noreply@localhost>"
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# The daily digest of alerts (alerts/tasks.py), at this hour in TIME_ZONE.
ALERT_DIGEST_HOUR = get_int("ALERT_DIGEST_HOUR", 7)
if ALERT_DIGEST_HOUR > 23:
    raise bad("ALERT_DIGEST_HOUR", f"expected an hour from 0 to 23, got {ALERT_DIGEST_HOUR}")

# The inbound API: at most this many records per request and bytes per body.
INBOUND_MAX_RECORDS = 500
INBOUND_MAX_BODY_BYTES = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = INBOUND_MAX_BODY_BYTES + 1

# Celery: Redis in CI and production; a folder on disk for the zero-setup demo.
CELERY_BROKER_URL = get_url(
    "CELERY_BROKER_URL", "filesystem://", {"filesystem", "redis", "rediss", "amqp", "pyamqp"}
)
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_IGNORE_RESULT = True  # tasks write their outcome to the database
CELERY_TASK_ACKS_LATE = True  # a task whose worker died is delivered again
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Beat writes a task's last send time after every send (not every 3 minutes): /readyz tells
# a stopped beat from the heartbeat task's last_run_at (ops/health.py). A few small writes
# a minute.
CELERY_BEAT_SYNC_EVERY = 1
# The sync engine's timings (seconds).
# A running sync beats every third of this from a thread of its own (orchestrator
# `_heartbeat`), so a slow batch never looks dead and a killed worker's run is closed by the
# sweep within this plus SYNC_SWEEP_SECONDS.
SYNC_STALE_AFTER_SECONDS = get_int("SYNC_STALE_AFTER_SECONDS", 45, minimum=5)
SYNC_APPROVAL_DELAY_SECONDS = get_int("SYNC_APPROVAL_DELAY_SECONDS", 5)
# Fair turns (issue 13 item 9): a run sends at most this many batches per task, then goes
# to the back of the queue, so one large organization cannot hold every worker.
SYNC_BATCHES_PER_TURN = get_int("SYNC_BATCHES_PER_TURN", 4, minimum=1)
# A run waiting this long in the queue (for its first turn, or parked between two) is
# queued again by the sweep (its message may have been lost); longer than a busy night's
# queue, though a second message is only harmless.
SYNC_PARKED_REQUEUE_SECONDS = get_int("SYNC_PARKED_REQUEUE_SECONDS", 600, minimum=10)
SYNC_SWEEP_SECONDS = get_int("SYNC_SWEEP_SECONDS", 30, minimum=1)
# Pending records this old with no run since they arrived lost their approval trigger
# (broker down at enqueue, a lost message): the sweep starts the run. Several approval
# delays, so the sweep never races the trigger it stands in for.
SYNC_LOST_TRIGGER_SECONDS = get_int(
    "SYNC_LOST_TRIGGER_SECONDS",
    max(60, 4 * SYNC_APPROVAL_DELAY_SECONDS),
    minimum=SYNC_APPROVAL_DELAY_SECONDS + 1,
)
# The nightly reconciliation: the local hour it is due from, and how many days of posting
# dates (up to yesterday) it reads.
RECONCILIATION_NIGHTLY_HOUR = get_int("RECONCILIATION_NIGHTLY_HOUR", 4, minimum=0)
if RECONCILIATION_NIGHTLY_HOUR > 23:
    raise bad("RECONCILIATION_NIGHTLY_HOUR", "must be an hour of the day, 0 to 23")
RECONCILIATION_NIGHTLY_DAYS = get_int("RECONCILIATION_NIGHTLY_DAYS", 31, minimum=1)
# How long a record sent to Xledger waits before its import is asked about again.
SYNC_IMPORT_CHECK_SECONDS = get_int("SYNC_IMPORT_CHECK_SECONDS", 120, minimum=1)
# Where every worker shares each ERP credential's request window (integrations/pacing.py):
# a Redis URL (by default the broker's, when the broker is Redis), "" for the database
# (the embedded default), or "off" to send unpaced.
_pacing_default = CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis", "rediss")) else ""
ERP_PACING_URL = env.str("ERP_PACING_URL", default="").strip() or _pacing_default
if ERP_PACING_URL not in ("", "off") and not ERP_PACING_URL.startswith(("redis://", "rediss://")):
    raise bad("ERP_PACING_URL", 'expected a redis:// URL, or "off"')
# A request that would wait longer for its slot is not sent; the run retries it later.
ERP_PACING_MAX_WAIT_SECONDS = get_int("ERP_PACING_MAX_WAIT_SECONDS", 30, minimum=1)

CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {
        "task": "accounting_sync.tasks.record_worker_heartbeat",
        "schedule": 60.0,
    },
    # Due automatic retries, and runs whose worker died.
    "sync-sweep": {
        "task": "accounting_sync.tasks.sweep",
        "schedule": float(SYNC_SWEEP_SECONDS),
    },
    # Each organization's nightly reconciliation, once its local night is far enough on
    # (reconciliation/nightly.py).
    "reconciliation-nightly": {
        "task": "reconciliation.tasks.nightly",
        "schedule": 900.0,
    },
    # Alerts that time alone opens or closes: 48 hours pending, the 24-hour error window.
    "alerts-check": {
        "task": "alerts.tasks.check_alerts",
        "schedule": 300.0,
    },
    # One e-mail a day to each person who chose the digest (alerts/mail.py), at a fixed
    # hour of the local day (CELERY_TIMEZONE).
    "alerts-digest": {
        "task": "alerts.tasks.send_digests",
        "schedule": crontab(minute=0, hour=ALERT_DIGEST_HOUR),
    },
    # The audit chains (S8.6): new rows every 5 minutes, every row once a day.
    "audit-chains": {
        "task": "audit.tasks.verify_chains",
        "schedule": 300.0,
    },
    "audit-chains-whole": {
        "task": "audit.tasks.verify_chains",
        "schedule": 86_400.0,
        "kwargs": {"whole": True},
    },
}

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise bad("LOG_LEVEL", f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}")
# One JSON object per line in production (for a log collector), plain lines in the demo.
# Either way each line names the request, organization, run and record it is about, where
# known (core/logcontext.py, config/logging.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="").strip().lower() or ("text" if DEBUG else "json")
if LOG_FORMAT not in {"json", "text"}:
    raise bad("LOG_FORMAT", f"expected json or text, got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "config.logging.PlainWithContext"},
        "json": {"()": "config.logging.JsonLines"},
    },
    "filters": {
        "forbidden_in_one_line": {"()": "config.logging.ForbiddenInOneLine"},
        "context": {"()": "config.logging.WithContext"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own console handler (when DEBUG) printed each of its records a second
        # time beside the root's; one handler here, so each record is printed once.
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        # A 403 is an answer, not a fault: one warning line, not a traceback.
        "django.request": {"filters": ["forbidden_in_one_line"]},
    },
}

# /metrics (ops/metrics.py): answered to a request bearing METRICS_TOKEN, or coming straight
# from an address in METRICS_ALLOWED_NETWORKS (comma-separated, e.g. 10.0.0.0/8); with
# neither set it is a 404.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="").strip()
if METRICS_TOKEN and len(METRICS_TOKEN) < 32:
    raise bad("METRICS_TOKEN", "must be a random value of at least 32 characters")
METRICS_ALLOWED_NETWORKS = get_networks("METRICS_ALLOWED_NETWORKS")
