"""S8.6: audit rows are never changed by the application, and tampering is detectable."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.utils import DatabaseError

from accounting_sync.models import FinancialRecord, SyncLog, SyncRun
from audit.chain import GENESIS, digest, head, verify_chain
from audit.models import AdminAction


def record(org, n: int) -> FinancialRecord:
    return FinancialRecord.objects.create(
        organization=org,
        source_id=f"claim-{n}",
        kind="reimbursement",
        category="travel",
        amount="100.00",
        expense_date="2026-03-01",
        approved_at="2026-03-02T10:00:00+01:00",
        claimant_reference="V-1",
        claimant_name="Kari Nordmann",
    )


def attempts(org, count: int) -> list[SyncLog]:
    run = SyncRun.objects.create(
        organization=org, connector="xledger", trigger="manual", status="succeeded"
    )
    rows = [
        SyncLog(
            run=run,
            record=record(org, n),
            organization=org,
            connector="xledger",
            attempt_number=1,
            trigger="manual",
            status="succeeded",
            payload={"inputs": [{"amount": "100.00"}]},
            reference=f"VH-{org.pk}-{n}",
        )
        for n in range(count)
    ]
    SyncLog.objects.bulk_create(rows)
    return list(SyncLog.objects.filter(organization=org).order_by("id"))


def behind_the_applications_back(sql: str, params: list) -> None:
    """What a database superuser could do: skip the insert-only trigger and write."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)


def test_s8_6_each_row_is_chained_to_the_previous_row_of_its_organization(org, other_org) -> None:
    mine = attempts(org, 3)
    theirs = attempts(other_org, 2)

    assert mine[0].prev_hash == GENESIS and theirs[0].prev_hash == GENESIS
    assert [row.prev_hash for row in mine[1:]] == [row.row_hash for row in mine[:-1]]
    assert mine[2].row_hash == digest(mine[2].prev_hash, mine[2].chain_content())
    assert head(SyncLog, org.pk) == mine[-1].row_hash
    assert verify_chain(SyncLog, org.pk) == (3, None)


def test_s8_6_an_edited_row_is_named_by_the_verification(org) -> None:
    rows = attempts(org, 5)
    behind_the_applications_back(
        "UPDATE sync_logs SET response_body = %s WHERE id = %s", ["all fine", rows[2].pk]
    )

    _checked, failure = verify_chain(SyncLog, org.pk)

    assert failure is not None and failure.row_id == rows[2].pk
    assert "changed" in failure.reason
    with pytest.raises(CommandError, match=f"row {rows[2].pk}: its content was changed"):
        call_command("verify_audit_chain", organization=org.slug)


def test_s8_6_a_deleted_row_is_named_by_the_row_after_it(org) -> None:
    rows = attempts(org, 4)
    behind_the_applications_back("UPDATE sync_logs SET retry_of_id = NULL WHERE id > 0", [])
    behind_the_applications_back("DELETE FROM sync_logs WHERE id = %s", [rows[1].pk])

    _checked, failure = verify_chain(SyncLog, org.pk)

    assert failure is not None and failure.row_id == rows[2].pk
    assert "removed" in failure.reason


def test_s8_6_an_intact_chain_is_reported_intact(org, capsys) -> None:
    attempts(org, 3)
    AdminAction.record(None, org, AdminAction.Kind.API_KEY_ISSUED, prefix="abc")
    call_command("verify_audit_chain")
    out = capsys.readouterr().out
    assert "Blindeforbundet, sync log: 3 rows intact." in out
    assert "Blindeforbundet, administrative trail: 1 rows intact." in out


def test_s8_6_the_application_never_changes_or_deletes_a_row(org) -> None:
    row = attempts(org, 1)[0]
    with pytest.raises(TypeError):
        SyncLog.objects.filter(pk=row.pk).update(status="failed")
    with pytest.raises(TypeError):
        row.save()
    with pytest.raises(TypeError):
        row.delete()
    with pytest.raises(TypeError):
        AdminAction.objects.all().delete()


@pytest.mark.django_db(transaction=True)
def test_s8_6_the_database_refuses_changes_too(org) -> None:
    row = attempts(org, 1)[0]
    if connection.vendor == "postgresql":  # CI and production: a trigger refuses it
        for sql in (
            "UPDATE sync_logs SET status = 'failed' WHERE id = %s",
            "DELETE FROM sync_logs WHERE id = %s",
        ):
            with (
                pytest.raises(DatabaseError, match="never changed or deleted"),
                transaction.atomic(),
                connection.cursor() as cursor,
            ):
                cursor.execute(sql, [row.pk])
    else:  # the SQLite demo: no trigger (see audit/migrations/0002), the chain catches it
        behind_the_applications_back(
            "UPDATE sync_logs SET status = 'failed' WHERE id = %s", [row.pk]
        )
        assert verify_chain(SyncLog, org.pk)[1].row_id == row.pk


def test_s8_6_admin_actions_are_chained_per_organization(org) -> None:
    first = AdminAction.record(None, org, AdminAction.Kind.API_KEY_ISSUED, prefix="a")
    second = AdminAction.record(None, org, AdminAction.Kind.API_KEY_ISSUED, prefix="b")
    platform = AdminAction.record(None, None, AdminAction.Kind.API_KEY_ISSUED, prefix="c")
    assert second.prev_hash == first.row_hash
    assert platform.prev_hash == GENESIS
    assert verify_chain(AdminAction, org.pk) == (2, None)


@pytest.mark.django_db(transaction=True)
def test_deleting_a_user_keeps_their_actions_in_the_trail(org, org_admin) -> None:
    AdminAction.record(org_admin, org, AdminAction.Kind.API_KEY_ISSUED, prefix="a")
    org_admin.delete()
    action = AdminAction.objects.get()
    assert action.actor_username == "own-admin"
    assert verify_chain(AdminAction, org.pk) == (1, None)
