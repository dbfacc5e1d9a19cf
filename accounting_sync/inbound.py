"""Approved records in: validation and storage for POST /api/v1/records.

Validation is written out field by field rather than with a form library so
each message tells the volunteer app's developers exactly what to change.
Storage is all or nothing: one bad or conflicting record and nothing is stored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import iso4217
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounting_sync.models import FinancialRecord
from organizations.models import Organization

# [0-9] and \A…\Z, not \d and ^…$: \d matches other scripts' digits and $ a final newline.
AMOUNT_PATTERN = re.compile(r"\A[0-9]{1,10}\.[0-9]{2}\Z")
DATE_PATTERN = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
# NUL cannot be stored by PostgreSQL, lone surrogates by any UTF-8 database, and
# other control characters have no business in a ledger text.
UNSTORABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
# Nothing was approved in the volunteer app before this; it also keeps far-past
# dates clear of the edges of what datetime can convert between time zones.
EARLIEST = date(2000, 1, 1)
ALLOWED_FIELDS = {
    "source_id",
    "kind",
    "category",
    "amount",
    "currency",
    "expense_date",
    "approved_at",
    "claimant",
    "description",
}
CLAIMANT_FIELDS = {"reference", "name"}
KINDS = set(FinancialRecord.Kind.values)
CURRENCIES = {currency.name for currency in iso4217.Currency}
# The volunteer app's clock may run a little ahead of ours.
CLOCK_SKEW = timedelta(minutes=5)

Errors = dict[str, list[str]]

# No field takes a JSON number, so no number literal needs more characters than this.
# Longer ones are never converted: Python refuses to turn more than 4,300 digits into an
# int (ValueError, a 500 before this bound) and the conversion's cost grows with length.
MAX_NUMBER_LENGTH = 64
# An unknown field's name is echoed in `errors`; a hostile name is cut to this length.
MAX_ECHOED_NAME = 64


class OversizedNumber:
    """Stands in for a JSON number literal too long to read. It is not a str, so every
    field refuses it with its ordinary message, naming the field, and nothing breaks."""

    __slots__ = ("length",)

    def __init__(self, literal: str) -> None:
        self.length = len(literal)

    def __repr__(self) -> str:
        return f"<number of {self.length} characters>"


def _bounded(convert: type[int] | type[float]):
    def parse(literal: str) -> int | float | OversizedNumber:
        if len(literal) > MAX_NUMBER_LENGTH:
            return OversizedNumber(literal)
        return convert(literal)

    return parse


def parse_body(body: bytes) -> Any:
    """The request's JSON, with every number literal's size bounded before it is read.

    Raises what json.loads raises for a body that is not JSON (ValueError,
    UnicodeDecodeError, RecursionError); never ValueError for a number's size.
    """
    return json.loads(body, parse_int=_bounded(int), parse_float=_bounded(float))


def _echoed(name: str) -> str:
    """A field name as `errors` repeats it: a hostile one is cut short, not echoed whole."""
    return name if len(name) <= MAX_ECHOED_NAME else name[:MAX_ECHOED_NAME] + "…"


class _Invalid(Exception):
    pass


def _text(item: dict, name: str, max_length: int, required: bool = True) -> str:
    value = item.get(name)
    if value is None:
        if required:
            raise _Invalid("is required")
        return ""
    if not isinstance(value, str):
        raise _Invalid("must be a string")
    if required and value.strip() == "":
        raise _Invalid("must not be empty")
    if len(value) > max_length:
        raise _Invalid(f"must be at most {max_length} characters (got {len(value)})")
    if UNSTORABLE.search(value):
        raise _Invalid("contains a control character or invalid Unicode")
    return value


def _kind(item: dict, name: str) -> str:
    value = _text(item, name, 20)
    if value not in KINDS:
        raise _Invalid(f"must be one of: {', '.join(sorted(KINDS))}")
    return value


def _amount(item: dict, name: str) -> Decimal:
    value = item.get(name)
    if value is None:
        raise _Invalid("is required")
    if not isinstance(value, str):
        raise _Invalid('must be a string such as "450.00" (a JSON number can lose precision)')
    if not AMOUNT_PATTERN.match(value):
        raise _Invalid('must be a positive amount with exactly two decimals, such as "450.00"')
    amount = Decimal(value)
    if amount <= 0:
        raise _Invalid("must be greater than zero")
    return amount


def _currency(item: dict, name: str) -> str:
    if item.get(name) is None:
        return "NOK"
    value = _text(item, name, 3)
    if value not in CURRENCIES:
        raise _Invalid(f"{value!r} is not an ISO 4217 currency code (for example NOK, SEK, EUR)")
    return value


def _date(item: dict, name: str) -> date:
    value = _text(item, name, 10)
    try:
        if not DATE_PATTERN.match(value):
            raise ValueError
        day = date.fromisoformat(value)
    except ValueError:
        raise _Invalid("must be a date as YYYY-MM-DD") from None
    if day < EARLIEST:
        raise _Invalid(f"must not be before {EARLIEST.isoformat()}")
    return day


def _aware_datetime(item: dict, name: str) -> datetime:
    value = _text(item, name, 40)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _Invalid(
            "must be an ISO 8601 date and time, such as 2026-03-01T14:05:00+01:00"
        ) from None
    if moment.tzinfo is None:
        raise _Invalid("must include a time zone offset, such as +01:00 or Z")
    if moment.date() < EARLIEST:
        raise _Invalid(f"must not be before {EARLIEST.isoformat()}")
    if moment > timezone.now() + CLOCK_SKEW:
        raise _Invalid("is in the future")
    return moment


@dataclass
class ValidatedRecord:
    source_id: str
    content: dict[str, Any]


@dataclass
class Outcome:
    """What happened to one incoming record."""

    source_id: str
    status: str  # "created" or "unchanged"
    record: FinancialRecord

    def as_json(self) -> dict[str, str]:
        return {
            "source_id": self.source_id,
            "status": self.status,
            "reference": self.record.reference,
            "state": self.record.state,
        }


@dataclass
class IngestResult:
    outcomes: list[Outcome] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def created(self) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == "created")


def validate_record(item: Any) -> tuple[ValidatedRecord | None, Errors]:
    """Check one record; return it cleaned, or the errors keyed by field name."""
    if not isinstance(item, dict):
        return None, {"": ["each record must be a JSON object"]}
    errors: Errors = {}
    for unknown in sorted(set(item) - ALLOWED_FIELDS):
        errors[_echoed(unknown)] = ["is not a known field"]

    def check(name: str, reader, *args) -> Any:
        try:
            return reader(item, name, *args)
        except _Invalid as problem:
            errors.setdefault(name, []).append(str(problem))
            return None

    source_id = check("source_id", _text, 100)
    content: dict[str, Any] = {
        "kind": check("kind", _kind),
        "category": check("category", _text, 64),
        "amount": check("amount", _amount),
        "currency": check("currency", _currency),
        "expense_date": check("expense_date", _date),
        "approved_at": check("approved_at", _aware_datetime),
        "description": check("description", _text, 500, False),
    }
    claimant = item.get("claimant")
    if not isinstance(claimant, dict):
        errors["claimant"] = ['must be an object with "reference" and "name"']
    else:
        for unknown in sorted(set(claimant) - CLAIMANT_FIELDS):
            errors[f"claimant.{_echoed(unknown)}"] = ["is not a known field"]
        for name, max_length in (("reference", 64), ("name", 200)):
            try:
                content[f"claimant_{name}"] = _text(claimant, name, max_length)
            except _Invalid as problem:
                errors[f"claimant.{name}"] = [str(problem)]

    spent, approved = content["expense_date"], content["approved_at"]
    # The approver's own calendar date, in the offset the volunteer app sent.
    if spent and approved and spent > approved.date():
        errors.setdefault("expense_date", []).append("is after approved_at")
    if errors:
        return None, errors
    return ValidatedRecord(source_id=source_id, content=content), {}


def validate_batch(items: list[Any]) -> tuple[list[ValidatedRecord], Errors]:
    """Validate every record; field names are prefixed with the record's position."""
    records: list[ValidatedRecord] = []
    errors: Errors = {}
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        record, problems = validate_record(item)
        for name, messages in problems.items():
            errors[f"[{index}].{name}" if name else f"[{index}]"] = messages
        if record is None:
            continue
        if record.source_id in seen:
            errors[f"[{index}].source_id"] = [
                f"repeats the source_id of record [{seen[record.source_id]}] in this request"
            ]
            continue
        seen[record.source_id] = index
        records.append(record)
    return records, errors


def ingest(organization: Organization, records: list[ValidatedRecord]) -> IngestResult:
    """Store what is new; report what exists already, and refuse changed content."""
    try:
        return _ingest_once(organization, records)
    except IntegrityError:
        # Another request stored one of these source_ids between our read and
        # our insert; now it exists, so a second pass sees it and compares.
        return _ingest_once(organization, records)


def _ingest_once(organization: Organization, records: list[ValidatedRecord]) -> IngestResult:
    result = IngestResult()
    with transaction.atomic():
        existing = {
            record.source_id: record
            for record in organization.records.filter(
                source_id__in=[record.source_id for record in records]
            )
        }
        new: list[FinancialRecord] = []
        for incoming in records:
            stored = existing.get(incoming.source_id)
            if stored is None:
                new.append(
                    FinancialRecord(
                        organization=organization, source_id=incoming.source_id, **incoming.content
                    )
                )
                continue
            differences = stored.differing_fields(incoming.content)
            if differences:
                result.conflicts.append(
                    {"source_id": incoming.source_id, "differing_fields": differences}
                )
            else:
                result.outcomes.append(Outcome(incoming.source_id, "unchanged", stored))
        if result.conflicts:
            return result
        for created in FinancialRecord.objects.bulk_create(new):
            result.outcomes.append(Outcome(created.source_id, "created", created))
        if new:
            Organization.touch(organization.pk)
    order = {record.source_id: index for index, record in enumerate(records)}
    result.outcomes.sort(key=lambda outcome: order[outcome.source_id])
    return result
