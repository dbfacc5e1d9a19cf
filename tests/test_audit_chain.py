"""S8.6: audit rows are never changed by the application, and tampering is detectable."""

from __future__ import annotations

import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounting_sync.models import FinancialRecord, SyncLog, SyncRun
from audit.models import AdminAction, ChainCheckpoint
from audit.tasks import verify_chains
from core.chain import GENESIS, digest, head, verify_chain


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
    first = FinancialRecord.objects.filter(organization=org).count()
    rows = [
        SyncLog(
            run=run,
            record=record(org, first + n),
            organization=org,
            connector="xledger",
            attempt_number=1,
            trigger="manual",
            status="succeeded",
            payload={"inputs": [{"amount": "100.00"}]},
            reference=f"VH-{org.pk}-{first + n}",
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


@pytest.mark.postgres_only(
    reason="SQLite has no trigger refusing changes to sync_logs (audit/migrations/0002); "
    "there the hash chain catches them (the tests of the badge and the chain check)"
)
@pytest.mark.django_db(transaction=True)
def test_s8_6_the_database_refuses_changes_too(org) -> None:
    row = attempts(org, 1)[0]
    # CI's PostgreSQL pass and production: a trigger refuses it
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


# --- the badge on the audit pages: the stored verification, named rows (S8.6) ---------------


def audit_page(user, org) -> str:
    client = Client()
    client.force_login(user)
    return client.get(reverse("audit_log", args=[org.slug])).content.decode()


def test_s8_6_the_badge_names_a_row_edited_behind_the_applications_back(org, auditor) -> None:
    rows = attempts(org, 5)
    verify_chains()  # the beat task, from the checkpoint (here: the first run)
    assert f"Chain verified up to row {rows[-1].pk} at" in audit_page(auditor, org)

    behind_the_applications_back(
        "UPDATE sync_logs SET error_message = %s WHERE id = %s", ["nothing", rows[2].pk]
    )
    verify_chains(whole=True)  # the nightly walk from the first row

    page = audit_page(auditor, org)
    assert f"Chain broken at row {rows[2].pk}" in page
    assert "its content was changed after it was written" in page
    assert reverse("audit_entry", args=[org.slug, rows[2].pk]) in page
    assert "Chain verified" not in page


def test_s8_6_the_command_keeps_its_result_for_the_badge(org, auditor) -> None:
    rows = attempts(org, 3)
    behind_the_applications_back(
        "UPDATE sync_logs SET status = 'failed' WHERE id = %s", [rows[0].pk]
    )

    with pytest.raises(CommandError, match=f"row {rows[0].pk}: its content was changed"):
        call_command("verify_audit_chain", organization=org.slug)

    assert f"Chain broken at row {rows[0].pk}" in audit_page(auditor, org)


def test_s8_6_new_rows_are_verified_from_the_last_verified_row(org) -> None:
    attempts(org, 3)
    verify_chains()
    newer = attempts(org, 2)  # three older, two new

    checkpoint = ChainCheckpoint.for_chain(org.pk, ChainCheckpoint.Chain.SYNC_LOG)
    result = checkpoint.verify()

    assert result.checked == 2 and result.broken is None
    assert checkpoint.last_row_id == newer[-1].pk and checkpoint.rows_verified == 5


def test_s8_6_a_rewritten_chain_before_the_checkpoint_is_walked_whole(org) -> None:
    """Someone recomputes the hashes after their edit: the stored hash of the last
    verified row no longer matches, so even the five-minute run walks from the first row."""
    rows = attempts(org, 4)
    verify_chains()
    behind_the_applications_back(
        "UPDATE sync_logs SET row_hash = %s WHERE id = %s", ["f" * 64, rows[-1].pk]
    )

    verify_chains()

    checkpoint = ChainCheckpoint.for_chain(org.pk, ChainCheckpoint.Chain.SYNC_LOG)
    assert checkpoint.broken_row_id == rows[-1].pk


def test_s8_6_the_page_shows_the_stored_result_and_never_walks_the_chain(org, auditor) -> None:
    attempts(org, 3)
    page = audit_page(auditor, org)
    assert "Chain not verified yet." in page

    client = Client()
    client.force_login(auditor)
    with CaptureQueriesContext(connection) as captured:
        client.get(reverse("audit_log", args=[org.slug]))
    # Only the page's 51 rows are read: no query runs over the whole chain.
    reads = [q["sql"] for q in captured if 'FROM "sync_logs"' in q["sql"]]
    assert reads and all("LIMIT 51" in sql for sql in reads)


def test_s8_6_the_trail_badge_names_an_edited_action_and_links_to_it(org, org_admin) -> None:
    made = [
        AdminAction.record(org_admin, org, AdminAction.Kind.API_KEY_ISSUED, prefix=p) for p in "abc"
    ]
    behind_the_applications_back(
        "UPDATE audit_adminaction SET detail = %s WHERE id = %s", ['{"prefix": "z"}', made[1].pk]
    )
    verify_chains(whole=True)

    client = Client()
    client.force_login(org_admin)
    page = client.get(reverse("admin_trail", args=[org.slug])).content.decode()
    assert f"Chain broken at row {made[1].pk}" in page
    assert f"?before={made[1].pk + 1}#action-{made[1].pk}" in page
    assert f'id="action-{made[1].pk}"' in page


def test_s8_6_global_admins_see_which_organizations_chains_are_broken(
    org, other_org, global_admin
) -> None:
    rows = attempts(org, 2)
    attempts(other_org, 2)
    behind_the_applications_back("DELETE FROM sync_logs WHERE id = %s", [rows[0].pk])
    verify_chains(whole=True)

    client = Client()
    client.force_login(global_admin)
    page = client.get(reverse("global_audit_log")).content.decode()
    assert "The chain of 1 organization is broken" in page
    assert "Blindeforbundet:" in page and f"Chain broken at row {rows[1].pk}" in page


@pytest.mark.django_db(transaction=True)
def test_s8_6_verify_now_runs_on_a_worker_and_the_badge_follows_it(
    org, auditor, celery_worker
) -> None:
    rows = attempts(org, 30)
    behind_the_applications_back(
        "UPDATE sync_logs SET duration_ms = 1 WHERE id = %s", [rows[20].pk]
    )
    client = Client()
    client.force_login(auditor)

    asked = client.post(
        reverse("audit_verify", args=[org.slug]), {"chain": "sync_log"}, HTTP_HX_REQUEST="true"
    )
    text = asked.content.decode()
    assert "Verification started" in text and "data-live" in text

    deadline = time.monotonic() + 60
    badge = reverse("audit_chain_badge", args=[org.slug])
    while (answer := client.get(badge, {"chain": "sync_log"})).status_code != 286:
        assert time.monotonic() < deadline, celery_worker.log_path.read_text()
        time.sleep(0.3)
    final = answer.content.decode()
    assert f"Chain broken at row {rows[20].pk}" in final
    assert "data-live" not in final  # nothing left to watch
    assert f"Verification finished: the chain is broken at row {rows[20].pk}." in final

    version = ChainCheckpoint.shown(org.pk, "sync_log").version
    assert client.get(badge, {"chain": "sync_log", "v": str(version)}).status_code == 204


def test_s8_6_the_chains_are_verified_by_beat(settings) -> None:
    tasks = {entry["task"]: entry for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "audit.tasks.verify_chains" in tasks
