"""Issue 11, item 7: the failed records and an audit entry say what the ERP's answer meant,
in the reader's language, beside the ERP's own words; retries count attempts after the
first; the audit CSV's time is one Excel reads as a date. Over real HTTP to the sandbox."""

from __future__ import annotations

import csv
import io
import json
import re

from django.urls import reverse
from django.utils import timezone

from accounting_sync.models import SyncLog
from tests.factories import configure, make_records
from tests.test_audit_log import client_for, export
from tests.test_failed_records import _trust_the_sandbox as _trust  # noqa: F401  (autouse)
from tests.test_failed_records import fail, failed_org, html, page_url, row_of


def test_s6_1_one_attempt_is_no_retry_and_a_503_is_explained_with_the_next_try(
    org, org_admin, erp_sandbox
) -> None:
    [record] = failed_org(org, erp_sandbox, 1)
    record.refresh_from_db()
    attempt = SyncLog.objects.get(record=record)
    assert attempt.response_status == 503
    row = row_of(html(client_for(org_admin).get(page_url(org))), record)
    retries = re.findall(r'<td class="num">(\d+)</td>', row)
    assert retries == ["0"]  # one attempt, no retry yet
    assert record.next_retry_at is not None
    when = timezone.localtime(record.next_retry_at).strftime("%H:%M")
    assert f"Xledger was unavailable (HTTP 503). Next automatic try at {when}." in " ".join(
        row.split()
    )
    assert attempt.error_message in row  # the ERP's words (or status) kept as they were


def test_s8_4_an_entry_names_the_erp_and_explains_a_refusal_answered_with_200(
    org, org_admin, erp_sandbox
) -> None:
    configure(org, erp_sandbox)
    records = make_records(org, 1)
    fail(org, erp_sandbox, records, permanent_error_rate=1.0)
    attempt = SyncLog.objects.get(record=records[0])
    assert attempt.response_status == 200 and attempt.status == "failed"
    page = html(client_for(org_admin).get(reverse("audit_entry", args=[org.slug, attempt.pk])))
    assert "<dd>Xledger" in page and "<dd>xledger" not in page
    assert "200: Xledger answered 200 (OK) but refused the content of the record." in page
    assert attempt.error_message in page


def test_s8_5_csv_time_is_a_plain_local_date_and_time_json_stays_exact(org, auditor) -> None:
    from tests.test_audit_log import make_attempts

    org.time_zone = "America/New_York"  # the organization's zone, not the server's
    org.save()
    [attempt] = make_attempts(org, 1)
    _response, text = export(client_for(auditor), org, "csv", {})
    [row] = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))
    local = attempt.created_at.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
    assert row["time"] == local.strftime("%Y-%m-%d %H:%M:%S")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row["time"])
    _response, text = export(client_for(auditor), org, "json", {})
    exact = json.loads(text)["rows"][0]["time"]
    assert exact.startswith(
        attempt.created_at.astimezone(timezone.get_current_timezone()).isoformat()[:19]
    )
    assert "." in exact or attempt.created_at.microsecond == 0
