"""Streamed exports of the audit log for external auditors (S8.5).

Rows are read with a server-side cursor and written as they come, a few hundred at a
time, so memory stays flat however many rows the filter matches. Only the exported
columns are read (as tuples, not model instances): the payload and response bodies
stay in the database, and a million rows export in seconds, not minutes.

The column names are stable English on purpose: they are read by programs.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
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


def _local(rows: Iterator[tuple]) -> Iterator[list[Any]]:
    """Times in the reader's time zone, as ISO 8601 with the offset."""
    zone = timezone.get_current_timezone()
    for row in rows:
        row = list(row)
        row[TIME] = row[TIME].astimezone(zone).isoformat()
        yield row


def csv_lines(rows: Iterator[tuple]) -> Iterator[str]:
    """Excel-friendly for Norwegian users: a BOM so it reads UTF-8 (æøå), semicolons
    as separators and a decimal comma in amounts, as Norwegian Excel expects."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";")
    buffer.write("\ufeff")
    writer.writerow(COLUMNS)
    for count, row in enumerate(_local(rows), start=1):
        row[AMOUNT] = str(row[AMOUNT]).replace(".", ",")
        writer.writerow(row)
        if count % LINES_PER_WRITE == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def json_chunks(rows: Iterator[tuple], meta: dict[str, Any]) -> Iterator[str]:
    """One JSON document, written piece by piece: {"meta": ..., "rows": [...]}."""
    yield '{"meta": ' + json.dumps(meta, ensure_ascii=False) + ', "rows": ['
    parts: list[str] = []
    for count, row in enumerate(_local(rows)):
        row[AMOUNT] = str(row[AMOUNT])
        text = json.dumps(dict(zip(COLUMNS, row, strict=True)), ensure_ascii=False)
        parts.append(text if count == 0 else ",\n" + text)
        if len(parts) == LINES_PER_WRITE:
            yield "".join(parts)
            parts.clear()
    yield "".join(parts) + "]}\n"
