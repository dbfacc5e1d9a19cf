"""Issue 12 (security), items 1 and 4-7: each attack as a reviewer made it, and its refusal.

1. CSV formula injection in the audit log export.
4. A JSON number too long for Python to read in POST /api/v1/records.
5. The audit log's and trail's keyset cursor probing another organization's rows.
6. Editing an integration in Django's admin, around the application's safeguards.
7. Caller text (?note=) written into the administrative trail by an export GET.
"""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from accounting_sync.models import FinancialRecord, SyncLog, SyncRun
from audit.models import AdminAction
from integrations.models import Integration
from tests.test_inbound_api import post_raw, record

# What the review sent as claimant, category, error message and ERP id; and what OWASP
# adds: a leading minus, tab and carriage return.
HOSTILE = {
    "claimant_name": '=HYPERLINK("http://x.invalid","c")',
    "category": "@SUM(1+1)",
    "error_message": "+SUM(1+1)*cmd|' /C calc'!A0",
    "erp_id": "-2+3",
}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A number as the export writes it: digits, an optional minus and decimal comma.
REAL_NUMBER = re.compile(r"-?[0-9]+(,[0-9]+)?")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def attempt(org, n: int, **values: str) -> SyncLog:
    """One failed attempt of a new record; `values` set the record's and attempt's text."""
    run = SyncRun.objects.create(
        organization=org, connector="xledger", trigger="manual", status="failed"
    )
    record_fields = {"claimant_name": "Kari Nordmann", "category": "travel"}
    record_fields.update({k: v for k, v in values.items() if k in record_fields})
    financial = FinancialRecord.objects.create(
        organization=org,
        source_id=f"claim-{n}",
        kind="reimbursement",
        amount=Decimal("450.00"),
        expense_date="2026-03-01",
        approved_at="2026-03-02T10:00:00+01:00",
        claimant_reference="V-1",
        **record_fields,
    )
    return SyncLog.objects.create(
        run=run,
        record=financial,
        organization=org,
        connector="xledger",
        attempt_number=1,
        trigger="manual",
        status="failed",
        reference=financial.reference,
        error_class="permanent",
        error_message=values.get("error_message", ""),
        erp_id=values.get("erp_id", ""),
        payload={},
        duration_ms=5,
    )


def download(client: Client, org, fmt: str, params: dict | None = None) -> tuple[object, str]:
    response = client.get(reverse("audit_export", args=[org.slug, fmt]), params or {})
    assert response.status_code == 200, response
    # streaming_content is not on django-stubs' test-client response.
    content = response.streaming_content  # type: ignore[attr-defined]
    return response, b"".join(content).decode("utf-8")


# --- 1. CSV formula injection ---------------------------------------------------------------


def test_issue12_item1_csv_export_neutralises_formulas_in_every_text_cell(org, auditor) -> None:
    attempt(org, 1, **HOSTILE)
    attempt(org, 2, category="\tcmd", claimant_name="\r=1+1", error_message="-1+1")

    _response, text = download(client_for(auditor), org, "csv")

    lines = list(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))
    header, rows = lines[0], lines[1:]
    assert len(rows) == 2
    for row in rows:
        for column, cell in zip(header, row, strict=True):
            assert not cell.startswith(FORMULA_START) or REAL_NUMBER.fullmatch(cell), (
                column,
                cell,
            )
    by_id = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    hostile = next(r for r in by_id.values() if r["claimant"].endswith('"c")'))
    # Shown as the text it was, behind Excel's text marker.
    assert hostile["claimant"] == "'" + HOSTILE["claimant_name"]
    assert hostile["category"] == "'" + HOSTILE["category"]
    assert hostile["error_message"] == "'" + HOSTILE["error_message"]
    assert hostile["erp_id"] == "'" + HOSTILE["erp_id"]
    assert {r["amount"] for r in by_id.values()} == {"450,00"}  # numbers stay numbers


def test_issue12_item1_a_negative_amount_stays_a_number() -> None:
    """The database refuses amounts of zero or less, so the line is built directly: a
    minus in a number column is a number, not a formula, and is written unchanged."""
    from django.utils import timezone

    from audit.exports import COLUMNS, csv_line

    when = timezone.now()
    row = (
        7, when, "Org", "VH-1-7", "reimbursement", "-travel", Decimal("-12.50"), "NOK",
        "@Kari", 1, "manual", "failed", "permanent", "=1+1", None, -1, 5, "+47", None, "a", "b",
    )  # fmt: skip
    line = csv_line(row, timezone.get_current_timezone())
    cells = dict(zip(COLUMNS, next(csv.reader(io.StringIO(line), delimiter=";")), strict=True))
    assert (cells["amount"], cells["response_status"]) == ("-12,50", "-1")
    assert (cells["category"], cells["claimant"]) == ("'-travel", "'@Kari")
    assert (cells["error_message"], cells["erp_id"]) == ("'=1+1", "'+47")


def test_issue12_item1_json_export_keeps_values_as_stored(org, auditor) -> None:
    """Programs read the JSON, not spreadsheets: the same rows, values untouched."""
    attempt(org, 1, **HOSTILE)
    _response, text = download(client_for(auditor), org, "json")
    (row,) = json.loads(text)["rows"]
    assert (row["claimant"], row["category"], row["error_message"], row["erp_id"]) == (
        HOSTILE["claimant_name"],
        HOSTILE["category"],
        HOSTILE["error_message"],
        HOSTILE["erp_id"],
    )


# --- 4. Oversized JSON numbers ----------------------------------------------------------------


def test_issue12_item4_a_4300_digit_integer_is_a_400_naming_the_field(api_key) -> None:
    body = json.dumps(record(amount="AMOUNT")).replace('"AMOUNT"', "9" * 4301)

    response = post_raw(Client(), api_key, body)

    assert response.status_code == 400, response.content
    assert set(response.json()["errors"]) == {"amount"}
    assert not FinancialRecord.objects.exists()


@pytest.mark.parametrize(
    ("literal", "field"),
    [
        pytest.param("1" * 5000, "source_id", id="integer-in-a-text-field"),
        pytest.param("-" + "1" * 5000, "category", id="negative-integer"),
        pytest.param("1." + "5" * 100_000, "amount", id="long-float"),
        pytest.param("1" * 5000 + "e5", "kind", id="long-exponent-float"),
    ],
)
def test_issue12_item4_any_oversized_number_is_a_400_naming_its_field(
    api_key, literal: str, field: str
) -> None:
    body = json.dumps(record(**{field: "NUMBER"})).replace('"NUMBER"', literal)
    response = post_raw(Client(), api_key, body)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("9" * 5000, id="bare-number"),
        pytest.param("[" + "9" * 5000 + "]", id="list-of-a-number"),
        pytest.param(
            json.dumps(record(claimant={"reference": "V", "name": "N"})).replace('"N"', "7" * 5000),
            id="claimant-name",
        ),
    ],
)
def test_issue12_item4_oversized_numbers_anywhere_are_a_400(api_key, body: str) -> None:
    response = post_raw(Client(), api_key, body)
    assert response.status_code == 400, response.content


def test_issue12_item4_a_huge_unknown_field_name_is_not_echoed_whole(api_key) -> None:
    name = "x" * 100_000
    response = post_raw(Client(), api_key, json.dumps(record(**{name: 1})))
    assert response.status_code == 400
    (echoed,) = response.json()["errors"]
    assert echoed.startswith("xxx") and len(echoed) < 100


# --- 5. Keyset cursors stay inside what the viewer may see ---------------------------------


@pytest.mark.parametrize("direction", ["before", "after"])
def test_issue12_item5_another_organizations_cursor_reveals_nothing(
    org, other_org, org_admin, direction: str
) -> None:
    own = [attempt(org, n) for n in range(3)]
    theirs = attempt(other_org, 100)
    client = client_for(org_admin)
    url = reverse("audit_log", args=[org.slug])

    foreign = client.get(url, {direction: theirs.pk})
    unknown = client.get(url, {direction: theirs.pk + 10_000})

    assert foreign.status_code == unknown.status_code == 404
    assert theirs.reference not in foreign.content.decode()
    # The viewer's own cursors still page as before.
    assert client.get(url, {"before": own[-1].pk}).status_code == 200


@pytest.mark.parametrize("direction", ["before", "after"])
def test_issue12_item5_the_trail_ignores_another_organizations_cursor(
    org, other_org, org_admin, other_admin, direction: str
) -> None:
    AdminAction.record(org_admin, org, AdminAction.Kind.CONNECTION_TESTED)
    theirs = AdminAction.record(other_admin, other_org, AdminAction.Kind.CONNECTION_TESTED)
    client = client_for(org_admin)

    response = client.get(reverse("admin_trail", args=[org.slug]), {direction: theirs.pk})

    assert response.status_code == 404
    assert "other-admin" not in response.content.decode()


@pytest.mark.parametrize("cursor", ["²", "9" * 40, "-1", "1e3"])
def test_issue12_item5_a_malformed_cursor_is_ignored_not_a_500(org, org_admin, cursor) -> None:
    attempt(org, 1)
    response = client_for(org_admin).get(reverse("audit_log", args=[org.slug]), {"before": cursor})
    assert response.status_code == 200
    assert len(response.context["rows"]) == 1  # the first page


# --- 6. Django's admin cannot change integrations --------------------------------------------


def test_issue12_item6_the_admin_cannot_change_an_integration(org, global_admin) -> None:
    integration = org.integration
    Integration.objects.filter(pk=integration.pk).update(
        enabled=True, base_url="https://demo.xledger.net/graphql"
    )
    client = client_for(global_admin)
    change_url = reverse("admin:integrations_integration_change", args=[integration.pk])

    page = client.get(change_url)
    saved = client.post(
        change_url,
        {"organization": org.pk, "connector": "xledger", "enabled": "on",
         "base_url": "https://attacker.invalid/graphql"},
    )  # fmt: skip
    added = client.get(reverse("admin:integrations_integration_add"))
    deleted = client.post(
        reverse("admin:integrations_integration_delete", args=[integration.pk]), {"post": "yes"}
    )

    assert page.status_code == 200 and b'name="_save"' not in page.content  # a view
    assert (saved.status_code, added.status_code, deleted.status_code) == (403, 403, 403)
    integration.refresh_from_db()
    assert integration.base_url == "https://demo.xledger.net/graphql" and integration.enabled
    assert not AdminAction.objects.exists()


# --- 7. Exports are trailed with a server-side description -----------------------------------


def test_issue12_item7_note_text_never_reaches_the_trail(org, auditor) -> None:
    attempt(org, 1)
    note = "Approved by the CFO, transfer 1,000,000 NOK to NO9386011117947"
    client = client_for(auditor)

    _response, text = download(client, org, "json", {"status": "failed", "note": note})
    download(client, org, "csv", {"note": note})

    csv_entry, json_entry = AdminAction.objects.order_by("-id")
    assert json_entry.detail == {"format": "json", "filter": {"status": "failed"}, "rows": 1}
    assert csv_entry.detail == {"format": "csv", "filter": {}, "rows": 1}
    assert json.loads(text)["meta"]["filter"] == {"status": "failed"}
    trail = client.get(reverse("admin_trail", args=[org.slug])).content.decode()
    assert note not in trail and "CFO" not in trail


def test_issue12_item7_a_message_as_a_reference_filter_is_refused(org, auditor) -> None:
    response = client_for(auditor).get(
        reverse("audit_export", args=[org.slug, "csv"]), {"reference": "Call +47 999 99 999"}
    )
    assert response.status_code == 400
    assert not AdminAction.objects.exists()
