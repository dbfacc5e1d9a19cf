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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from functools import partial
from itertools import islice
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from accounting_sync.models import SyncLog

# Free text may hold the separator, a quote or a line break; everything else is a
# number, a code or a hash. Quoted exactly as the csv module quotes (QUOTE_MINIMAL).
_NEEDS_QUOTES = re.compile(r'[;"\r\n]')
# What a spreadsheet reads as the start of a formula (OWASP's list). A text cell that
# starts with one gets a leading apostrophe, which Excel shows as text and never runs.
FORMULA_START = frozenset("=+-@\t\r")


# How the CSV writes each kind of value. Every text column goes through _text, codes and
# hashes too: they are never formulas today, and a check costs less than a future column
# slipping through. Numbers (amounts included, negative or not) stay numbers.
def _text(value: str) -> str:
    """A text cell: neutralised if it could be read as a formula, then quoted if needed."""
    if value[:1] in FORMULA_START:
        value = "'" + value
    return '"' + value.replace('"', '""') + '"' if _NEEDS_QUOTES.search(value) else value


def _note(value: dict[str, Any]) -> str:
    """Our own note on the attempt as stored (code and parameters), hashed with the row."""
    return _text(json.dumps(value, ensure_ascii=False, sort_keys=True)) if value else ""


def _number(value: int | None) -> str:
    return "" if value is None else str(value)


def _decimal_comma(value: Decimal) -> str:
    return str(value).replace(".", ",")  # as Norwegian Excel reads a decimal number


def _local_time(value: datetime, zone: tzinfo) -> str:
    return value.astimezone(zone).isoformat()  # ISO 8601 with the offset: the JSON's, exact


# The cell writers other exports reuse (reconciliation/exports.py), so every CSV of the
# application is made formula-safe by this one function.
text_cell = _text
decimal_cell = _decimal_comma


def excel_time(moment: datetime, zone: tzinfo) -> str:
    """A plain local date and time ("2026-03-02 09:30:05") that Excel reads as a date; an ISO
    stamp with microseconds and an offset stays text there. The JSON keeps ISO, exact."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class Column:
    name: str  # in the CSV's header and the JSON's keys
    source: str  # the field it is read from (values_list)
    csv: Callable[..., str]  # how the CSV writes it; the JSON writes the value as stored
    zoned: bool = False  # csv takes the reader's time zone too


# The exported columns, in order: adding one is one line here.
EXPORT = (
    Column("id", "id", str),
    Column("time", "created_at", excel_time, zoned=True),
    Column("organization", "organization__name", _text),
    Column("reference", "reference", _text),
    Column("record_type", "record__kind", _text),
    Column("category", "record__category", _text),
    Column("amount", "record__amount", _decimal_comma),
    Column("currency", "record__currency", _text),
    Column("claimant", "record__claimant_name", _text),
    Column("attempt", "attempt_number", str),
    Column("trigger", "trigger", _text),
    Column("status", "status", _text),
    Column("error_class", "error_class", _text),
    Column("error_message", "error_message", _text),
    Column("note", "note", _note),
    Column("response_status", "response_status", _number),
    Column("duration_ms", "duration_ms", str),
    Column("erp_id", "erp_id", _text),
    Column("retries_attempt", "retry_of_id", _number),
    Column("prev_hash", "prev_hash", _text),
    Column("row_hash", "row_hash", _text),
)
COLUMNS = tuple(column.name for column in EXPORT)
TIME = COLUMNS.index("time")
CHUNK = 5000  # rows fetched from the database at a time
LINES_PER_WRITE = 500  # rows handed to the response at a time


def export_values(queryset: QuerySet[SyncLog]) -> Iterator[tuple]:
    """The exported columns of every row the filter matches, newest first, as tuples."""
    rows = queryset.order_by("-id").values_list(*(column.source for column in EXPORT))
    return rows.iterator(chunk_size=CHUNK)


def _batches(rows: Iterator[tuple]) -> Iterator[list[tuple]]:
    """LINES_PER_WRITE rows at a time, with times in the reader's time zone (ISO 8601
    with the offset). Whole batches keep the per-row Python work to a minimum."""
    zone = timezone.get_current_timezone()
    while batch := list(islice(rows, LINES_PER_WRITE)):
        yield [(*row[:TIME], _local_time(row[TIME], zone), *row[TIME + 1 :]) for row in batch]


def csv_writers(zone: tzinfo) -> list[Callable[[Any], str]]:
    """Each column's CSV writer, in COLUMNS order, for a reader in `zone`."""
    return [partial(column.csv, zone=zone) if column.zoned else column.csv for column in EXPORT]


def _csv_text(rows: list[tuple], writers: list[Callable[[Any], str]]) -> str:
    """The rows as CSV lines, written column by column.

    Written by hand rather than with csv.writer: a million rows a run, and this is the
    export's main Python cost (test_audit_log checks it matches csv.writer's output).
    Column by column, each column's writer runs over the whole batch in one `map`: a
    loop over the twenty writers for each row costs about a third more.
    """
    columns = zip(*rows, strict=True)
    cells = [map(write, values) for write, values in zip(writers, columns, strict=True)]
    return "".join([";".join(line) + "\r\n" for line in zip(*cells, strict=True)])


def csv_line(row: tuple, zone: tzinfo) -> str:
    """One row as a CSV line, in COLUMNS order."""
    return _csv_text([row], csv_writers(zone))


def csv_lines(rows: Iterator[tuple], zone: tzinfo | None = None) -> Iterator[str]:
    """Excel-friendly for Norwegian users: a BOM so it reads UTF-8 (æøå), semicolons
    as separators and a decimal comma in amounts, as Norwegian Excel expects. Times are
    in `zone` (the organization's), or the current time zone."""
    writers = csv_writers(zone or timezone.get_current_timezone())
    yield "\ufeff" + ";".join(COLUMNS) + "\r\n"
    while batch := list(islice(rows, LINES_PER_WRITE)):
        yield _csv_text(batch, writers)


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
