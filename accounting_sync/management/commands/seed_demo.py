"""Demo data for `make run`: two organizations, four people, a few dozen records.

Safe to run at every start: what exists is left as it is. Refuses to run with
DEBUG off, because the demo passwords are printed and well known.
"""

from __future__ import annotations

import base64
import random
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounting_sync.inbound import ingest, validate_batch
from integrations.models import Integration
from organizations.models import Membership, Organization

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
        self._print_logins(created)

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

    def _print_logins(self, created: int) -> None:
        lines = [
            "",
            "Voluntary Ledger demo: http://127.0.0.1:8000",
            f"  ({created} new demo records)" if created else "  (demo data already in place)",
            "  Logins (username / password):",
        ]
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
        ]
        self.stdout.write("\n".join(lines) + "\n")
