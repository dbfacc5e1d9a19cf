"""Issue 13 item 7: a batch's attempts and its records are written in one statement each on
PostgreSQL (core/bulk.py), and what is stored is what Django's own bulk methods would store;
the hash chain (S8.6) verifies over rows written that way. On SQLite the engine keeps
Django's bulk methods; both paths are checked here on whichever database the run uses."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounting_sync.models import FinancialRecord, SyncLog, SyncRun
from core import bulk
from core.chain import verify_chain
from integrations.models import RateSlot, RateWindow
from organizations.models import Organization
from tests.factories import configure, make_records, sync

pytestmark = pytest.mark.usefixtures("trust_erp_sandbox")

State = FinancialRecord.State
ON_POSTGRESQL = connection.vendor == "postgresql"

# Text that quoting, JSON escaping and the column input functions could each get wrong.
AWKWARD = [
    'a "quoted" word',
    "back\\slash \\n not a newline",
    "line one\nline two\ttabbed",
    "Ødegård, Tromsø — 100 % ✓ 🚆",
    "NULL",
    "{braces}, [brackets]",
    "",
]


def test_issue13_item7_s8_6_attempts_written_in_one_statement_read_back_as_given(org) -> None:
    records = make_records(org, len(AWKWARD))
    run = SyncRun.objects.create(organization=org, connector="xledger", trigger="manual")
    rows = [
        SyncLog(
            run_id=run.pk,
            record_id=record.pk,
            organization_id=org.pk,
            connector="xledger",
            attempt_number=n + 1,
            trigger="manual",
            status="failed" if n % 2 else "succeeded",
            error_class="permanent" if n % 2 else "",
            error_message=text,
            note={"code": "lookup_failed", "params": {"reason": text}} if n % 2 else None,
            payload={"inputs": [{"text": text, "amount": "100.25", "n": n}], "empty": {}},
            response_status=None if n == 0 else 200,
            response_body=text,
            duration_ms=n,
            reference=record.reference,
            erp_id=str(900 + n),
        )
        for n, (record, text) in enumerate(zip(records, AWKWARD, strict=True))
    ]
    given = [
        {name: getattr(row, name) for name in SyncLog.CHAIN_FIELDS if name != "created_at"}
        | {"note": row.note}
        for row in rows
    ]

    with CaptureQueriesContext(connection) as queries:
        SyncLog.objects.bulk_create(rows)

    inserts = [q for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    if ON_POSTGRESQL:
        assert len(inserts) == 1  # one statement, one parameter
    ids = [row.pk for row in rows]
    assert all(ids) and ids == sorted(ids)  # ids in the chain's order
    stored = list(SyncLog.objects.filter(pk__in=ids).order_by("id"))
    assert [row.pk for row in stored] == ids
    for row, expected, written in zip(stored, given, rows, strict=True):
        assert {name: getattr(row, name) for name in expected} == expected
        assert (row.prev_hash, row.row_hash, row.created_at) == (
            written.prev_hash,
            written.row_hash,
            written.created_at,
        )
    assert verify_chain(SyncLog, org.pk) == (len(rows), None)


def test_issue13_item7_records_updated_in_one_statement_as_bulk_update_would(org) -> None:
    records = make_records(org, 4)
    run = SyncRun.objects.create(organization=org, connector="xledger", trigger="manual")
    now = timezone.now()
    changes: list[dict[str, Any]] = [
        {"state": State.SYNCED, "synced_at": now, "erp_document_id": "901", "claimed_by": None},
        {
            "state": State.FAILED,
            "last_error": AWKWARD[0],
            "last_note": {"code": "not_in_erp", "params": {"text": AWKWARD[3]}},
            "next_retry_at": now + timedelta(seconds=90),
            "needs_lookup": True,
            "retry_count": 2,
            "claimed_by": run,
        },
        {"state": State.PENDING, "last_error": AWKWARD[2], "lookup_failures": 3},
        {"state": State.AWAITING, "erp_document_id": AWKWARD[1], "next_retry_at": None},
    ]
    names = sorted({name for change in changes for name in change} | {"updated_at"})
    for record, change in zip(records, changes, strict=True):
        for name, value in {"updated_at": now, **change}.items():
            setattr(record, name, value)

    with CaptureQueriesContext(connection) as queries:
        if not bulk.update(FinancialRecord, records, names, "default"):
            FinancialRecord.objects.bulk_update(records, names)

    assert bulk.update(FinancialRecord, records, names, "default") is ON_POSTGRESQL
    if ON_POSTGRESQL:
        assert len(queries.captured_queries) == 1
    for record in records:
        fresh = FinancialRecord.objects.get(pk=record.pk)
        assert {n: getattr(fresh, n) for n in names} == {n: getattr(record, n) for n in names}


@pytest.mark.postgres_only(
    reason="on SQLite the engine keeps Django's bulk methods, whose statements SQLite's "
    "limit on parameters splits"
)
def test_issue13_item7_a_batch_is_written_in_a_handful_of_queries(org, erp_sandbox) -> None:
    """Per 250-record batch: mark it in flight, and one transaction (the chain's lock and
    head, the attempts, the run's counters and in_flight, the organization's version, the
    records). It was 18 statements, the largest two built row by row in Python (an UNNEST
    of every column; a CASE branch per record), then 8 with a read of the records' earlier
    attempts, which the run now reads once for all it claims.

    The run writes one batch while the ERP takes the next: from the second batch's mark
    to the third's are that mark and the first batch's writing."""
    configure(org, erp_sandbox)
    make_records(org, 750)
    with CaptureQueriesContext(connection) as queries:
        run = sync(org)
    assert run.sent == 750
    sql = [q["sql"] for q in queries.captured_queries]
    marked = [i for i, s in enumerate(sql) if re.search(r"""SET "in_flight" = '\[\d""", s)]
    assert len(marked) == 3
    batch = [s.split(" ")[0] for s in sql[marked[1] : marked[2]]]
    statements = [s for s in batch if s not in ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")]
    assert "INSERT" in statements
    assert len(statements) <= 7, [s[:100] for s in sql[marked[1] : marked[2]]]


def test_issue13_item7_thousands_of_ids_select_and_update_as_a_plain_filter(org) -> None:
    records = make_records(org, 30)
    wanted = [record.pk for record in records[::3]] + [10**9]  # and one that does not exist
    among = bulk.with_ids(FinancialRecord.objects.all(), wanted)
    assert sorted(among.values_list("pk", flat=True)) == sorted(wanted[:-1])
    assert among.update(state=State.SENDING) == 10
    assert FinancialRecord.objects.filter(state=State.SENDING).count() == 10
    with CaptureQueriesContext(connection) as queries:
        assert bulk.with_ids(FinancialRecord.objects.all(), []).update(state=State.FAILED) == 0
    assert not queries.captured_queries
    # By a foreign key: the records' organization, as the run reads attempts by record.
    others = Organization.objects.create(name="Others", slug="others")
    make_records(others, 2)
    by_organization = bulk.with_ids(FinancialRecord.objects.all(), [org.pk], field="organization")
    assert by_organization.count() == 30


@pytest.mark.postgres_only(reason="elsewhere the bulk writes are Django's own")
@pytest.mark.django_db
def test_issue13_item7_a_value_the_document_cannot_carry_goes_django_s_way() -> None:
    """orjson writes NaN as null: a float column's NaN is left to Django's bulk methods,
    which store PostgreSQL's NaN, instead of a NULL in its place."""
    window = RateWindow.objects.create(key="bench")
    assert bulk.insert(RateSlot, [RateSlot(window=window, at=1.5)], "default")
    assert not bulk.insert(RateSlot, [RateSlot(window=window, at=float("nan"))], "default")
    assert not bulk.insert(RateSlot, [RateSlot(window=window, at=float("inf"))], "default")
    assert list(RateSlot.objects.values_list("at", flat=True)) == [1.5]
