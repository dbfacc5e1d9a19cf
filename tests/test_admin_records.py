"""Records are visible in Django's admin to global admins, and nobody can change them there."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from accounting_sync.models import FinancialRecord


def _record(org) -> FinancialRecord:
    return FinancialRecord.objects.create(
        organization=org,
        source_id="claim-1",
        kind="reimbursement",
        category="travel",
        amount="450.00",
        expense_date="2026-03-01",
        approved_at="2026-03-02T10:00:00+01:00",
        claimant_reference="V-1",
        claimant_name="Kari Nordmann",
        description="Train",
    )


def test_a_global_admin_sees_records_in_the_admin(org, global_admin) -> None:
    record = _record(org)
    client = Client()
    client.force_login(global_admin)

    listing = client.get(reverse("admin:accounting_sync_financialrecord_changelist"))
    assert listing.status_code == 200
    assert record.reference in listing.content.decode()

    detail = client.get(reverse("admin:accounting_sync_financialrecord_change", args=[record.pk]))
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content  # a view, not a form


def test_records_cannot_be_changed_added_or_deleted_in_the_admin(org, global_admin) -> None:
    record = _record(org)
    client = Client()
    client.force_login(global_admin)

    change = client.post(
        reverse("admin:accounting_sync_financialrecord_change", args=[record.pk]),
        {"amount": "1.00"},
    )
    add = client.get(reverse("admin:accounting_sync_financialrecord_add"))
    delete = client.post(
        reverse("admin:accounting_sync_financialrecord_delete", args=[record.pk]), {"post": "yes"}
    )

    assert (change.status_code, add.status_code, delete.status_code) == (403, 403, 403)
    record.refresh_from_db()
    assert record.amount == 450


def test_org_admins_cannot_open_the_admin(org, org_admin) -> None:
    client = Client()
    client.force_login(org_admin)
    response = client.get(reverse("admin:accounting_sync_financialrecord_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
