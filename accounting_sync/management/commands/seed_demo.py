"""Demo data for `make run`: two organizations, four people, a few dozen records.

Blindeforbundet is set up the whole way (credentials, a passed connection test,
mappings, payable account, connector enabled) and has records already synced and a
few failed; HLF is half way (credentials saved and tested, nothing mapped), so a
newcomer sees both a working organization and what setting one up looks like.

What the ERP holds is never pretended: the connection tests and the first sends go
to the ERP sandbox through the real code (integrations/tasks.py, the orchestrator).
`make run` seeds before honcho starts the sandbox, so when no sandbox answers at
ERP_SANDBOX_URL the seed starts one for the while (with `--persist`, the one honcho
then starts reads back what was posted) and stops it again. Without a sandbox (it
cannot start) those steps are left for the next seed and said so.

Safe to run at every start: each step is done once, what exists is left as it is
(never an admin's changes overwritten). Refuses to run with DEBUG off, because the
demo passwords and the demo API key are printed and well known.
"""

from __future__ import annotations

import base64
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounting_sync.inbound import ingest, validate_batch
from accounting_sync.models import SyncRun
from accounting_sync.orchestrator import execute_run, start_run
from core.events import TrailKind, record_action
from integrations.models import CategoryMapping, ConnectionTest, Integration
from integrations.tasks import run_connection_test
from organizations.models import ApiKey, Membership, Organization

ORGANIZATIONS = [
    ("blindeforbundet", "Blindeforbundet", Integration.Connector.XLEDGER),
    ("hlf", "HLF", Integration.Connector.BUSINESS_CENTRAL),
]
# username, password, first name, last name, {org slug: role} (None = global admin)
PEOPLE = [
    ("global-admin", "demo-global-admin", "Gina", "Global", None),
    ("bf-admin", "demo-bf-admin", "Berit", "Blind", {"blindeforbundet": "admin"}),
    ("hlf-admin", "demo-hlf-admin", "Hallvard", "Hørsel", {"hlf": "admin"}),
    ("auditor", "demo-auditor", "Aud", "Revisor", {"blindeforbundet": "auditor", "hlf": "auditor"}),
]
CATEGORIES = {
    "reimbursement": ["travel", "mileage", "meals", "accommodation", "course_fee"],
    "honorarium": ["driver_honorarium", "peer_support_honorarium"],
}
CLAIMANTS = [
    ("V-1001", "Kari Nordmann"),
    ("V-1002", "Ola Hansen"),
    ("V-1003", "Ingrid Bakke"),
    ("V-1004", "Lars Østby"),
    ("V-1005", "Åse Lie"),
    ("V-1006", "Nils Ødegård"),
]
RECORDS_PER_ORGANIZATION = 20
# The demo global admin's authenticator key (global admins must use two factors). It is
# public like the passwords; `manage.py demo_code` prints the code it gives now.
DEMO_TOTP_KEY = "564c2d64656d6f2d676c6f62616c2d61646d696e"


# Blindeforbundet's mappings: category -> (Xledger account, cost center), from the
# sandbox's chart (erp_sandbox/seed.json), and the payable account credited.
BF_MAPPINGS = {
    "travel": ("7130", "200"),
    "mileage": ("7100", "200"),
    "meals": ("7150", "200"),
    "accommodation": ("7140", "200"),
    "course_fee": ("6860", "500"),
    "driver_honorarium": ("5330", "300"),
    "peer_support_honorarium": ("5330", "200"),
}
BF_PAYABLE = "2910"
# At seed time the first records of Blindeforbundet are sent: those of REFUSED_CATEGORY
# among the first SENT_AT_SEED while the sandbox pretends its account does not exist
# (the `unknown_accounts` fault: an account closed in Xledger after it was mapped), so
# Xledger refuses them and they fail; the others are synced. The rest stay pending
# for the newcomer's Sync now. The fault is lifted again: Retry sends the failed ones.
SENT_AT_SEED = 12
SYNCED_AT_SEED = 6
REFUSED_CATEGORY = "course_fee"
# Blindeforbundet's API key, public like the passwords: `manage.py demo_feed` posts with it.
DEMO_API_KEY = "vlk_demo0b1f_public-demo-key-of-blindeforbundet"
SANDBOX_START_SECONDS = 30


class SandboxUnavailable(Exception):
    """No sandbox answers and none could be started; the reason, for the printout."""


def demo_totp_key_base32() -> str:
    """The key as an authenticator app takes it when typed in."""
    return base64.b32encode(bytes.fromhex(DEMO_TOTP_KEY)).decode()


class Command(BaseCommand):
    help = "Create the demo organizations, logins and approved records (idempotent)."

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo prints well-known passwords; it runs with DEBUG=true only."
            )
        organizations = {
            slug: self._organization(slug, name, connector)
            for slug, name, connector in ORGANIZATIONS
        }
        for username, password, first, last, roles in PEOPLE:
            self._person(username, password, first, last, roles, organizations)
        created = sum(self._records(org) for org in organizations.values())
        bf, hlf = organizations["blindeforbundet"], organizations["hlf"]
        if not ApiKey.objects.filter(organization=bf).exists():  # never replace an issued key
            ApiKey.adopt(bf, DEMO_API_KEY)
        set_up = self._with_the_erp(bf, hlf)
        self._print_logins(created, set_up)

    def _organization(self, slug: str, name: str, connector: str) -> Organization:
        organization, _ = Organization.objects.get_or_create(slug=slug, defaults={"name": name})
        integration, _ = Integration.objects.get_or_create(
            organization=organization, defaults={"connector": connector}
        )
        if not integration.has_credentials:  # never overwrite what an admin saved
            self._point_at_sandbox(integration)
        return organization

    def _point_at_sandbox(self, integration: Integration) -> None:
        """The demo tenants of the ERP sandbox (erp_sandbox/README.md)."""
        sandbox = settings.ERP_SANDBOX_URL.rstrip("/")
        if integration.connector == Integration.Connector.XLEDGER:
            integration.base_url = f"{sandbox}/graphql"
            integration.xledger_auth = Integration.XledgerAuth.TOKEN
            integration.cost_center_object = 1
            integration.cost_center_kind_db_id = 101
            integration.set_credentials({"api_token": "xl-demo-blindeforbundet-token"})
        else:
            integration.base_url = sandbox
            integration.authority_host = sandbox
            integration.tenant_id = "3f2b9c4e-5d6a-4b7c-8e9f-0a1b2c3d4e5f"
            integration.environment = "production"
            integration.company_id = "8a4c2e6f-1b3d-4a5c-9e7f-6d8b0a2c4e6f"
            integration.client_id = "5c1e7a92-0d3b-4f6e-9a8c-2b4d6f8a0c1e"
            integration.journal_code = "UTLEGG"
            integration.cost_center_dimension = "AVDELING"
            integration.set_credentials({"client_secret": "hlf-demo-secret"})
        integration.full_clean()
        integration.save()

    # --- what is done with the ERP sandbox: connection tests and the first sends ----------

    def _with_the_erp(self, bf: Organization, hlf: Organization) -> bool:
        """The steps that talk to the ERP, each once; True if any was taken now."""
        if not (
            self._untested(bf)
            or self._untested(hlf)
            or self._set_up_due(bf)
            or self._first_sends_due(bf)
        ):
            return False
        try:
            with self._sandbox() as sandbox:
                for organization in (bf, hlf):
                    if self._untested(organization):
                        self._test_connection(organization)
                if self._set_up_due(bf):
                    self._set_up_blindeforbundet(bf)
                if self._first_sends_due(bf):
                    self._first_sends(bf, sandbox)
        except SandboxUnavailable as reason:
            self.stdout.write(
                f"  The ERP sandbox is not available ({reason}); the connection tests and "
                "the first sends are left for the next seed_demo."
            )
            return False
        return True

    @staticmethod
    def _first_sends_due(organization: Organization) -> bool:
        return (
            Integration.objects.filter(organization=organization, enabled=True).exists()
            and not SyncRun.objects.filter(organization=organization).exists()
        )

    @staticmethod
    def _untested(organization: Organization) -> bool:
        return not organization.integration.connection_tests.exists()

    @staticmethod
    def _set_up_due(organization: Organization) -> bool:
        """Mapped and enabled once, after a passed test; an admin's own setup is left alone."""
        integration = organization.integration
        return (
            integration.connection_verified_at is not None
            and not integration.mappings.exists()
            and not integration.payable_account
            and not integration.enabled
            and not SyncRun.objects.filter(organization=organization).exists()
        )

    @staticmethod
    def _admin_of(organization: Organization):
        return (
            get_user_model()
            .objects.filter(memberships__organization=organization, memberships__role="admin")
            .first()
        )

    def _test_connection(self, organization: Organization) -> None:
        """Test Connection as its admin presses it, carried out here instead of a worker."""
        admin = self._admin_of(organization)
        test = ConnectionTest.objects.create(
            integration=organization.integration, requested_by=admin
        )
        record_action(
            admin,
            organization,
            TrailKind.CONNECTION_TESTED,
            connector=organization.integration.connector,
        )
        run_connection_test(test.pk)
        organization.integration.refresh_from_db()

    def _set_up_blindeforbundet(self, bf: Organization) -> None:
        integration = bf.integration
        admin = self._admin_of(bf)
        CategoryMapping.objects.bulk_create(
            CategoryMapping(
                integration=integration,
                category=category,
                account_code=account,
                cost_center_code=center,
            )
            for category, (account, center) in BF_MAPPINGS.items()
        )
        integration.payable_account = BF_PAYABLE
        # Records wait for Sync now (or the feed's records pile up): the demo's walk-through
        # sends them by hand. The integration page turns on sending after each approval.
        integration.sync_after_approval = False
        integration.save(update_fields=["payable_account", "sync_after_approval", "updated_at"])
        record_action(
            admin,
            bf,
            TrailKind.MAPPINGS_CHANGED,
            changes={
                **{c: {"from": [], "to": list(pair)} for c, pair in BF_MAPPINGS.items()},
                "payable account": {"from": "", "to": BF_PAYABLE},
            },
        )
        if reason := integration.set_enabled(True, admin):
            raise CommandError(f"Blindeforbundet's connector cannot be enabled: {reason}")

    def _first_sends(self, bf: Organization, sandbox: str) -> None:
        """Send the first records through the engine: some are synced, some refused."""
        first = list(bf.records.order_by("pk")[:SENT_AT_SEED])
        refused = [r.pk for r in first if r.category == REFUSED_CATEGORY]
        synced = [r.pk for r in first if r.category != REFUSED_CATEGORY][:SYNCED_AT_SEED]
        self._send(bf, synced)
        account = BF_MAPPINGS[REFUSED_CATEGORY][0]
        with self._sandbox_fault(sandbox, unknown_accounts=[account]):
            self._send(bf, refused)

    @staticmethod
    def _send(organization: Organization, record_ids: list[int]) -> None:
        if record_ids:
            # As the run the first approvals started, carried out here instead of a worker.
            run = start_run(organization, SyncRun.Trigger.APPROVAL, record_ids=record_ids)
            execute_run(run.pk, worker="seed_demo")

    @contextmanager
    def _sandbox_fault(self, sandbox: str, **faults: Any) -> Iterator[None]:
        session = self._session()
        before = session.get(f"{sandbox}/_sandbox/faults", timeout=10).json()
        session.post(f"{sandbox}/_sandbox/faults", json=faults, timeout=10).raise_for_status()
        try:
            yield
        finally:
            session.post(f"{sandbox}/_sandbox/faults", json=before, timeout=10)

    @staticmethod
    def _session() -> requests.Session:
        session = requests.Session()
        session.verify = settings.ERP_CA_BUNDLE or True
        session.trust_env = False  # local: no proxy, no REQUESTS_CA_BUNDLE
        return session

    def _answers(self, sandbox: str) -> bool:
        try:
            return self._session().get(f"{sandbox}/_sandbox/faults", timeout=2).ok
        except (requests.RequestException, OSError):  # OSError: no CA bundle written yet
            return False

    @contextmanager
    def _sandbox(self) -> Iterator[str]:
        """The sandbox at ERP_SANDBOX_URL: the one running, or one started for the while."""
        sandbox = settings.ERP_SANDBOX_URL.rstrip("/")
        if self._answers(sandbox):
            yield sandbox
            return
        address = urlsplit(sandbox)
        if address.hostname not in ("localhost", "127.0.0.1") or not address.port:
            raise SandboxUnavailable(f"nothing answers at {sandbox}")
        state_dir = settings.VAR_DIR / "sandbox"
        state_dir.mkdir(parents=True, exist_ok=True)
        with (state_dir / "seed_demo.log").open("ab") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "erp_sandbox",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(address.port),
                    "--state-dir",
                    str(state_dir),
                    "--persist",  # what is posted now is still there when honcho starts it
                ],
                cwd=settings.BASE_DIR,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            deadline = time.monotonic() + SANDBOX_START_SECONDS
            while not self._answers(sandbox):
                if process.poll() is not None:
                    raise SandboxUnavailable(f"it exited; see {state_dir / 'seed_demo.log'}")
                if time.monotonic() > deadline:
                    raise SandboxUnavailable(f"it did not start in {SANDBOX_START_SECONDS} s")
                time.sleep(0.2)
            yield sandbox
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    # --- people and records -------------------------------------------------------------

    def _person(self, username, password, first, last, roles, organizations) -> None:
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"first_name": first, "last_name": last}
        )
        if created:
            user.set_password(password)
            if roles is None:
                user.is_staff = user.is_superuser = True
            user.save()
        for slug, role in (roles or {}).items():
            Membership.objects.get_or_create(
                user=user, organization=organizations[slug], defaults={"role": role}
            )
        if roles is None and not TOTPDevice.objects.filter(user=user).exists():
            TOTPDevice.objects.create(
                user=user, name="Demo authenticator", key=DEMO_TOTP_KEY, confirmed=True
            )

    def _records(self, organization: Organization) -> int:
        """Send the demo records through the same path as the inbound API."""
        existing = set(organization.records.values_list("source_id", flat=True))
        rng = random.Random(organization.slug)  # the same records on every machine
        now = timezone.now()
        items = []
        for number in range(1, RECORDS_PER_ORGANIZATION + 1):
            kind = "honorarium" if number % 4 == 0 else "reimbursement"
            reference, name = rng.choice(CLAIMANTS)
            approved = now - timedelta(days=rng.randint(0, 20), minutes=rng.randint(0, 600))
            item = {
                "source_id": f"demo-{organization.slug}-{number:03d}",
                "kind": kind,
                "category": rng.choice(CATEGORIES[kind]),
                "amount": f"{rng.randint(150, 4500)}.{rng.choice(['00', '50', '75'])}",
                "currency": "NOK",
                "expense_date": (approved - timedelta(days=rng.randint(1, 10))).date().isoformat(),
                "approved_at": approved.isoformat(),
                "claimant": {"reference": reference, "name": name},
                "description": f"Demo {kind} {number} for {organization.name}",
            }
            if item["source_id"] not in existing:
                items.append(item)
        if not items:
            return 0
        records, errors = validate_batch(items)
        if errors:
            raise CommandError(f"Demo records are invalid: {errors}")
        return ingest(organization, records).created

    def _print_logins(self, created: int, set_up: bool) -> None:
        sandbox = settings.ERP_SANDBOX_URL.rstrip("/")
        lines = [
            "",
            "Voluntary Ledger demo: http://127.0.0.1:8000",
            f"  ({created} new demo records)" if created else "  (demo data already in place)",
        ]
        if set_up:
            lines.append("  (connection tests and first sends done against the ERP sandbox)")
        lines.append("  Logins (username / password):")
        for username, password, _first, _last, roles in PEOPLE:
            where = (
                "global admin"
                if roles is None
                else ", ".join(f"{role} of {slug}" for slug, role in roles.items())
            )
            lines.append(f"    {username:<13} / {password:<18} {where}")
        lines += [
            "  global-admin also needs a code from an authenticator app: type the key",
            f"    {demo_totp_key_base32()} into one,",
            "    or run `.venv/bin/python manage.py demo_code` for the code it gives now.",
            f"  The ERP sandbox's ledger: {sandbox}/_sandbox/ (its CA: var/sandbox/ca.pem)",
            "  `make run DEMO_FEED=1` also posts an approval every few seconds.",
        ]
        self.stdout.write("\n".join(lines) + "\n")
