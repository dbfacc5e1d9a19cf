"""One reconciliation as CSV or JSON, for an external auditor (issue 15 item 3).

Both carry the evidence of the reading: the organization, the period, when it ran, the
digest of the ERP's answers as read and the heads of the attempt log and admin trail
chains at that moment, so the export can be checked against the chains later.

The CSV opens in Norwegian Excel: a header block of `name;value` lines, an empty line,
then one line per item. Every text cell goes through audit's one sanitizer
(`audit.exports.text_cell`): references, comments and the ERP's ids come from outside and
must never run as formulas. The JSON is read by programs: its values stay as stored.
Column names and codes are stable English on purpose, as in the audit export.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation
from itertools import islice
from typing import Any

from django.db.models import QuerySet

from audit.exports import decimal_cell, excel_time, text_cell
from reconciliation.models import Item, Reconciliation

COMPARED = ("amount", "account", "cost_center", "posting_date")
CHUNK = 2000
LINES_PER_WRITE = 500

# The item columns, in order (both sides of each compared field next to each other).
COLUMNS = (
    "reference",
    "class",
    *(f"{side}_{name}" for name in COMPARED for side in ("ours", "theirs")),
    "differences",
    "erp_id",
    "source",
    "currency",
    "record_id",
    "resolution",
    "resolved_by",
    "resolved_at",
    "comment",
)
READ = (
    "reference",
    "klass",
    "ours",
    "theirs",
    "differences",
    "record_id",
    "resolution",
    "resolved_by__username",
    "resolved_at",
    "comment",
)


def metadata(
    reconciliation: Reconciliation, exported_at: datetime, rows: int, zone: tzinfo
) -> dict[str, Any]:
    """What the export says about itself; times ISO 8601 with the offset of `zone`."""
    organization = reconciliation.organization
    return {
        "organization": organization.name,
        "organization_slug": organization.slug,
        "reconciliation": reconciliation.pk,
        "period_start": reconciliation.period_start.isoformat(),
        "period_end": reconciliation.period_end.isoformat(),
        "connector": reconciliation.connector,
        "trigger": reconciliation.trigger,
        "requested_by": reconciliation.requested_by.username if reconciliation.requested_by else "",
        "status": reconciliation.status,
        "started_at": _iso(reconciliation.started_at, zone),
        "finished_at": _iso(reconciliation.finished_at, zone),
        "entries_read": reconciliation.entries_read,
        "pages_read": reconciliation.pages_read,
        "counts": reconciliation.counts,
        "erp_digest": reconciliation.erp_digest,
        "attempts_head": reconciliation.attempts_head,
        "trail_head": reconciliation.trail_head,
        "failure_note": reconciliation.failure_note,
        "failure_words": reconciliation.failure_words,
        "exported_at": _iso(exported_at, zone),
        "rows": rows,
    }


def _iso(moment: datetime | None, zone: tzinfo | None = None) -> str | None:
    if moment is None:
        return None
    return (moment.astimezone(zone) if zone else moment).isoformat()


def item_values(reconciliation: Reconciliation) -> Iterator[tuple]:
    items: QuerySet[Item] = reconciliation.items.all()  # in the page's order
    return items.values_list(*READ).iterator(chunk_size=CHUNK)


# --- CSV ---------------------------------------------------------------------------------------


def _amount(value: str | None) -> str:
    """A stored amount ("120.00") as Norwegian Excel reads a number; anything else as text."""
    if not value:
        return ""
    try:
        return decimal_cell(Decimal(value))
    except InvalidOperation:
        return text_cell(value)


def _header_value(key: str, value: Any, zone: tzinfo) -> str:
    if value is None:
        return ""
    if key in ("started_at", "finished_at", "exported_at"):
        return excel_time(datetime.fromisoformat(value), zone)
    if isinstance(value, dict):
        return text_cell(json.dumps(value, ensure_ascii=False, sort_keys=True)) if value else ""
    return text_cell(str(value))


def csv_header(meta: dict[str, Any], zone: tzinfo) -> str:
    lines = [f"{text_cell(key)};{_header_value(key, value, zone)}" for key, value in meta.items()]
    return "\r\n".join(lines) + "\r\n\r\n"


def csv_row(row: tuple, zone: tzinfo) -> str:
    (reference, klass, ours, theirs, differences, record_id, resolution, by, at, comment) = row
    cells = [text_cell(reference), text_cell(klass)]
    for name in COMPARED:
        for side in (ours, theirs):
            value = (side or {}).get(name, "")
            cells.append(_amount(value) if name == "amount" else text_cell(str(value)))
    theirs = theirs or {}
    cells += [
        text_cell(",".join(differences or [])),
        text_cell(str(theirs.get("erp_id", ""))),
        text_cell(str(theirs.get("source", ""))),
        text_cell(str(theirs.get("currency", ""))),
        "" if record_id is None else str(record_id),
        text_cell(resolution or ""),
        text_cell(by or ""),
        excel_time(at, zone) if at else "",
        text_cell(comment or ""),
    ]
    return ";".join(cells) + "\r\n"


def csv_lines(meta: dict[str, Any], rows: Iterator[tuple], zone: tzinfo) -> Iterator[str]:
    """A BOM (Excel reads UTF-8), the header block, the column names, the items."""
    yield "\ufeff" + csv_header(meta, zone) + ";".join(COLUMNS) + "\r\n"
    while batch := list(islice(rows, LINES_PER_WRITE)):
        yield "".join(csv_row(row, zone) for row in batch)


# --- JSON ----------------------------------------------------------------------------------------


def json_row(row: tuple) -> dict[str, Any]:
    (reference, klass, ours, theirs, differences, record_id, resolution, by, at, comment) = row
    return {
        "reference": reference,
        "class": klass,
        "ours": ours,
        "theirs": theirs,
        "differences": differences,
        "record_id": record_id,
        "resolution": resolution,
        "resolved_by": by,
        "resolved_at": _iso(at),
        "comment": comment,
    }


def json_chunks(meta: dict[str, Any], rows: Iterator[tuple]) -> Iterator[str]:
    """One document, written piece by piece: {"meta": ..., "rows": [...]}."""
    yield '{"meta": ' + json.dumps(meta, ensure_ascii=False) + ', "rows": ['
    separator = ""
    while batch := list(islice(rows, LINES_PER_WRITE)):
        yield separator + ",\n".join(json.dumps(json_row(row), ensure_ascii=False) for row in batch)
        separator = ",\n"
    yield "]}\n"
