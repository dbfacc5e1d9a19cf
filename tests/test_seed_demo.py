"""`make run` seeds the demo: two organizations on their ERPs, four logins, records.

Blindeforbundet set up and partly synced through the engine against the ERP sandbox,
HLF tested but not mapped (issue 11 item 8); `demo_feed` posts through the inbound API.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.http import HttpRequest

from accounting_sync.management.commands.seed_demo import (
    BF_MAPPINGS,
    BF_PAYABLE,
    DEMO_API_KEY,
    REFUSED_CATEGORY,
    SYNCED_AT_SEED,
)
from accounting_sync.models import FinancialRecord, SyncLog, SyncRun
from audit.models import AdminAction
from erp_sandbox.client import SandboxProcess
from integrations.clients import business_central as bc
from integrations.clients import xledger as xl
from integrations.models import CategoryMapping, ConnectionTest, Integration
from organizations.models import ApiKey, Membership, Organization

XLEDGER_ENTITY = "Blindeforbundet"


def use_sandbox(settings: Any, url: str, ca_bundle: Path) -> None:
    settings.ERP_SANDBOX_URL = url
    settings.ERP_CA_BUNDLE = str(ca_bundle)
    # The connectors cache tokens per process: a token of another sandbox means nothing here.
    xl._tokens.clear()
    bc._apps.clear()


@pytest.fixture
def seeded(db, settings, capsys, erp_sandbox: SandboxProcess) -> str:
    """The seed with the tests' sandbox running where the demo expects it."""
    settings.DEBUG = True
    use_sandbox(settings, erp_sandbox.url, erp_sandbox.ca_bundle)
    call_command("seed_demo")
    return capsys.readouterr().out


def posted_references(ledger: dict[str, Any]) -> set[str]:
    """References Xledger posted (transactions) or holds for import (GL import items)."""
    items = ledger["xledger"].get(XLEDGER_ENTITY, [])
    transactions = ledger["xledger_transactions"].get(XLEDGER_ENTITY, [])
    return {line["extIdentifier"] for line in [*items, *transactions]}


def bf_records(state: str) -> list[FinancialRecord]:
    return list(FinancialRecord.objects.filter(organization__slug="blindeforbundet", state=state))


def test_the_demo_has_both_organizations_on_their_erps(seeded) -> None:
    assert Integration.objects.get(organization__slug="blindeforbundet").connector == "xledger"
    assert Integration.objects.get(organization__slug="hlf").connector == "business_central"


def test_the_demo_integrations_point_at_the_sandbox_with_encrypted_credentials(
    seeded, erp_sandbox
) -> None:
    xledger = Integration.objects.get(organization__slug="blindeforbundet")
    dynamics = Integration.objects.get(organization__slug="hlf")
    assert xledger.base_url == f"{erp_sandbox.url}/graphql"
    assert xledger.credentials() == {"api_token": "xl-demo-blindeforbundet-token"}
    assert "xl-demo" not in xledger.credentials_ciphertext
    assert dynamics.authority_host == erp_sandbox.url
    assert dynamics.credentials() == {"client_secret": "hlf-demo-secret"}


def test_issue11_item8_blindeforbundet_is_set_up_the_whole_way(seeded) -> None:
    integration = Integration.objects.get(organization__slug="blindeforbundet")
    assert integration.enabled and integration.why_not_enable() is None
    test = integration.connection_tests.get()
    assert test.status == ConnectionTest.Status.SUCCEEDED and test.account_count > 50
    assert test.requested_by is not None and test.requested_by.username == "bf-admin"
    mappings = {
        m.category: (m.account_code, m.cost_center_code) for m in integration.mappings.all()
    }
    assert mappings == BF_MAPPINGS
    # Every mapping and the payable account are among what Xledger listed at the test.
    assert {a for a, _c in mappings.values()} | {BF_PAYABLE} <= {
        a["code"] for a in integration.erp_accounts
    }
    assert {c for _a, c in mappings.values()} <= {c["code"] for c in integration.erp_cost_centers}
    assert integration.payable_account == BF_PAYABLE
    kinds = set(
        AdminAction.objects.filter(organization=integration.organization).values_list(
            "kind", flat=True
        )
    )
    assert {"connection_tested", "mappings_changed", "connector_enabled"} <= kinds


def test_issue11_item8_synced_demo_records_are_in_the_sandbox_ledger_and_failed_ones_are_not(
    seeded, erp_sandbox
) -> None:
    synced, failed = bf_records("synced"), bf_records("failed")
    assert len(synced) == SYNCED_AT_SEED and all(r.erp_document_id for r in synced)
    assert failed and {r.category for r in failed} == {REFUSED_CATEGORY}
    account = BF_MAPPINGS[REFUSED_CATEGORY][0]
    assert all(f"Account '{account}' does not exist" in r.last_error for r in failed)
    ledger = erp_sandbox.ledger()
    posted = {t["extIdentifier"] for t in ledger["xledger_transactions"][XLEDGER_ENTITY]}
    assert posted == {r.reference for r in synced}
    assert not posted_references(ledger) & {r.reference for r in failed}
    # Sent through the engine: runs and attempts as an approval would have made them.
    runs = SyncRun.objects.filter(organization__slug="blindeforbundet")
    assert {run.trigger for run in runs} == {SyncRun.Trigger.APPROVAL}
    assert SyncLog.objects.filter(record__in=synced + failed).count() == len(synced + failed)
    # The rest wait for a person's Sync now; the refusal was only in force during the seed.
    assert len(bf_records("pending")) >= 8
    assert erp_sandbox.faults()["unknown_accounts"] == []


def test_issue11_item8_hlf_is_tested_with_saved_credentials_and_nothing_mapped(seeded) -> None:
    integration = Integration.objects.get(organization__slug="hlf")
    assert integration.has_credentials and integration.connection_verified_at is not None
    assert integration.connection_tests.get().status == ConnectionTest.Status.SUCCEEDED
    assert integration.erp_accounts and integration.erp_journals
    assert not integration.mappings.exists() and not integration.payable_account
    assert not integration.enabled
    assert not SyncRun.objects.filter(organization__slug="hlf").exists()
    assert set(
        FinancialRecord.objects.filter(organization__slug="hlf").values_list("state", flat=True)
    ) == {"pending"}


def test_seeding_again_keeps_credentials_an_admin_saved(seeded) -> None:
    integration = Integration.objects.get(organization__slug="blindeforbundet")
    integration.set_credentials({"api_token": "the-real-token"})
    integration.save()
    call_command("seed_demo")
    integration.refresh_from_db()
    assert integration.credentials() == {"api_token": "the-real-token"}


def test_the_printed_logins_work_with_their_roles(seeded) -> None:
    for username, password in [
        ("global-admin", "demo-global-admin"),
        ("bf-admin", "demo-bf-admin"),
        ("hlf-admin", "demo-hlf-admin"),
        ("auditor", "demo-auditor"),
    ]:
        assert f"{username}" in seeded and password in seeded
        assert authenticate(HttpRequest(), username=username, password=password), username
    # django-axes checks every login against its lockouts, so it wants the request.
    global_admin = authenticate(
        HttpRequest(), username="global-admin", password="demo-global-admin"
    )
    assert global_admin is not None and global_admin.is_superuser
    assert Membership.objects.get(user__username="bf-admin").role == "admin"
    assert set(
        Membership.objects.filter(user__username="auditor").values_list("role", flat=True)
    ) == {"auditor"}


def test_the_demo_has_a_few_dozen_records_of_both_kinds(seeded) -> None:
    for organization in Organization.objects.all():
        kinds = set(organization.records.values_list("kind", flat=True))
        assert kinds == {"reimbursement", "honorarium"}
        assert organization.records.filter(state="pending").count() >= 12
    assert 24 <= FinancialRecord.objects.count() <= 60


def everything(erp_sandbox: SandboxProcess) -> dict[str, Any]:
    return {
        "records": list(
            FinancialRecord.objects.order_by("pk").values_list(
                "source_id", "state", "erp_document_id"
            )
        ),
        "memberships": Membership.objects.count(),
        "organizations": Organization.objects.count(),
        "runs": SyncRun.objects.count(),
        "attempts": SyncLog.objects.count(),
        "tests": ConnectionTest.objects.count(),
        "integrations": list(
            Integration.objects.order_by("pk").values_list(
                "organization__slug", "enabled", "connection_verified_at", "payable_account"
            )
        ),
        "mappings": list(
            CategoryMapping.objects.order_by("pk").values_list("category", "account_code")
        ),
        "trail": AdminAction.objects.count(),
        "api keys": list(ApiKey.objects.order_by("pk").values_list("prefix", "revoked_at")),
        "ledger": erp_sandbox.ledger(),
    }


def test_seeding_twice_changes_nothing(seeded, capsys, erp_sandbox) -> None:
    before = everything(erp_sandbox)
    call_command("seed_demo")
    assert "demo data already in place" in capsys.readouterr().out
    assert everything(erp_sandbox) == before


def test_issue11_item8_seeding_leaves_an_admins_own_setup_alone(seeded, erp_sandbox) -> None:
    """Disabled and unmapped by its admin afterwards, Blindeforbundet is not set up again."""
    integration = Integration.objects.get(organization__slug="blindeforbundet")
    integration.mappings.all().delete()
    integration.payable_account = ""
    integration.enabled = False
    integration.save()
    before = everything(erp_sandbox)
    call_command("seed_demo")
    assert everything(erp_sandbox) == before


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def no_sandbox_running(settings, tmp_path) -> Iterator[tuple[int, Path]]:
    """`make run`'s case: nothing answers at ERP_SANDBOX_URL yet (a port of our own)."""
    port = free_port()
    settings.DEBUG = True
    settings.VAR_DIR = tmp_path
    use_sandbox(settings, f"https://localhost:{port}", tmp_path / "sandbox" / "ca-bundle.pem")
    yield port, tmp_path / "sandbox"


def test_issue11_item8_with_no_sandbox_running_the_seed_starts_one_and_its_ledger_outlives_it(
    db, no_sandbox_running
) -> None:
    port, state_dir = no_sandbox_running
    call_command("seed_demo")
    synced = {r.reference for r in bf_records("synced")}
    assert len(synced) == SYNCED_AT_SEED
    with socket.socket() as probe:  # stopped again: honcho's sandbox takes the port next
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the sandbox binds
        probe.bind(("127.0.0.1", port))
    # The sandbox `make run` starts next (Procfile, --persist) still holds what was posted.
    with SandboxProcess.start(state_dir, port=port, persist=True) as sandbox:
        posted = {
            t["extIdentifier"] for t in sandbox.ledger()["xledger_transactions"][XLEDGER_ENTITY]
        }
        assert posted == synced
        assert not posted_references(sandbox.ledger()) & {r.reference for r in bf_records("failed")}


def test_issue11_item8_without_a_sandbox_the_seed_fakes_nothing_and_says_so(
    db, no_sandbox_running, capsys, monkeypatch
) -> None:
    # The sandbox cannot start (here: its module is not found, as without the demo extra).
    monkeypatch.setattr("sys.executable", "/bin/false")
    call_command("seed_demo")
    assert "The ERP sandbox is not available" in capsys.readouterr().out
    assert not ConnectionTest.objects.exists() and not SyncRun.objects.exists()
    assert not Integration.objects.filter(enabled=True).exists()
    assert set(FinancialRecord.objects.values_list("state", flat=True)) == {"pending"}


@pytest.mark.django_db(transaction=True)
def test_issue11_item8_the_demo_feed_posts_approvals_through_the_api(
    seeded, live_server, capsys
) -> None:
    before = set(FinancialRecord.objects.values_list("pk", flat=True))
    call_command("demo_feed", "--url", live_server.url, "--count", "2", "--interval", "0")
    output = capsys.readouterr().out
    fed = FinancialRecord.objects.exclude(pk__in=before)
    assert fed.count() == 2
    assert {r.organization.slug for r in fed} == {"blindeforbundet"}
    assert {r.state for r in fed} == {"pending"}  # Blindeforbundet syncs when asked to
    assert all(r.source_id.startswith("demo-feed-") for r in fed)
    for record in fed:
        assert f"{record.reference} (pending)" in output
    assert DEMO_API_KEY not in output
    with pytest.raises(CommandError, match="API key was refused"):
        call_command("demo_feed", "--url", live_server.url, "--count", "1", "--key", "vlk_x_y")


def test_the_demo_seed_refuses_to_run_in_production(db, settings) -> None:
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG=true only"):
        call_command("seed_demo")
    assert not Organization.objects.exists()


def test_issue12_item2_the_demo_global_admin_logs_in_with_the_printed_demo_key(
    seeded, capsys
) -> None:
    from django.core.management import call_command
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from accounting_sync.management.commands.seed_demo import demo_totp_key_base32

    device = TOTPDevice.objects.get(user__username="global-admin")
    assert device.confirmed
    call_command("seed_demo")
    assert demo_totp_key_base32() in capsys.readouterr().out
    call_command("demo_code")
    code = capsys.readouterr().out.strip()
    assert len(code) == 6 and device.verify_token(code)


def test_issue12_item2_demo_code_refuses_in_production_and_for_other_keys(seeded, settings) -> None:
    from django.core.management import CommandError, call_command
    from django_otp.plugins.otp_totp.models import TOTPDevice

    TOTPDevice.objects.update(key="00" * 20)  # a key someone set up themselves
    with pytest.raises(CommandError, match="no demo authenticator"):
        call_command("demo_code")
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG=true only"):
        call_command("demo_code")
