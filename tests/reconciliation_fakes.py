"""A stand-in for the ERP's side of a reconciliation, for the engine, page and browser tests.

These tests give the reading a ledger of their own through `Integration.build_connector`,
so that each class can be set up exactly; the records, the engine's reading and
classification, the pages and the trail are real. `Connector.entries` itself is tested
against the ERP sandbox (tests/test_reconciliation_erp.py, tests/test_reconciliation_sandbox.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

from django.utils import timezone

from accounting_sync.models import FinancialRecord
from integrations.clients.base import ConnectorError, EntrySource, ErpEntry
from integrations.models import CategoryMapping, Integration
from organizations.models import Organization


class Ledger:
    """Answers `entries` with what a test put in it, `per_page` entries a page."""

    def __init__(self, per_page: int = 2, pause: float = 0.0) -> None:
        self.entries_held: list[ErpEntry] = []
        self.per_page = per_page
        self.pause = pause  # seconds before each page: a page can watch the progress
        self.fail: ConnectorError | None = None
        self.asked: list[tuple[date, date, str]] = []

    def entries(self, start: date, end: date, prefix: str) -> Iterator[list[ErpEntry]]:
        self.asked.append((start, end, prefix))
        if self.fail is not None:
            raise self.fail
        mine = [e for e in self.entries_held if e.reference.startswith(prefix)]
        for index in range(0, len(mine), self.per_page):
            if self.pause:
                time.sleep(self.pause)
            yield mine[index : index + self.per_page]


def stand_in(monkeypatch, **options: float) -> Ledger:
    """A Ledger every integration's connector answers from, for the test's duration."""
    ledger = Ledger(**options)  # type: ignore[arg-type]
    monkeypatch.setattr(Integration, "build_connector", lambda self: ledger)
    return ledger


def ready_integration(organization: Organization) -> Integration:
    """Enabled, tested and mapped: what a reconciliation needs to be run."""
    integration = organization.integration
    integration.payable_account = "2910"
    integration.enabled = True
    integration.connection_verified_at = timezone.now()
    integration.save()
    CategoryMapping.objects.get_or_create(
        integration=integration,
        category="travel",
        defaults={"account_code": "7140", "cost_center_code": "300"},
    )
    return integration


def entry(record: FinancialRecord, **changes: object) -> ErpEntry:
    """What the ERP holds for a record sent as it is (changed by `changes`)."""
    values: dict[str, object] = {
        "reference": record.reference,
        "erp_id": f"erp-{record.pk}",
        "source": EntrySource.LEDGER_ENTRY,
        "posting_date": timezone.localtime(record.approved_at).date(),
        "amount": record.amount,
        "account": "7140",
        "cost_center": "300",
        "currency": "NOK",
    }
    return ErpEntry(**{**values, **changes})  # type: ignore[arg-type]


def stray(organization: Organization, suffix: str, day: date, amount: str = "5.00") -> ErpEntry:
    """An entry with the organization's prefix that no record explains."""
    return ErpEntry(
        f"VH-{organization.pk}-{suffix}",
        "stray-1",
        EntrySource.LEDGER_ENTRY,
        day,
        Decimal(amount),
        "7140",
    )


def set_state(record: FinancialRecord, state: str, **fields: object) -> None:
    FinancialRecord.objects.filter(pk=record.pk).update(state=state, **fields)
    record.refresh_from_db()
