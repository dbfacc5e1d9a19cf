"""Streamed exports of the audit log for external auditors (S8.5).

Rows are read with a server-side iterator and written as they come, so memory
stays flat however many rows the filter matches.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from accounting_sync.models import SyncLog

COLUMNS = (
    "id",
    "time",
    "organization",
    "reference",
    "record_type",
    "category",
    "amount",
    "currency",
    "claimant",
    "attempt",
    "trigger",
    "status",
    "error_class",
    "error_message",
    "response_status",
    "duration_ms",
    "erp_id",
    "retries_attempt",
    "prev_hash",
    "row_hash",
)
CHUNK = 2000


def export_rows(queryset: QuerySet[SyncLog]) -> Iterator[dict[str, Any]]:
    rows = queryset.select_related("record", "organization").order_by("-id")
    for log in rows.iterator(chunk_size=CHUNK):
        record = log.record
        yield {
            "id": log.pk,
            "time": timezone.localtime(log.created_at).isoformat(),
            "organization": log.organization.name,
            "reference": log.reference,
            "record_type": record.kind,
            "category": record.category,
            "amount": record.amount,
            "currency": record.currency,
            "claimant": record.claimant_name,
            "attempt": log.attempt_number,
            "trigger": log.trigger,
            "status": log.status,
            "error_class": log.error_class,
            "error_message": log.error_message,
            "response_status": log.response_status,
            "duration_ms": log.duration_ms,
            "erp_id": log.erp_id,
            "retries_attempt": log.retry_of_id,
            "prev_hash": log.prev_hash,
            "row_hash": log.row_hash,
        }


class _Line:
    """csv.writer writes into this and we hand each line on: no buffer grows."""

    def write(self, text: str) -> str:
        return text


def csv_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Excel-friendly for Norwegian users: a BOM so it reads UTF-8 (æøå), semicolons
    as separators and a decimal comma in amounts, as Norwegian Excel expects."""
    writer = csv.writer(_Line(), delimiter=";")
    yield "\ufeff" + writer.writerow(COLUMNS)
    for row in rows:
        row = {**row, "amount": str(row["amount"]).replace(".", ",")}
        yield writer.writerow([row[column] for column in COLUMNS])


def json_chunks(rows: Iterable[dict[str, Any]], meta: dict[str, Any]) -> Iterator[str]:
    """One JSON document, written piece by piece: {"meta": ..., "rows": [...]}."""
    yield '{"meta": ' + json.dumps(meta, ensure_ascii=False) + ', "rows": ['
    first = True
    for row in rows:
        yield ("" if first else ",\n") + json.dumps(row, ensure_ascii=False, default=str)
        first = False
    yield "]}\n"
