"""Builders shared by the tests that sync against the ERP sandbox: an integration pointing
at it, approved records, what its ledger holds, a whole run in-process.

They lived at the top of test_sync_engine.py; a dozen modules imported them from there,
so importing any of those modules also collected that module's autouse fixture and
depended on a test file. Plain functions: each builds exactly what a test names, and a
test that needs something else passes it in (`configure(..., enabled=False)`).
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from accounting_sync.models import FinancialRecord, SyncRun
from accounting_sync.orchestrator import execute_run, start_run
from erp_sandbox.client import SandboxProcess
from integrations.models import CategoryMapping, Integration
from organizations.models import Organization

State = FinancialRecord.State

XLEDGER_TOKEN = "xl-demo-blindeforbundet-token"
XLEDGER_ENTITY = "Blindeforbundet"
BC = {
    "tenant_id": "3f2b9c4e-5d6a-4b7c-8e9f-0a1b2c3d4e5f",
    "company_id": "8a4c2e6f-1b3d-4a5c-9e7f-6d8b0a2c4e6f",
    "client_id": "5c1e7a92-0d3b-4f6e-9a8c-2b4d6f8a0c1e",
    "secret": "hlf-demo-secret",
    "company": "HLF",
}
# category → (account, cost center) per connector; the payable account is credited.
MAPPINGS = {
    "xledger": {"travel": ("7130", "300"), "honorarium": ("5330", "200")},
    "business_central": {"travel": ("7130", "0300"), "honorarium": ("5330", "0200")},
}
PAYABLE = "2910"


# --- builders -------------------------------------------------------------------------------


def configure(
    organization: Organization, sandbox: SandboxProcess, connector: str = "xledger", **changes: Any
) -> Integration:
    """An enabled, tested, mapped integration pointing at the sandbox."""
    integration, _ = Integration.objects.get_or_create(
        organization=organization, defaults={"connector": connector}
    )
    integration.connector = connector
    if connector == "xledger":
        integration.base_url = f"{sandbox.url}/graphql"
        integration.xledger_auth = "token"
        integration.cost_center_object = 1
        integration.cost_center_kind_db_id = 101
        secrets = {"api_token": XLEDGER_TOKEN}
    else:
        integration.base_url = sandbox.url
        integration.authority_host = sandbox.url
        integration.tenant_id = BC["tenant_id"]
        integration.environment = "production"
        integration.company_id = BC["company_id"]
        integration.client_id = BC["client_id"]
        integration.journal_code = "UTLEGG"
        integration.cost_center_dimension = "AVDELING"
        secrets = {"client_secret": BC["secret"]}
    integration.set_credentials(secrets)
    mapped = MAPPINGS[connector]
    integration.erp_accounts = [
        {"code": code, "name": code} for code in {PAYABLE, *(a for a, _ in mapped.values())}
    ]
    integration.erp_cost_centers = [{"code": c, "name": c} for _, c in mapped.values()]
    integration.payable_account = PAYABLE
    integration.connection_verified_at = timezone.now()
    integration.enabled = True
    integration.first_retry_delay_seconds = 60
    for name, value in changes.items():
        setattr(integration, name, value)
    integration.save()
    for category, (account, center) in mapped.items():
        CategoryMapping.objects.update_or_create(
            integration=integration,
            category=category,
            defaults={"account_code": account, "cost_center_code": center},
        )
    return integration


def make_records(
    organization: Organization, count: int, *, category: str = "travel", start: int = 0
) -> list[FinancialRecord]:
    approved = timezone.now() - timedelta(days=1)
    records = [
        FinancialRecord(
            organization=organization,
            source_id=f"claim-{category}-{start + n}",
            kind="reimbursement",
            category=category,
            amount=Decimal("100.00") + Decimal(n % 900) + Decimal("0.25"),
            currency="NOK",
            expense_date=date.today() - timedelta(days=2),
            approved_at=approved,
            claimant_reference=f"V-{1000 + n % 50}",
            claimant_name="Kari Nordmann",
            description=f"Train Oslo-Hamar {start + n}",
        )
        for n in range(count)
    ]
    FinancialRecord.objects.bulk_create(records, batch_size=500)
    return list(
        FinancialRecord.objects.filter(organization=organization, category=category).order_by("pk")
    )


def ledger_counts(sandbox: SandboxProcess, connector: str = "xledger") -> Counter[str]:
    """How many times each reference was posted (vouchers, not lines)."""
    ledger = sandbox.ledger()
    if connector == "xledger":
        items = ledger["xledger"].get(XLEDGER_ENTITY, [])
        # A voucher is two lines (debit, credit) with the same extIdentifier.
        lines = Counter(item["extIdentifier"] for item in items)
        assert all(n % 2 == 0 for n in lines.values()), "a voucher with an odd number of lines"
        return Counter({ref: n // 2 for ref, n in lines.items()})
    company = ledger["business_central"].get(BC["company"], {})
    return Counter(line["externalDocumentNumber"] for line in company.get("journalLines", []))


def sync(organization: Organization, trigger: str = "manual", **kwargs: Any) -> SyncRun:
    run = start_run(organization, trigger, **kwargs)
    done = execute_run(run.pk, worker="test")
    assert done is not None
    return done


def make_due(organization: Organization) -> None:
    """Every planned retry, lookup or import check is due now (the delays themselves are
    asserted in their own tests)."""
    FinancialRecord.objects.filter(organization=organization).exclude(
        next_retry_at__isnull=True
    ).update(next_retry_at=timezone.now() - timedelta(seconds=1))


def states(organization: Organization) -> Counter[str]:
    return Counter(
        FinancialRecord.objects.filter(organization=organization).values_list("state", flat=True)
    )
