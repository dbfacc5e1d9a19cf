"""POST /api/v1/records: what the volunteer app's developers and finance users see.

Every test checks what someone would notice: the status code, the field names in
`errors`, how many rows were stored and what they hold.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounting_sync.models import FinancialRecord
from organizations.models import ApiKey, Organization

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

APPROVED_AT = "2026-03-02T10:15:00+01:00"
APPROVED_INSTANT = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
MISSING = object()  # record(amount=MISSING) leaves the field out


def record(**overrides: Any) -> dict[str, Any]:
    """A valid record; an override of MISSING leaves that field out."""
    body: dict[str, Any] = {
        "source_id": "claim-1001",
        "kind": "reimbursement",
        "category": "travel",
        "amount": "450.00",
        "currency": "NOK",
        "expense_date": "2026-03-01",
        "approved_at": APPROVED_AT,
        "claimant": {"reference": "vol-17", "name": "Kari Nordmann"},
        "description": "Train to the regional meeting",
    }
    body.update(overrides)
    return {name: value for name, value in body.items() if value is not MISSING}


def records(count: int, prefix: str = "claim") -> list[dict[str, Any]]:
    return [record(source_id=f"{prefix}-{number}") for number in range(count)]


def post(client: Client, key: str, body: Any) -> TestResponse:
    return client.post(
        reverse("api_records"),
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def post_raw(
    client: Client, key: str, data: bytes | str, content_type: str = "application/json"
) -> TestResponse:
    return client.post(
        reverse("api_records"),
        data=data,
        content_type=content_type,
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def stored(source_id: str = "claim-1001") -> FinancialRecord:
    return FinancialRecord.objects.get(source_id=source_id)


def error_fields(response: TestResponse) -> set[str]:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "invalid"
    for messages in body["errors"].values():
        assert messages
        assert all(isinstance(message, str) and message for message in messages)
    return set(body["errors"])


# --- created ---------------------------------------------------------------------------------


def test_the_url_is_api_v1_records() -> None:
    assert reverse("api_records") == "/api/v1/records"


def test_one_record_is_created_with_201_and_a_pending_reference(
    client: Client, api_key: str, org: Organization
) -> None:
    response = post(client, api_key, record())

    assert response.status_code == 201
    row = stored()
    assert response.json() == {
        "created": 1,
        "unchanged": 0,
        "records": [
            {
                "source_id": "claim-1001",
                "status": "created",
                "reference": f"VH-{org.id}-{row.id}",
                "state": "pending",
            }
        ],
    }
    assert FinancialRecord.objects.count() == 1


def test_a_created_record_stores_exactly_what_was_sent(
    client: Client, api_key: str, org: Organization
) -> None:
    post(client, api_key, record())

    row = stored()
    assert row.organization == org
    assert row.kind == "reimbursement"
    assert row.category == "travel"
    assert row.amount == Decimal("450.00")
    assert str(row.amount) == "450.00"
    assert row.currency == "NOK"
    assert row.expense_date.isoformat() == "2026-03-01"
    assert row.approved_at == APPROVED_INSTANT
    assert row.claimant_reference == "vol-17"
    assert row.claimant_name == "Kari Nordmann"
    assert row.description == "Train to the regional meeting"
    assert row.state == FinancialRecord.State.PENDING
    assert row.reference == f"VH-{org.id}-{row.id}"


def test_currency_defaults_to_nok_when_omitted(client: Client, api_key: str) -> None:
    response = post(client, api_key, record(currency=MISSING))

    assert response.status_code == 201
    assert stored().currency == "NOK"


def test_another_iso_currency_is_stored_as_sent(client: Client, api_key: str) -> None:
    response = post(client, api_key, record(currency="SEK"))

    assert response.status_code == 201
    assert stored().currency == "SEK"


def test_description_may_be_omitted_and_is_stored_empty(client: Client, api_key: str) -> None:
    response = post(client, api_key, record(description=MISSING))

    assert response.status_code == 201
    assert stored().description == ""


@pytest.mark.parametrize(
    "approved_at",
    [
        pytest.param("2026-03-02T10:15:00+01:00", id="plus-one"),
        pytest.param("2026-03-02T09:15:00Z", id="zulu"),
        pytest.param("2026-03-02T09:15:00+00:00", id="plus-zero"),
        pytest.param("2026-03-02T04:15:00-05:00", id="minus-five"),
    ],
)
def test_approved_at_is_stored_as_the_same_instant(
    client: Client, api_key: str, approved_at: str
) -> None:
    response = post(client, api_key, record(approved_at=approved_at))

    assert response.status_code == 201
    assert stored().approved_at == APPROVED_INSTANT


def test_an_honorarium_is_accepted(client: Client, api_key: str) -> None:
    response = post(client, api_key, record(kind="honorarium", category="board-fee"))

    assert response.status_code == 201
    assert stored().kind == FinancialRecord.Kind.HONORARIUM


def test_a_list_of_several_records_is_created_with_results_in_request_order(
    client: Client, api_key: str, org: Organization
) -> None:
    source_ids = ["claim-c", "claim-a", "claim-b"]
    response = post(client, api_key, [record(source_id=source_id) for source_id in source_ids])

    assert response.status_code == 201
    body = response.json()
    assert body["created"] == 3
    assert body["unchanged"] == 0
    assert [result["source_id"] for result in body["records"]] == source_ids
    for result in body["records"]:
        assert result["status"] == "created"
        assert result["state"] == "pending"
        assert result["reference"] == f"VH-{org.id}-{stored(result['source_id']).id}"
    assert FinancialRecord.objects.count() == 3


def test_a_list_with_one_record_is_created(client: Client, api_key: str) -> None:
    response = post(client, api_key, [record()])

    assert response.status_code == 201
    assert response.json()["created"] == 1
    assert FinancialRecord.objects.count() == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("category", "c" * 64, id="category-64-chars"),
        pytest.param("description", "d" * 500, id="description-500-chars"),
        pytest.param("source_id", "s" * 100, id="source_id-100-chars"),
        pytest.param("amount", "0.01", id="amount-one-cent"),
        pytest.param("amount", "9999999999.99", id="amount-largest"),
        pytest.param("expense_date", "2026-03-02", id="expense_date-same-day-as-approved"),
    ],
)
def test_values_at_the_limits_are_accepted(
    client: Client, api_key: str, field: str, value: str
) -> None:
    response = post(client, api_key, record(**{"source_id": "edge", field: value}))

    assert response.status_code == 201, response.content
    row = FinancialRecord.objects.get()
    assert str(getattr(row, field)) == value


def test_approved_at_a_little_ahead_of_our_clock_is_accepted(client: Client, api_key: str) -> None:
    soon = timezone.now() + timedelta(minutes=2)
    response = post(
        client,
        api_key,
        # Sent as the volunteer app sends it: its local time with its offset, and the local
        # date (in UTC the date may still be yesterday's, just after midnight).
        record(
            approved_at=timezone.localtime(soon).isoformat(),
            expense_date=timezone.localdate(soon).isoformat(),
        ),
    )

    assert response.status_code == 201, response.content
    assert stored().approved_at == soon


# --- the same record again -----------------------------------------------------------------


def test_the_same_record_again_answers_200_unchanged_and_stores_nothing_new(
    client: Client, api_key: str, org: Organization
) -> None:
    first = post(client, api_key, record())
    again = post(client, api_key, record())

    assert first.status_code == 201
    assert again.status_code == 200
    row = stored()
    assert again.json() == {
        "created": 0,
        "unchanged": 1,
        "records": [
            {
                "source_id": "claim-1001",
                "status": "unchanged",
                "reference": f"VH-{org.id}-{row.id}",
                "state": "pending",
            }
        ],
    }
    assert again.json()["records"][0]["reference"] == first.json()["records"][0]["reference"]
    assert FinancialRecord.objects.count() == 1


@pytest.mark.parametrize(
    "approved_at",
    [
        pytest.param("2026-03-02T09:15:00Z", id="zulu"),
        pytest.param("2026-03-02T09:15:00+00:00", id="plus-zero"),
        pytest.param("2026-03-02T11:15:00+02:00", id="plus-two"),
        pytest.param("2026-03-02T10:15:00.000+01:00", id="with-milliseconds"),
    ],
)
def test_approved_at_in_another_offset_for_the_same_instant_is_unchanged(
    client: Client, api_key: str, approved_at: str
) -> None:
    assert post(client, api_key, record()).status_code == 201

    again = post(client, api_key, record(approved_at=approved_at))

    assert again.status_code == 200, again.content
    assert again.json()["unchanged"] == 1
    assert FinancialRecord.objects.count() == 1


def test_an_amount_sent_again_unchanged_after_a_stored_round_trip_is_unchanged(
    client: Client, api_key: str
) -> None:
    assert post(client, api_key, record(amount="1234567.80")).status_code == 201

    again = post(client, api_key, record(amount="1234567.80"))

    assert again.status_code == 200
    assert stored().amount == Decimal("1234567.80")


def test_omitted_currency_and_description_then_sent_explicitly_are_unchanged(
    client: Client, api_key: str
) -> None:
    assert post(client, api_key, record(currency=MISSING, description=MISSING)).status_code == 201

    again = post(client, api_key, record(currency="NOK", description=""))

    assert again.status_code == 200, again.content
    assert FinancialRecord.objects.count() == 1


def test_a_list_mixing_existing_identical_and_new_records_creates_only_the_new_ones(
    client: Client, api_key: str, org: Organization
) -> None:
    assert post(client, api_key, record(source_id="claim-b")).status_code == 201
    existing_reference = f"VH-{org.id}-{stored('claim-b').id}"

    response = post(
        client,
        api_key,
        [record(source_id="claim-a"), record(source_id="claim-b"), record(source_id="claim-c")],
    )

    assert response.status_code == 201
    body = response.json()
    assert body["created"] == 2
    assert body["unchanged"] == 1
    assert [(result["source_id"], result["status"]) for result in body["records"]] == [
        ("claim-a", "created"),
        ("claim-b", "unchanged"),
        ("claim-c", "created"),
    ]
    assert body["records"][1]["reference"] == existing_reference
    assert FinancialRecord.objects.count() == 3


def test_a_list_of_only_existing_records_answers_200(client: Client, api_key: str) -> None:
    assert post(client, api_key, records(3)).status_code == 201

    again = post(client, api_key, records(3))

    assert again.status_code == 200
    assert again.json()["created"] == 0
    assert again.json()["unchanged"] == 3
    assert FinancialRecord.objects.count() == 3


# --- same source_id, different content -------------------------------------------------------


def test_same_source_id_with_different_amount_is_refused_with_409(
    client: Client, api_key: str
) -> None:
    assert post(client, api_key, record()).status_code == 201

    response = post(client, api_key, record(amount="451.00"))

    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "conflict"
    assert body["conflicts"] == [{"source_id": "claim-1001", "differing_fields": ["amount"]}]
    assert FinancialRecord.objects.count() == 1
    assert stored().amount == Decimal("450.00")


@pytest.mark.parametrize(
    ("overrides", "differing_field"),
    [
        pytest.param({"kind": "honorarium"}, "kind", id="kind"),
        pytest.param({"category": "meals"}, "category", id="category"),
        pytest.param({"amount": "450.01"}, "amount", id="amount"),
        pytest.param({"currency": "SEK"}, "currency", id="currency"),
        pytest.param({"expense_date": "2026-02-28"}, "expense_date", id="expense_date"),
        pytest.param({"approved_at": "2026-03-02T10:15:01+01:00"}, "approved_at", id="approved_at"),
        pytest.param(
            {"claimant": {"reference": "vol-18", "name": "Kari Nordmann"}},
            "claimant_reference",
            id="claimant-reference",
        ),
        pytest.param(
            {"claimant": {"reference": "vol-17", "name": "Kari Nordkvinne"}},
            "claimant_name",
            id="claimant-name",
        ),
        pytest.param({"description": "Bus instead"}, "description", id="description"),
        pytest.param({"description": MISSING}, "description", id="description-dropped"),
    ],
)
def test_same_source_id_with_any_field_changed_is_refused_and_the_row_is_untouched(
    client: Client, api_key: str, overrides: dict[str, Any], differing_field: str
) -> None:
    assert post(client, api_key, record()).status_code == 201
    before = stored().content()

    response = post(client, api_key, record(**overrides))

    assert response.status_code == 409, response.content
    assert response.json()["conflicts"] == [
        {"source_id": "claim-1001", "differing_fields": [differing_field]}
    ]
    assert FinancialRecord.objects.count() == 1
    assert stored().content() == before


def test_a_conflict_names_every_differing_field(client: Client, api_key: str) -> None:
    assert post(client, api_key, record()).status_code == 201

    response = post(client, api_key, record(amount="99.00", currency="EUR", category="meals"))

    assert response.status_code == 409
    [conflict] = response.json()["conflicts"]
    assert set(conflict["differing_fields"]) == {"amount", "currency", "category"}


def test_a_conflict_in_a_list_stores_none_of_the_new_records(client: Client, api_key: str) -> None:
    assert post(client, api_key, record(source_id="claim-b")).status_code == 201

    response = post(
        client,
        api_key,
        [
            record(source_id="claim-a"),
            record(source_id="claim-b", amount="500.00"),
            record(source_id="claim-c"),
        ],
    )

    assert response.status_code == 409
    assert response.json()["conflicts"] == [
        {"source_id": "claim-b", "differing_fields": ["amount"]}
    ]
    assert list(FinancialRecord.objects.values_list("source_id", flat=True)) == ["claim-b"]
    assert stored("claim-b").amount == Decimal("450.00")


# --- organizations ---------------------------------------------------------------------------


def test_same_source_id_in_two_organizations_is_stored_for_each(
    client: Client, api_key: str, org: Organization, other_org: Organization
) -> None:
    _other_key_row, other_key = ApiKey.issue(other_org)

    ours = post(client, api_key, record())
    theirs = post(client, other_key, record(amount="99.00"))

    assert ours.status_code == 201
    assert theirs.status_code == 201, theirs.content
    assert FinancialRecord.objects.count() == 2
    our_row = org.records.get(source_id="claim-1001")
    their_row = other_org.records.get(source_id="claim-1001")
    assert our_row.amount == Decimal("450.00")
    assert their_row.amount == Decimal("99.00")
    assert ours.json()["records"][0]["reference"] == f"VH-{org.id}-{our_row.id}"
    assert theirs.json()["records"][0]["reference"] == f"VH-{other_org.id}-{their_row.id}"


def test_each_organizations_key_writes_only_its_own_organization(
    client: Client, api_key: str, org: Organization, other_org: Organization
) -> None:
    _other_key_row, other_key = ApiKey.issue(other_org)

    assert post(client, other_key, records(2, prefix="hlf")).status_code == 201
    assert post(client, api_key, records(3, prefix="bf")).status_code == 201

    assert set(org.records.values_list("source_id", flat=True)) == {"bf-0", "bf-1", "bf-2"}
    assert set(other_org.records.values_list("source_id", flat=True)) == {"hlf-0", "hlf-1"}
    # The other organization's record is invisible to ours: same source_id is new, not 409.
    again = post(client, other_key, record(source_id="bf-0", amount="1.00"))
    assert again.status_code == 201
    assert org.records.get(source_id="bf-0").amount == Decimal("450.00")


# --- bad input -------------------------------------------------------------------------------

BAD_RECORDS = [
    # amount
    pytest.param({"amount": 450.0}, "amount", id="amount-json-number"),
    pytest.param({"amount": 450}, "amount", id="amount-json-integer"),
    pytest.param({"amount": "450.0"}, "amount", id="amount-one-decimal"),
    pytest.param({"amount": "450"}, "amount", id="amount-no-decimals"),
    pytest.param({"amount": "450.000"}, "amount", id="amount-three-decimals"),
    pytest.param({"amount": "0.00"}, "amount", id="amount-zero"),
    pytest.param({"amount": "-5.00"}, "amount", id="amount-negative"),
    pytest.param({"amount": "1,50"}, "amount", id="amount-decimal-comma"),
    pytest.param({"amount": "1e3"}, "amount", id="amount-exponent"),
    pytest.param({"amount": ""}, "amount", id="amount-empty"),
    pytest.param({"amount": None}, "amount", id="amount-null"),
    pytest.param({"amount": MISSING}, "amount", id="amount-missing"),
    pytest.param({"amount": "450.00\n"}, "amount", id="amount-trailing-newline"),
    pytest.param(
        {"amount": "\u0664\u0665\u0660.\u0660\u0660"}, "amount", id="amount-arabic-digits"
    ),
    # currency
    pytest.param({"currency": "nok"}, "currency", id="currency-lowercase"),
    pytest.param({"currency": "ABC"}, "currency", id="currency-not-iso"),
    pytest.param({"currency": "NOKK"}, "currency", id="currency-four-letters"),
    pytest.param({"currency": ""}, "currency", id="currency-empty"),
    pytest.param({"currency": 578}, "currency", id="currency-number"),
    # kind
    pytest.param({"kind": "gift"}, "kind", id="kind-unknown"),
    pytest.param({"kind": "Reimbursement"}, "kind", id="kind-capitalised"),
    pytest.param({"kind": MISSING}, "kind", id="kind-missing"),
    # category
    pytest.param({"category": ""}, "category", id="category-empty"),
    pytest.param({"category": "   "}, "category", id="category-blank"),
    pytest.param({"category": "c" * 65}, "category", id="category-65-chars"),
    pytest.param({"category": MISSING}, "category", id="category-missing"),
    # expense_date
    pytest.param({"expense_date": "2026-13-01"}, "expense_date", id="expense_date-month-13"),
    pytest.param({"expense_date": "2026-02-30"}, "expense_date", id="expense_date-feb-30"),
    pytest.param({"expense_date": "01.03.2026"}, "expense_date", id="expense_date-norwegian"),
    pytest.param({"expense_date": "20260301"}, "expense_date", id="expense_date-basic-iso"),
    pytest.param(
        {"expense_date": "2026-03-01T00:00:00"}, "expense_date", id="expense_date-with-time"
    ),
    pytest.param({"expense_date": MISSING}, "expense_date", id="expense_date-missing"),
    pytest.param({"expense_date": "1999-12-31"}, "expense_date", id="expense_date-before-2000"),
    pytest.param(
        {"expense_date": "2026-03-03"}, "expense_date", id="expense_date-after-approved_at"
    ),
    # approved_at
    pytest.param({"approved_at": "2026-03-02T10:15:00"}, "approved_at", id="approved_at-naive"),
    pytest.param({"approved_at": "2026-03-02"}, "approved_at", id="approved_at-date-only"),
    pytest.param({"approved_at": "yesterday"}, "approved_at", id="approved_at-not-a-date"),
    pytest.param({"approved_at": 1772442900}, "approved_at", id="approved_at-unix-number"),
    pytest.param({"approved_at": MISSING}, "approved_at", id="approved_at-missing"),
    pytest.param(
        {"approved_at": "1999-12-31T23:00:00+01:00"}, "approved_at", id="approved_at-before-2000"
    ),
    # claimant
    pytest.param({"claimant": MISSING}, "claimant", id="claimant-missing"),
    pytest.param({"claimant": "Kari Nordmann"}, "claimant", id="claimant-string"),
    pytest.param({"claimant": ["vol-17", "Kari"]}, "claimant", id="claimant-list"),
    pytest.param({"claimant": {"reference": "vol-17"}}, "claimant.name", id="claimant-no-name"),
    pytest.param(
        {"claimant": {"name": "Kari Nordmann"}}, "claimant.reference", id="claimant-no-reference"
    ),
    pytest.param(
        {"claimant": {"reference": "vol-17", "name": ""}}, "claimant.name", id="claimant-name-empty"
    ),
    pytest.param(
        {"claimant": {"reference": 17, "name": "Kari"}},
        "claimant.reference",
        id="claimant-reference-number",
    ),
    pytest.param(
        {"claimant": {"reference": "vol-17", "name": "Kari", "email": "kari@example.org"}},
        "claimant.email",
        id="claimant-unknown-sub-field",
    ),
    # the record itself
    pytest.param({"iban": "NO9386011117947"}, "iban", id="unknown-top-level-field"),
    pytest.param({"description": "d" * 501}, "description", id="description-501-chars"),
    pytest.param({"description": 12}, "description", id="description-number"),
    pytest.param({"description": "tab\tok but bell \u0007"}, "description", id="description-bell"),
    pytest.param({"source_id": MISSING}, "source_id", id="source_id-missing"),
    pytest.param({"source_id": ""}, "source_id", id="source_id-empty"),
    pytest.param({"source_id": "s" * 101}, "source_id", id="source_id-101-chars"),
    pytest.param({"source_id": 1001}, "source_id", id="source_id-number"),
]


@pytest.mark.parametrize(("overrides", "bad_field"), BAD_RECORDS)
def test_a_bad_field_is_named_and_nothing_is_stored(
    client: Client, api_key: str, overrides: dict[str, Any], bad_field: str
) -> None:
    response = post(client, api_key, record(**overrides))

    assert error_fields(response) == {bad_field}
    assert FinancialRecord.objects.count() == 0


@pytest.mark.parametrize(("overrides", "bad_field"), BAD_RECORDS)
def test_a_bad_field_in_a_list_is_named_with_its_index_and_nothing_is_stored(
    client: Client, api_key: str, overrides: dict[str, Any], bad_field: str
) -> None:
    bad = record(**{"source_id": "claim-bad", **overrides})
    body = [record(source_id="claim-0"), bad, record(source_id="claim-2")]

    response = post(client, api_key, body)

    assert error_fields(response) == {f"[1].{bad_field}"}
    assert FinancialRecord.objects.count() == 0


def test_approved_at_more_than_five_minutes_in_the_future_is_refused(
    client: Client, api_key: str
) -> None:
    later = timezone.now() + timedelta(minutes=10)
    response = post(
        client,
        api_key,
        record(approved_at=later.isoformat(), expense_date="2026-03-01"),
    )

    assert error_fields(response) == {"approved_at"}
    assert FinancialRecord.objects.count() == 0


def test_every_bad_field_of_one_record_is_named_at_once(client: Client, api_key: str) -> None:
    response = post(
        client,
        api_key,
        record(
            amount=450,
            currency="nok",
            kind="gift",
            expense_date="01.03.2026",
            claimant={"reference": "vol-17"},
            extra=True,
        ),
    )

    assert error_fields(response) == {
        "amount",
        "currency",
        "kind",
        "expense_date",
        "claimant.name",
        "extra",
    }
    assert "6 field(s)" in response.json()["message"]


def test_errors_in_several_records_of_a_list_are_all_named(client: Client, api_key: str) -> None:
    body = [
        record(source_id="claim-0", amount="1,50"),
        record(source_id="claim-1"),
        record(source_id="claim-2", claimant={"reference": "vol-17"}, kind="gift"),
    ]

    response = post(client, api_key, body)

    assert error_fields(response) == {"[0].amount", "[2].claimant.name", "[2].kind"}
    assert FinancialRecord.objects.count() == 0


def test_a_list_item_that_is_not_an_object_is_named_by_its_index(
    client: Client, api_key: str
) -> None:
    response = post(client, api_key, [record(source_id="claim-0"), "claim-1", 7])

    assert error_fields(response) == {"[1]", "[2]"}
    assert FinancialRecord.objects.count() == 0


def test_a_repeated_source_id_within_one_list_is_named_and_nothing_is_stored(
    client: Client, api_key: str
) -> None:
    body = [record(source_id="claim-a"), record(source_id="claim-b"), record(source_id="claim-a")]

    response = post(client, api_key, body)

    assert error_fields(response) == {"[2].source_id"}
    assert "[0]" in response.json()["errors"]["[2].source_id"][0]
    assert FinancialRecord.objects.count() == 0


def test_a_repeated_source_id_is_refused_even_with_identical_content(
    client: Client, api_key: str
) -> None:
    response = post(client, api_key, [record(), record()])

    assert error_fields(response) == {"[1].source_id"}
    assert FinancialRecord.objects.count() == 0


def test_a_list_with_one_bad_record_among_good_ones_stores_nothing(
    client: Client, api_key: str
) -> None:
    body = records(4)
    body[3]["amount"] = "-5.00"

    response = post(client, api_key, body)

    assert error_fields(response) == {"[3].amount"}
    assert "nothing was stored" in response.json()["message"]
    assert FinancialRecord.objects.count() == 0


def test_an_empty_list_is_refused_with_400(client: Client, api_key: str) -> None:
    response = post(client, api_key, [])

    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    assert FinancialRecord.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(42, id="number"),
        pytest.param("claim-1001", id="string"),
        pytest.param(None, id="null"),
        pytest.param(True, id="boolean"),
    ],
)
def test_a_json_scalar_body_is_refused_with_400(client: Client, api_key: str, body: Any) -> None:
    response = post(client, api_key, body)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    assert FinancialRecord.objects.count() == 0


DEPTH = 100_000


@pytest.mark.parametrize(
    "data",
    [
        # Valid JSON, nested deeper than Python's json module can parse (RecursionError).
        pytest.param("[" * DEPTH + "]" * DEPTH, id="deeply-nested-json"),
        # Valid JSON escape, but not a character that can be encoded as UTF-8.
        pytest.param(json.dumps(record(description="\ud800")), id="lone-surrogate-in-description"),
        # PostgreSQL text cannot hold NUL; SQLite can.
        pytest.param(json.dumps(record(category="tra\x00vel")), id="nul-character-in-category"),
        # Before 0001-01-01T00:00 UTC: cannot be converted to local time.
        pytest.param(
            json.dumps(record(approved_at="0001-01-01T00:00:00+01:00", expense_date="0001-01-01")),
            id="year-1-with-positive-offset",
        ),
    ],
)
def test_hostile_input_gets_a_json_answer_never_a_server_error(api_key: str, data: str) -> None:
    client = Client(raise_request_exception=False)

    response = post_raw(client, api_key, data)

    assert response.status_code < 500, f"{response.status_code}: bad input must get a 4xx"
    assert response["Content-Type"] == "application/json"
    if response.status_code >= 400:
        assert FinancialRecord.objects.count() == 0


# --- authentication --------------------------------------------------------------------------


def wrong_secret(raw_key: str) -> str:
    scheme, prefix, secret = raw_key.split("_", 2)
    return f"{scheme}_{prefix}_{'A' if secret[0] != 'A' else 'B'}{secret[1:]}"


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no-header"),
        pytest.param("", id="empty-header"),
        pytest.param("Bearer", id="bearer-without-key"),
        pytest.param("Bearer   ", id="bearer-blank-key"),
        pytest.param("Token {key}", id="token-scheme"),
        pytest.param("Basic {key}", id="basic-scheme"),
        pytest.param("{key}", id="key-without-scheme"),
        pytest.param("Bearer garbage", id="garbage-key"),
        pytest.param("Bearer vlk_00000000_notarealsecret", id="unknown-prefix"),
        pytest.param("Bearer {wrong_secret}", id="wrong-secret"),
        pytest.param("Bearer {key}x", id="key-with-extra-character"),
    ],
)
def test_a_bad_or_missing_key_is_refused_with_401_and_nothing_is_stored(
    client: Client, api_key: str, authorization: str | None
) -> None:
    headers: dict[str, Any] = {}
    if authorization is not None:
        headers["HTTP_AUTHORIZATION"] = authorization.format(
            key=api_key, wrong_secret=wrong_secret(api_key)
        )

    response = client.post(
        reverse("api_records"),
        data=json.dumps(record()),
        content_type="application/json",
        **headers,
    )

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"] == "unauthorized"
    assert FinancialRecord.objects.count() == 0


def test_a_revoked_key_is_refused_with_401(client: Client, api_key: str, org: Organization) -> None:
    _new_row, new_key = ApiKey.issue(org)  # revokes the key from the fixture

    refused = post(client, api_key, record())
    accepted = post(client, new_key, record())

    assert refused.status_code == 401
    assert refused["WWW-Authenticate"].startswith("Bearer")
    assert accepted.status_code == 201
    assert FinancialRecord.objects.count() == 1


def test_a_logged_in_session_without_a_key_is_refused_with_401(
    client: Client, org_admin: Any
) -> None:
    client.force_login(org_admin)

    response = client.post(
        reverse("api_records"), data=json.dumps(record()), content_type="application/json"
    )

    assert response.status_code == 401
    assert FinancialRecord.objects.count() == 0


def test_the_scheme_name_is_case_insensitive(client: Client, api_key: str) -> None:
    response = client.post(
        reverse("api_records"),
        data=json.dumps(record()),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"bearer {api_key}",
    )

    assert response.status_code == 201


def test_last_used_at_is_set_after_a_successful_call(
    client: Client, api_key: str, org: Organization
) -> None:
    key = org.active_api_key()
    assert key is not None
    assert key.last_used_at is None
    before = timezone.now()

    assert post(client, api_key, record()).status_code == 201

    key.refresh_from_db()
    assert key.last_used_at is not None
    assert before <= key.last_used_at <= timezone.now()


# --- size limits -----------------------------------------------------------------------------


def test_a_body_over_the_byte_limit_is_refused_with_413(
    client: Client, api_key: str, settings: Any
) -> None:
    settings.INBOUND_MAX_BODY_BYTES = 2000
    body = records(10)
    assert len(json.dumps(body).encode()) > 2000

    response = post(client, api_key, body)

    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert FinancialRecord.objects.count() == 0


def test_a_body_of_exactly_the_byte_limit_is_accepted_and_one_byte_more_is_not(
    client: Client, api_key: str, settings: Any
) -> None:
    size = len(json.dumps(record()).encode())

    settings.INBOUND_MAX_BODY_BYTES = size - 1
    assert post(client, api_key, record()).status_code == 413
    assert FinancialRecord.objects.count() == 0

    settings.INBOUND_MAX_BODY_BYTES = size
    assert post(client, api_key, record()).status_code == 201
    assert FinancialRecord.objects.count() == 1


def test_more_than_500_records_are_refused_with_413(client: Client, api_key: str) -> None:
    response = post(client, api_key, records(501))

    assert response.status_code == 413
    assert response.json()["error"] == "too_many_records"
    assert FinancialRecord.objects.count() == 0


def test_500_records_are_all_created(client: Client, api_key: str) -> None:
    response = post(client, api_key, records(500))

    assert response.status_code == 201
    body = response.json()
    assert body["created"] == 500
    assert [result["source_id"] for result in body["records"]] == [
        f"claim-{number}" for number in range(500)
    ]
    assert FinancialRecord.objects.count() == 500


# --- not JSON --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("text/plain", id="text-plain"),
        pytest.param("application/x-www-form-urlencoded", id="form"),
        pytest.param("application/xml", id="xml"),
    ],
)
def test_a_json_body_with_another_content_type_is_refused_with_415(
    client: Client, api_key: str, content_type: str
) -> None:
    response = post_raw(client, api_key, json.dumps(record()), content_type=content_type)

    assert response.status_code == 415
    assert response.json()["error"] == "not_json"
    assert FinancialRecord.objects.count() == 0


@pytest.mark.parametrize(
    "data",
    [
        pytest.param("source_id=claim-1001&amount=450.00", id="form-encoded"),
        pytest.param('{"source_id": "claim-1001",', id="truncated-json"),
        pytest.param("", id="empty-body"),
        pytest.param(b"\xff\xfe\x00garbage", id="not-utf8"),
    ],
)
def test_a_body_that_is_not_json_is_refused_with_415(
    client: Client, api_key: str, data: str | bytes
) -> None:
    response = post_raw(client, api_key, data)

    assert response.status_code == 415
    assert response.json()["error"] == "not_json"
    assert FinancialRecord.objects.count() == 0


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("application/json; charset=utf-8", id="with-charset"),
        pytest.param("application/vnd.volunteer+json", id="plus-json"),
    ],
)
def test_json_content_type_variants_are_accepted(
    client: Client, api_key: str, content_type: str
) -> None:
    response = post_raw(client, api_key, json.dumps(record()), content_type=content_type)

    assert response.status_code == 201


def test_get_is_refused_with_405(client: Client, api_key: str) -> None:
    response = client.get(reverse("api_records"), HTTP_AUTHORIZATION=f"Bearer {api_key}")

    assert response.status_code == 405
    assert "POST" in response["Allow"]


# --- two requests at the same moment ---------------------------------------------------------


def post_at_the_same_moment(key: str, body: dict[str, Any], senders: int = 2) -> list[object]:
    """Post the body from several threads at once; return each status (or exception)."""
    barrier = threading.Barrier(senders)
    results: list[object] = [None] * senders

    def send(index: int) -> None:
        try:
            client = Client(raise_request_exception=False)
            barrier.wait(timeout=10)
            results[index] = post(client, key, body).status_code
        except Exception as problem:  # reported in the assertion below
            results[index] = problem
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(index,)) for index in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


@pytest.mark.django_db(transaction=True)
def test_two_requests_posting_the_same_new_record_at_once_store_one_row(
    api_key: str, org: Organization
) -> None:
    for attempt in range(5):
        source_id = f"race-{attempt}"

        results = post_at_the_same_moment(api_key, record(source_id=source_id))

        assert sorted(results, key=str) == [200, 201], f"attempt {attempt}: {results}"
        assert org.records.filter(source_id=source_id).count() == 1
    assert FinancialRecord.objects.count() == 5
