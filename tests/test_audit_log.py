"""S8: the sync audit log, its filters, entries and exports, as the server answers them."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounting_sync.models import FinancialRecord, SyncLog, SyncRun
from audit.models import AdminAction
from core.chain import head

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

OSLO = ZoneInfo("Europe/Oslo")


def make_attempts(
    org,
    count: int,
    *,
    status="succeeded",
    kind="reimbursement",
    when: datetime | None = None,
    error="",
    start: int = 0,
) -> list[SyncLog]:
    run = SyncRun.objects.create(
        organization=org, connector="xledger", trigger="manual", status="succeeded"
    )
    rows = []
    for n in range(start, start + count):
        record = FinancialRecord.objects.create(
            organization=org,
            source_id=f"{org.slug}-{kind}-{status}-{n}",
            kind=kind,
            category="reise",
            amount="1234.50",
            expense_date="2026-03-01",
            approved_at="2026-03-02T10:00:00+01:00",
            claimant_reference="V-1",
            claimant_name="Åse Ødegård",
            description="Tog Oslo-Hamar",
        )
        rows.append(
            SyncLog(
                run=run,
                record=record,
                organization=org,
                connector="xledger",
                attempt_number=1,
                trigger="manual",
                status=status,
                error_message=error,
                created_at=when,  # type: ignore[misc]  # None: the chain's bulk_create sets it
                error_class="permanent" if error else "",
                payload={"inputs": [{"clientId": f"{record.reference}:D", "amount": "1234.50"}]},
                reference=record.reference,
                response_status=200,
                duration_ms=42,
            )
        )
    SyncLog.objects.bulk_create(rows)
    return list(SyncLog.objects.filter(organization=org).order_by("-id"))


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def log_url(org) -> str:
    return reverse("audit_log", args=[org.slug])


def test_s8_1_newest_first_fifty_a_page_with_older_and_newer_links(org, auditor) -> None:
    rows = make_attempts(org, 120)  # newest first
    client = client_for(auditor)

    first = client.get(log_url(org)).context
    assert [r.pk for r in first["rows"]] == [r.pk for r in rows[:50]]
    assert first["newer"] is None and first["older"] == rows[49].pk

    second = client.get(log_url(org), {"before": first["older"]}).context
    assert [r.pk for r in second["rows"]] == [r.pk for r in rows[50:100]]
    back = client.get(log_url(org), {"after": second["newer"]}).context
    assert [r.pk for r in back["rows"]] == [r.pk for r in rows[:50]]

    last = client.get(log_url(org), {"before": rows[99].pk}).context
    assert len(last["rows"]) == 20 and last["older"] is None


def test_s8_1_a_deep_page_costs_the_same_queries_as_the_first(org, auditor) -> None:
    rows = make_attempts(org, 160)
    client = client_for(auditor)

    def queries(params) -> int:
        with CaptureQueriesContext(connection) as captured:
            client.get(log_url(org), params)
        return len(captured)

    assert queries({}) == queries({"before": rows[120].pk})


def test_s8_2_a_date_range_keeps_whole_days_in_oslo(org, auditor) -> None:
    make_attempts(org, 2, when=datetime(2026, 3, 1, 23, 30, tzinfo=OSLO))
    inside = make_attempts(org, 3, when=datetime(2026, 3, 2, 0, 15, tzinfo=OSLO), start=10)
    make_attempts(org, 1, when=datetime(2026, 3, 3, 0, 0, tzinfo=OSLO), start=20)

    page = client_for(auditor).get(
        log_url(org), {"date_from": "2026-03-02", "date_to": "2026-03-02"}
    )
    assert {r.pk for r in page.context["rows"]} == {r.pk for r in inside[:3]}


def test_s8_3_status_failed_shows_only_failed_attempts_with_their_errors(org, auditor) -> None:
    make_attempts(org, 3)
    make_attempts(org, 2, status="failed", error="Account '9999' does not exist", start=50)

    page = client_for(auditor).get(log_url(org), {"status": "failed"})

    assert {r.status for r in page.context["rows"]} == {"failed"}
    assert len(page.context["rows"]) == 2
    assert "Account &#x27;9999&#x27; does not exist" in page.content.decode()


def test_s8_7_filter_by_record_type_connector_and_reference(org, auditor) -> None:
    make_attempts(org, 2)
    honoraria = make_attempts(org, 2, kind="honorarium", start=30)[:2]
    client = client_for(auditor)

    by_type = client.get(log_url(org), {"record_type": "honorarium"}).context["rows"]
    assert {r.pk for r in by_type} == {r.pk for r in honoraria}
    by_reference = client.get(log_url(org), {"reference": honoraria[0].reference}).context["rows"]
    assert [r.pk for r in by_reference] == [honoraria[0].pk]
    assert not client.get(log_url(org), {"connector": "business_central"}).context["rows"]


def test_s8_7_a_global_admin_filters_every_organization(org, other_org, global_admin) -> None:
    make_attempts(org, 2)
    theirs = make_attempts(other_org, 3)
    client = client_for(global_admin)

    everything = client.get(reverse("global_audit_log")).context["rows"]
    assert len(everything) == 5
    only_hlf = client.get(reverse("global_audit_log"), {"organization": "hlf"}).context["rows"]
    assert {r.pk for r in only_hlf} == {r.pk for r in theirs}


def test_s8_1_an_org_admin_sees_only_their_organization(org, other_org, org_admin) -> None:
    make_attempts(other_org, 2)
    client = client_for(org_admin)
    assert not client.get(log_url(org)).context["rows"]
    assert client.get(reverse("global_audit_log")).status_code == 403


def test_s8_4_an_entry_shows_payload_response_timing_and_its_chain(org, auditor) -> None:
    first = make_attempts(org, 1, status="failed", error="Service unavailable")[0]
    retry = SyncLog.objects.create(
        run=first.run,
        record=first.record,
        organization=org,
        connector="xledger",
        attempt_number=2,
        trigger="retry",
        status="succeeded",
        reference=first.reference,
        payload={"inputs": [{"clientId": f"{first.reference}:D"}]},
        retry_of=first,
        erp_id="9001",
        duration_ms=17,
    )

    page = client_for(auditor).get(reverse("audit_entry", args=[org.slug, first.pk]))
    text = page.content.decode()
    assert f"{first.reference}:D" in text and "Service unavailable" in text and "42 ms" in text
    assert f"(retries attempt {first.pk})" in text  # the chain of attempts, in order
    assert text.index(f'/audit/{first.pk}/"') < text.index(f'/audit/{retry.pk}/"')


def test_s8_4_an_entry_of_another_organization_is_not_found(org, other_org, org_admin) -> None:
    theirs = make_attempts(other_org, 1)[0]
    response = client_for(org_admin).get(reverse("audit_entry", args=[org.slug, theirs.pk]))
    assert response.status_code == 404


def export(client: Client, org, fmt: str, params: dict) -> tuple[TestResponse, str]:
    response = client.get(reverse("audit_export", args=[org.slug, fmt]), params)
    # streaming_content is not on django-stubs' test-client response.
    content = response.streaming_content  # type: ignore[attr-defined]
    return response, b"".join(content).decode("utf-8")


def test_s8_5_csv_holds_everything_the_filter_matches_and_opens_in_norwegian_excel(
    org, auditor
) -> None:
    make_attempts(org, 70, status="failed", error="Perioden er stengt")
    make_attempts(org, 5, start=200)

    response, text = export(client_for(auditor), org, "csv", {"status": "failed"})

    assert text.startswith("\ufeff")  # Excel reads UTF-8 only with a BOM
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))
    assert len(rows) == 70 == int(response["X-Row-Count"])
    assert {row["status"] for row in rows} == {"failed"}
    assert rows[0]["amount"] == "1234,50" and rows[0]["claimant"] == "Åse Ødegård"


def test_s8_5_json_export_carries_the_chain_head(org, auditor) -> None:
    make_attempts(org, 3)
    _response, text = export(client_for(auditor), org, "json", {})
    document = json.loads(text)
    assert document["meta"]["rows"] == 3 and len(document["rows"]) == 3
    assert document["meta"]["chain_heads"] == {org.slug: head(SyncLog, org.pk)}
    assert document["rows"][0]["row_hash"] == head(SyncLog, org.pk)


def test_s8_5_each_export_is_recorded_with_who_when_filter_and_rows(org, auditor) -> None:
    make_attempts(org, 4, status="failed", error="x")
    export(client_for(auditor), org, "csv", {"status": "failed"})
    action = AdminAction.objects.get(kind="audit_exported")
    assert action.actor == auditor and action.created_at
    assert action.detail == {"format": "csv", "filter": {"status": "failed"}, "rows": 4}


@pytest.mark.parametrize("fmt", ["xml", "csv.exe"])
def test_an_unknown_export_format_is_not_found(org, auditor, fmt) -> None:
    response = client_for(auditor).get(reverse("audit_export", args=[org.slug, fmt]))
    assert response.status_code == 404


def test_s8_the_audit_log_is_linked_from_the_organization_page_and_the_overview(
    org, auditor, global_admin
) -> None:
    own = client_for(auditor).get(reverse("organization_home", args=[org.slug]))
    assert reverse("audit_log", args=[org.slug]) in own.content.decode()
    overview = client_for(global_admin).get(reverse("overview"))
    assert reverse("global_audit_log") in overview.content.decode()


def test_s8_1_newest_first_means_by_time_whatever_order_rows_were_written(org, auditor) -> None:
    later = make_attempts(org, 2, when=datetime(2026, 3, 2, 12, 0, tzinfo=OSLO))
    # Written afterwards, but from the day before.
    earlier = make_attempts(org, 2, when=datetime(2026, 3, 1, 12, 0, tzinfo=OSLO), start=10)[:2]

    rows = client_for(auditor).get(log_url(org)).context["rows"]

    assert [r.pk for r in rows] == [r.pk for r in later] + [r.pk for r in earlier]


def test_s8_1_a_page_boundary_inside_one_second_loses_and_repeats_nothing(org, auditor) -> None:
    rows = make_attempts(org, 75)  # one bulk insert: every row has the same time
    client = client_for(auditor)

    first = client.get(log_url(org)).context
    second = client.get(log_url(org), {"before": first["older"]}).context

    shown = [r.pk for r in first["rows"]] + [r.pk for r in second["rows"]]
    assert shown == [r.pk for r in rows]


def test_s8_5_an_export_streams_in_pieces_with_every_row_once(org, auditor, monkeypatch) -> None:
    from audit import exports

    monkeypatch.setattr(exports, "LINES_PER_WRITE", 7)
    rows = make_attempts(org, 30, status="failed", error="Feil i «kontoplan»")
    response = client_for(auditor).get(reverse("audit_export", args=[org.slug, "csv"]))
    # streaming_content is not on django-stubs' test-client response.
    pieces = list(response.streaming_content)  # type: ignore[attr-defined]
    text = b"".join(pieces).decode("utf-8")

    assert len(pieces) >= 5  # written as it goes, not built whole
    lines = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))
    assert [int(line["id"]) for line in lines] == [r.pk for r in rows]
    assert lines[0]["error_message"] == "Feil i «kontoplan»"

    _response, document = export(client_for(auditor), org, "json", {})
    assert [row["id"] for row in json.loads(document)["rows"]] == [r.pk for r in rows]


def test_s8_5_csv_lines_are_quoted_exactly_as_the_csv_module_quotes() -> None:
    from decimal import Decimal

    from django.utils import timezone

    from audit.exports import COLUMNS, csv_line

    when = datetime(2026, 3, 2, 9, 30, 5, 120000, tzinfo=OSLO)
    tricky = (
        42, when, 'Ås; "Æra" IL', "VH-1-42", "reimbursement", "reise\nfly", Decimal("1234.50"),
        "NOK", "Øystein «Ø» Ødegård", 2, "retry", "failed", "permanent",
        'Konto "7130" finnes ikke;\r\nsjekk kontoplanen', None, None, 17, "", None,
        "a" * 64, "b" * 64,
    )  # fmt: skip
    assert len(tricky) == len(COLUMNS)
    expected = io.StringIO()
    csv.writer(expected, delimiter=";").writerow(
        # The time as Excel reads a date: local, to the second (issue 11).
        [
            tricky[0],
            when.astimezone(timezone.get_current_timezone()).strftime("%Y-%m-%d %H:%M:%S"),
            *tricky[2:6],
            "1234,50",
            *tricky[7:],
        ]
    )

    assert csv_line(tricky, timezone.get_current_timezone()) == expected.getvalue()
    parsed = next(csv.reader(io.StringIO(expected.getvalue()), delimiter=";"))
    assert parsed[13] == 'Konto "7130" finnes ikke;\r\nsjekk kontoplanen'
