"""Streamed exports of the audit log for external auditors (S8.5).

Rows are read with a server-side cursor and written as they come, a few hundred at a
time, so memory stays flat however many rows the filter matches. Only the exported
columns are read (as tuples, not model instances): the payload and response bodies
stay in the database, and a million rows export in seconds, not minutes.

The column names are stable English on purpose: they are read by programs.

The CSV is opened in Excel, so every text cell that Excel would read as a formula is
neutralised (OWASP, "CSV Injection"): claimant names and categories come from the
volunteer app, error messages and ERP ids from the ERPs, and none of them may run.
The JSON export is read by programs, not spreadsheets: its values stay as stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from itertools import islice
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from accounting_sync.models import SyncLog

# Export column → what it is read from.
FIELDS = (
    ("id", "id"),
    ("time", "created_at"),
    ("organization", "organization__name"),
    ("reference", "reference"),
    ("record_type", "record__kind"),
    ("category", "record__category"),
    ("amount", "record__amount"),
    ("currency", "record__currency"),
    ("claimant", "record__claimant_name"),
    ("attempt", "attempt_number"),
    ("trigger", "trigger"),
    ("status", "status"),
    ("error_class", "error_class"),
    ("error_message", "error_message"),
    ("response_status", "response_status"),
    ("duration_ms", "duration_ms"),
    ("erp_id", "erp_id"),
    ("retries_attempt", "retry_of_id"),
    ("prev_hash", "prev_hash"),
    ("row_hash", "row_hash"),
)
COLUMNS = tuple(column for column, _source in FIELDS)
TIME, AMOUNT = COLUMNS.index("time"), COLUMNS.index("amount")
CHUNK = 5000  # rows fetched from the database at a time
LINES_PER_WRITE = 500  # rows handed to the response at a time


def export_values(queryset: QuerySet[SyncLog]) -> Iterator[tuple]:
    """The exported columns of every row the filter matches, newest first, as tuples."""
    rows = queryset.order_by("-id").values_list(*(source for _column, source in FIELDS))
    return rows.iterator(chunk_size=CHUNK)


def _batches(rows: Iterator[tuple]) -> Iterator[list[tuple]]:
    """LINES_PER_WRITE rows at a time, with times in the reader's time zone (ISO 8601
    with the offset). Whole batches keep the per-row Python work to a minimum."""
    zone = timezone.get_current_timezone()
    while batch := list(islice(rows, LINES_PER_WRITE)):
        yield [
            (*row[:TIME], row[TIME].astimezone(zone).isoformat(), *row[TIME + 1 :]) for row in batch
        ]


# Free text may hold the separator, a quote or a line break; everything else is a
# number, a code or a hash. Quoted exactly as the csv module quotes (QUOTE_MINIMAL).
_NEEDS_QUOTES = re.compile(r'[;"\r\n]')
# What a spreadsheet reads as the start of a formula (OWASP's list). A text cell that
# starts with one gets a leading apostrophe, which Excel shows as text and never runs.
FORMULA_START = frozenset("=+-@\t\r")


def _text(value: str) -> str:
    """A text cell: neutralised if it could be read as a formula, then quoted if needed.

    Only ever called on text columns: numbers (amounts included, negative or not) are
    written by the callers below and stay numbers.
    """
    if value[:1] in FORMULA_START:
        value = "'" + value
    return '"' + value.replace('"', '""') + '"' if _NEEDS_QUOTES.search(value) else value


def _number(value: int | None) -> str:
    return "" if value is None else str(value)


def excel_time(moment, zone) -> str:
    """A plain local date and time ("2026-03-02 09:30:05") that Excel reads as a date; an ISO
    stamp with microseconds and an offset stays text there. The JSON keeps ISO, exact."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def csv_line(row: tuple, zone) -> str:
    """One row as a CSV line, in COLUMNS order.

    Written by hand rather than with csv.writer: a million rows a run, and this is the
    export's main Python cost (test_audit_log checks it matches csv.writer's output).
    """
    (
        pk, time, organization, reference, record_type, category, amount, currency,
        claimant, attempt, trigger, status, error_class, error_message, response_status,
        duration_ms, erp_id, retries_attempt, prev_hash, row_hash,
    ) = row  # fmt: skip
    # Every text column goes through _text, codes and hashes too: they are never
    # formulas today, and a check costs less than a future column slipping through.
    fields = (
        str(pk), excel_time(time, zone), _text(organization), _text(reference),
        _text(record_type), _text(category), str(amount).replace(".", ","), _text(currency),
        _text(claimant), str(attempt), _text(trigger), _text(status), _text(error_class),
        _text(error_message), _number(response_status), str(duration_ms), _text(erp_id),
        _number(retries_attempt), _text(prev_hash), _text(row_hash),
    )  # fmt: skip
    return ";".join(fields) + "\r\n"


def csv_lines(rows: Iterator[tuple], zone=None) -> Iterator[str]:
    """Excel-friendly for Norwegian users: a BOM so it reads UTF-8 (æøå), semicolons
    as separators and a decimal comma in amounts, as Norwegian Excel expects. Times are
    in `zone` (the organization's), or the current time zone."""
    zone = zone or timezone.get_current_timezone()
    yield "\ufeff" + ";".join(COLUMNS) + "\r\n"
    while batch := list(islice(rows, LINES_PER_WRITE)):
        yield "".join([csv_line(row, zone) for row in batch])


def json_chunks(rows: Iterator[tuple], meta: dict[str, Any]) -> Iterator[str]:
    """One JSON document, written piece by piece: {"meta": ..., "rows": [...]}."""
    yield '{"meta": ' + json.dumps(meta, ensure_ascii=False) + ', "rows": ['
    separator = ""
    for batch in _batches(rows):
        text = ",\n".join(
            json.dumps(dict(zip(COLUMNS, row, strict=True)), ensure_ascii=False, default=str)
            for row in batch
        )
        yield separator + text
        separator = ",\n"
    yield "]}\n"
