"""`make run` seeds the demo: two organizations on their ERPs, four logins, records."""

from __future__ import annotations

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.http import HttpRequest

from accounting_sync.models import FinancialRecord
from integrations.models import Integration
from organizations.models import Membership, Organization


@pytest.fixture
def seeded(db, settings, capsys) -> str:
    settings.DEBUG = True
    call_command("seed_demo")
    return capsys.readouterr().out


def test_the_demo_has_both_organizations_on_their_erps(seeded) -> None:
    assert Integration.objects.get(organization__slug="blindeforbundet").connector == "xledger"
    assert Integration.objects.get(organization__slug="hlf").connector == "business_central"


def test_the_demo_integrations_point_at_the_sandbox_with_encrypted_credentials(seeded) -> None:
    xledger = Integration.objects.get(organization__slug="blindeforbundet")
    dynamics = Integration.objects.get(organization__slug="hlf")
    assert xledger.base_url == "https://localhost:8443/graphql"
    assert xledger.credentials() == {"api_token": "xl-demo-blindeforbundet-token"}
    assert "xl-demo" not in xledger.credentials_ciphertext
    assert dynamics.authority_host == "https://localhost:8443"
    assert dynamics.credentials() == {"client_secret": "hlf-demo-secret"}
    assert not xledger.enabled and not dynamics.enabled  # enabled after a passed test


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


def test_seeding_twice_changes_nothing(seeded, capsys) -> None:
    before = (
        FinancialRecord.objects.count(),
        Membership.objects.count(),
        Organization.objects.count(),
    )
    call_command("seed_demo")
    assert "demo data already in place" in capsys.readouterr().out
    assert before == (
        FinancialRecord.objects.count(),
        Membership.objects.count(),
        Organization.objects.count(),
    )


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
