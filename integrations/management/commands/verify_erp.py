"""`python manage.py verify_erp <organization-slug> [--post-test] [--yes] [--json]`

Checks an organization's real ERP tenant, with its stored credentials, for the facts no
public source settles and the setup the connector needs (issue 10, item 11; the checks
are in integrations/verify.py, the operator's guide in docs/verify-erp.md).

Exit codes: 0 nothing refuted, 1 something refuted, 2 bad usage (unknown organization,
no integration, no credentials, a post test that is not confirmed).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from integrations import verify
from integrations.crypto import CredentialsUnreadable
from integrations.models import Integration
from organizations.models import Organization

USAGE_ERROR = 2


class Command(BaseCommand):
    help = (
        "Check the organization's ERP tenant for the facts the connector relies on. "
        "Read-only unless --post-test is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization", help="The organization's slug.")
        parser.add_argument(
            "--post-test",
            action="store_true",
            help=(
                "Also post one small balanced test entry. Business Central: one journal "
                "line, deleted again afterwards. Xledger: one voucher that the API cannot "
                "delete (asks for confirmation)."
            ),
        )
        parser.add_argument(
            "--yes",
            action="store_true",
            help="Confirm the Xledger post test without being asked.",
        )
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print the checks as JSON."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        integration = _integration(options["organization"])
        now = timezone.now()
        if options["post_test"]:
            _require_post_test_setup(integration)
            if integration.connector == Integration.Connector.XLEDGER:
                self._confirm_xledger_post(
                    integration, options["yes"], verify.verification_reference(now)
                )
        checks = verify.verify(integration, post_test=options["post_test"], now=now)
        if options["as_json"]:
            self.stdout.write(json.dumps([c.as_json() for c in checks], indent=2))
        else:
            self.stdout.write(
                f"{integration.get_connector_display()} for {integration.organization}:"
            )
            for check in checks:
                self.stdout.write(check.line())
        code = verify.exit_code(checks)
        if code:
            sys.exit(code)  # a refuted fact fails the command (CI, scripts)

    def _confirm_xledger_post(self, integration: Integration, yes: bool, reference: str) -> None:
        """Say what will stay in the ledger, then ask: "type YES", or --yes; never silently."""
        mapping = verify.first_mapping(integration)
        assert mapping is not None  # _require_post_test_setup checked it
        self.stderr.write(
            verify.XLEDGER_WARNING.format(
                amount=verify.TEST_AMOUNT,
                currency=verify.TEST_CURRENCY,
                expense=mapping.account_code,
                payable=integration.payable_account,
                reference=reference,
            )
        )
        if yes:
            return
        if not sys.stdin or not sys.stdin.isatty():
            raise CommandError(
                "Not posting to Xledger: nobody can confirm here (no terminal). Nothing was "
                "sent. Run it in a terminal and type YES, or pass --yes.",
                returncode=USAGE_ERROR,
            )
        self.stderr.write("Type YES to post it: ", ending="")
        self.stderr.flush()
        if sys.stdin.readline().strip() != "YES":
            raise CommandError("Not confirmed: nothing was sent.", returncode=USAGE_ERROR)


def _integration(slug: str) -> Integration:
    """The organization's integration, ready to connect; bad usage (exit 2) otherwise."""
    organization = Organization.objects.filter(slug=slug).first()
    if organization is None:
        raise CommandError(f"No organization with the slug {slug!r}.", returncode=USAGE_ERROR)
    integration = Integration.objects.filter(organization=organization).first()
    if integration is None:
        raise CommandError(
            f"{organization} has no ERP integration. Set one up on its integration page.",
            returncode=USAGE_ERROR,
        )
    try:
        missing = integration.missing_secrets()
    except CredentialsUnreadable as error:
        raise CommandError(
            f"The stored credentials of {organization} cannot be read: {error}",
            returncode=USAGE_ERROR,
        ) from None
    if missing:
        raise CommandError(
            f"{organization} has no saved credentials ({', '.join(missing)} missing). "
            "Save them on the integration page first.",
            returncode=USAGE_ERROR,
        )
    if not integration.base_url:
        raise CommandError(
            f"{organization}'s integration has no ERP address.", returncode=USAGE_ERROR
        )
    return integration


def _require_post_test_setup(integration: Integration) -> None:
    if verify.first_mapping(integration) is None:
        raise CommandError(
            "--post-test needs a payable account and at least one category mapping: the "
            "test entry uses the first mapped account and cost center against the payable "
            "account.",
            returncode=USAGE_ERROR,
        )
