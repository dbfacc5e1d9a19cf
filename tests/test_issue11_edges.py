"""Issue 11, item 7: rough edges outside the browser (the header badge and the alerts list
agree, "just now", a 403 in one log line, no SQLite W040 at start, the tab icon)."""

from __future__ import annotations

import re
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from alerts.models import Alert
from core.templatetags.formatting import ago
from tests.test_alerts_pages import client_for, failing_record
from tests.test_settings_env import manage


def test_s7_5_the_badge_counts_exactly_what_the_list_marks_unread(org, org_admin) -> None:
    failing_record(org, 1)
    resolved = failing_record(org, 2)
    Alert.resolve(Alert.objects.filter(pk=resolved.pk), timezone.now())  # never read
    failing_record(org, 3)
    client = client_for(org_admin)
    page = client.get(reverse("alert_list")).content.decode()
    badge = re.search(r'<span class="alert-count">(\d+)</span>', page)
    assert badge is not None
    marked = page.count('<span class="alert-new">Unread</span>')
    assert int(badge.group(1)) == marked == 2


def test_last_seen_under_a_minute_is_just_now() -> None:
    now = timezone.now()
    assert ago(now - timedelta(seconds=20), now) == "just now"
    assert ago(now - timedelta(minutes=5, seconds=3), now) == "5\xa0minutes ago"


def test_s5_the_overview_says_the_worker_was_seen_just_now(global_admin) -> None:
    from accounting_sync.models import WorkerHeartbeat

    WorkerHeartbeat.objects.create(hostname="w1", seen_at=timezone.now())
    page = client_for(global_admin).get(reverse("overview")).content.decode()
    assert "Background worker last seen just now." in page
    assert "0 minutes" not in page


def test_favicon_ico_answers_with_an_image(client, db) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert b"<svg" in response.content
    login = client.get(reverse("login")).content.decode()
    assert '<link rel="icon" href="/static/img/favicon.svg"' in login


LOG_A_403 = """
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseForbidden
from django.test import RequestFactory
from django.utils.log import log_response
try:
    raise PermissionDenied
except PermissionDenied as exc:
    log_response("Forbidden (Permission denied): %s", "/orgs/x/", response=HttpResponseForbidden(),
                 request=RequestFactory().get("/orgs/x/"), exception=exc)
"""


def test_a_403_is_one_warning_line_in_the_server_log(tmp_path) -> None:
    # How Django logs every PermissionDenied, with the settings' LOGGING as `make run` has it.
    result = manage(tmp_path, "shell", "-c", LOG_A_403, DEBUG="true")
    lines = [line for line in result.stderr.splitlines() if "axes" not in line]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert "WARNING django.request: Forbidden (Permission denied): /orgs/x/" in lines[0]


def test_make_run_starts_without_the_sqlite_w040_warnings(tmp_path) -> None:
    # runserver checks with the database, as `check --database` does.
    result = manage(tmp_path, "check", "--database", "default", DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert "W040" not in result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_w040_is_silenced_only_on_sqlite(tmp_path) -> None:
    show = "from django.conf import settings; print(settings.SILENCED_SYSTEM_CHECKS)"
    sqlite = manage(tmp_path, "shell", "-c", show, DEBUG="true")
    postgres = manage(
        tmp_path, "shell", "-c", show, DEBUG="true", DATABASE_URL="postgres://u:p@localhost/x"
    )
    assert sqlite.stdout.strip().splitlines()[-1] == "['models.W040']"
    assert postgres.stdout.strip().splitlines()[-1] == "[]", postgres.stderr
