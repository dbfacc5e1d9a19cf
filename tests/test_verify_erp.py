"""Issue 10, item 11: `manage.py verify_erp` against the ERP sandbox over HTTPS.

The command runs each check through the organization's own connector (stored, encrypted
credentials; the sandbox's CA as ERP_CA_BUNDLE). The sandbox's assumption switches
(erp_sandbox/faults.py, ASSUMPTIONS) stand in for the answers a real tenant
may give: flipping one must flip the matching line and the exit code.
"""

from __future__ import annotations

import io
import json
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from erp_sandbox.client import SandboxProcess
from integrations.clients import business_central as bc
from integrations.clients import xledger as xl
from integrations.models import Integration
from integrations.verify import INFORMATIONAL
from organizations.models import Organization
from tests.factories import (
    BC,
    XLEDGER_ENTITY,
    XLEDGER_TOKEN,
    configure,
    make_records,
    sync,
)

XL_CLIENT_ID = "bf-xledger-client"
XL_CLIENT_SECRET = "bf-xledger-secret"


@pytest.fixture(autouse=True)
def _trust_the_sandbox(erp_sandbox: SandboxProcess, settings) -> None:
    settings.ERP_CA_BUNDLE = str(erp_sandbox.ca_bundle)
    xl._tokens.clear()
    bc._apps.clear()


def verify_erp(*args: str, stdin: Any = None, monkeypatch=None) -> tuple[int, str, str]:
    """Run the command; its exit code, stdout and stderr (as `manage.py` would give them)."""
    out, err = io.StringIO(), io.StringIO()
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", stdin)
    try:
        call_command("verify_erp", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit_:
        assert isinstance(exit_.code, int)  # sys.exit(code) with the command's number
        code = int(exit_.code)
    except CommandError as error:
        code = error.returncode
        err.write(f"CommandError: {error}")
    return code, out.getvalue(), err.getvalue()


def line(output: str, name: str) -> str:
    """The one line a check printed: '<name>: <verdict> — <evidence>'."""
    found = [text for text in output.splitlines() if text.startswith(f"{name}: ")]
    assert len(found) == 1, f"{name!r} not printed once in:\n{output}"
    return found[0]


def verdict(output: str, name: str) -> str:
    return line(output, name)[len(name) + 2 :].split(" — ")[0]


def assume(sandbox: SandboxProcess, **assumptions: Any) -> None:
    sandbox.set_faults(assumptions=assumptions)


class FakeTerminal(io.StringIO):
    """A stdin that is a TTY: someone sits at the terminal and types."""

    def isatty(self) -> bool:
        return True


XLEDGER_CHECKS = (
    "token works (accounts readable)",
    "pageInfo endCursor",
    "Int64String for objectKindDbId",
    "glImportItems extIdentifier_in",
    "transactions extIdentifier_in",
    "glImportItemErrors transactionDbId errorLevel message",
    # What reconciliation reads (issue 15; tests/test_verify_erp_entries.py).
    "transactions fields read by entries",
    "transactions postedDate_gte postedDate_lte",
    "glImportItems fields read by entries",
    "glImportItems postedDate_gte postedDate_lte",
)
BC_CHECKS = (
    "token issued",
    "application enabled in Business Central (API answers)",
    "company exists",
    "journal listed by journals (batch of the default general journal template)",
    "accounts carry accountType",
    "mapped accounts take journal lines",
    "cost-center dimension exists",
    "externalDocumentNumber filter with a lower-case literal",
    "journal number series allows manual numbers",
    # What reconciliation reads (issue 15; tests/test_verify_erp_entries.py).
    "journalLines startswith(documentNumber) and postingDate ge/le",
    "generalLedgerEntries startswith(documentNumber) and postingDate ge/le",
    "$expand=dimensionSetLines on journalLines and generalLedgerEntries",
)
FILTER_CASE = "externalDocumentNumber filter with a lower-case literal"


def xledger_items(sandbox: SandboxProcess) -> list[dict[str, Any]]:
    return sandbox.ledger()["xledger"].get(XLEDGER_ENTITY, [])


def all_xledger_items(sandbox: SandboxProcess) -> list[dict[str, Any]]:
    """GL import items and posted transactions alike, wherever the sandbox keeps them."""
    found: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "extIdentifier" in value and "amount" in value:
                found.append(value)
            else:
                for inner in value.values():
                    walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(sandbox.ledger()["xledger"])
    return found


def exit_code_of(output: str) -> int:
    """What the exit code must be for the lines printed: 1 if any fact the connectors rely
    on is refuted."""
    return (
        1
        if any(
            ": refuted — " in text and text.split(": refuted — ")[0] not in INFORMATIONAL
            for text in output.splitlines()
        )
        else 0
    )


def bc_company(sandbox: SandboxProcess) -> dict[str, Any]:
    return sandbox.ledger()["business_central"].get(BC["company"], {})


# --- Xledger -----------------------------------------------------------------------------------


def test_issue10_item11_xledger_prints_a_line_per_check_as_the_sandbox_answers(org, erp_sandbox):
    configure(org, erp_sandbox, "xledger")

    code, out, _err = verify_erp(org.slug)

    for name in XLEDGER_CHECKS:
        line(out, name)
    assert verdict(out, "token works (accounts readable)") == "confirmed"
    assert verdict(out, "Int64String for objectKindDbId") == "confirmed"
    assert verdict(out, "glImportItems extIdentifier_in") == "confirmed"
    assert verdict(out, "transactions extIdentifier_in") == "confirmed"
    assert verdict(out, "glImportItemErrors transactionDbId errorLevel message") == "confirmed"
    # The sandbox's PageInfo has only what public clients select: hasNextPage.
    assert verdict(out, "pageInfo endCursor") == "refuted"
    assert "introspection: PageInfo has hasNextPage" in line(out, "pageInfo endCursor")
    assert code == 0  # the connector never asks for endCursor: nothing to fix
    assert xledger_items(erp_sandbox) == [], "read-only checks wrote to the ledger"


def test_issue10_item11_xledger_without_the_ext_identifier_filter_both_filters_are_refuted(
    org, erp_sandbox
):
    configure(org, erp_sandbox, "xledger")
    assume(erp_sandbox, xledger_ext_identifier_filter=False)

    code, out, _err = verify_erp(org.slug)

    assert verdict(out, "glImportItems extIdentifier_in") == "refuted"
    assert verdict(out, "transactions extIdentifier_in") == "refuted"
    # The evidence is Xledger's own words, and what the schema offers instead.
    evidence = line(out, "glImportItems extIdentifier_in")
    assert "extIdentifier_in" in evidence
    assert "introspection: glImportItems(" in evidence
    assert verdict(out, "token works (accounts readable)") == "confirmed"
    assert code == 1


@pytest.mark.parametrize("revoked_token", ["bad_format", "unauthenticated_401"])
def test_issue10_item11_xledger_a_refused_token_is_refuted_and_nothing_else_is_asked(
    org, erp_sandbox, revoked_token
):
    integration = configure(org, erp_sandbox, "xledger")
    integration.set_credentials({"api_token": "not-the-right-token"})
    integration.save()
    # However Xledger answers an unknown token (a 200 with an error, or a 401).
    assume(erp_sandbox, xledger_revoked_token=revoked_token)

    code, out, _err = verify_erp(org.slug)

    assert verdict(out, "token works (accounts readable)") == "refuted"
    assert "The API token was refused" in line(out, "token works (accounts readable)")
    for name in XLEDGER_CHECKS[1:]:
        assert verdict(out, name) == "unknown"
        assert "not checked" in line(out, name)
    assert erp_sandbox.requests()["xledger"]["ok"] == 0
    assert code == 1


def test_issue10_item11_xledger_post_test_without_yes_and_without_a_terminal_posts_nothing(
    org, erp_sandbox, monkeypatch
):
    configure(org, erp_sandbox, "xledger")

    # Even a "YES" on a stdin that is not a terminal (a pipe, CI) does not count.
    code, out, err = verify_erp(
        org.slug, "--post-test", stdin=io.StringIO("YES\n"), monkeypatch=monkeypatch
    )

    assert code == 2
    assert "cannot delete it" in err
    assert "Not posting to Xledger" in err and "--yes" in err
    assert out == ""
    assert xledger_items(erp_sandbox) == []
    assert sum(erp_sandbox.requests()["xledger"].values()) == 0, "nothing may even be read"


def test_issue10_item11_xledger_post_test_not_confirmed_at_the_terminal_posts_nothing(
    org, erp_sandbox, monkeypatch
):
    configure(org, erp_sandbox, "xledger")

    code, _out, err = verify_erp(
        org.slug, "--post-test", stdin=FakeTerminal("yes please\n"), monkeypatch=monkeypatch
    )

    assert code == 2
    assert "Type YES" in err and "Not confirmed" in err
    assert xledger_items(erp_sandbox) == []


@pytest.mark.parametrize(
    ("confirm", "import_job", "settled"),
    [("--yes", "deferred", "unknown"), ("terminal", "immediate", "confirmed")],
)
def test_issue10_item11_xledger_post_test_posts_one_voucher_and_reports_lookup_and_settle(
    org, erp_sandbox, monkeypatch, confirm, import_job, settled
):
    configure(org, erp_sandbox, "xledger")
    assume(erp_sandbox, xledger_import=import_job)
    if confirm == "--yes":
        code, out, err = verify_erp(org.slug, "--post-test", "--yes")
    else:
        code, out, err = verify_erp(
            org.slug, "--post-test", stdin=FakeTerminal("YES\n"), monkeypatch=monkeypatch
        )

    reference = line(out, "post-test lookup finds the voucher").split()[-3]
    assert reference.startswith("VH-VERIFY-")
    assert f"reference {reference}. Xledger's API cannot delete it" in err  # said first
    assert verdict(out, "post-test voucher posted") == "confirmed"
    assert verdict(out, "post-test lookup finds the voucher") == "confirmed"
    # Deferred: the import job has not run yet; immediate: it posted the voucher.
    assert verdict(out, "post-test settle") == settled
    assert "settle answered" in line(out, "post-test settle")
    items = [i for i in all_xledger_items(erp_sandbox) if i.get("extIdentifier") == reference]
    assert len(items) == 2, "one balanced voucher: two lines"
    assert sum(Decimal(str(item["amount"])) for item in items) == 0
    assert code == exit_code_of(out)


# --- Business Central -------------------------------------------------------------------------


def test_issue10_item11_bc_prints_a_line_per_check_as_the_sandbox_answers(other_org, erp_sandbox):
    configure(other_org, erp_sandbox, "business_central")

    code, out, _err = verify_erp(other_org.slug)

    for name in BC_CHECKS:
        line(out, name)
    for name in BC_CHECKS[:7]:
        assert verdict(out, name) == "confirmed", line(out, name)
    # Nothing in the journal yet, and read-only: the filter-case fact stays open.
    assert verdict(out, FILTER_CASE) == "unknown"
    assert "--post-test" in line(out, FILTER_CASE)
    manual = line(out, "journal number series allows manual numbers")
    assert verdict(out, "journal number series allows manual numbers") == "unknown"
    assert '"Manual Nos."' in manual and "UTLEGG" in manual
    assert code == 0
    assert bc_company(erp_sandbox).get("journalLines", []) == []


def test_issue10_item11_bc_app_not_enabled_in_business_central_is_refuted(other_org, erp_sandbox):
    configure(other_org, erp_sandbox, "business_central")
    assume(erp_sandbox, bc_app_registered=False)

    code, out, _err = verify_erp(other_org.slug)

    assert verdict(out, "token issued") == "confirmed"
    name = "application enabled in Business Central (API answers)"
    assert verdict(out, name) == "refuted"
    assert "HTTP 401" in line(out, name) or "HTTP 403" in line(out, name)
    assert "Microsoft Entra Applications" in line(out, name)
    assert verdict(out, "company exists") == "unknown"
    assert code == 1


def test_issue10_item11_bc_wrong_secret_is_refuted_at_the_token(other_org, erp_sandbox):
    integration = configure(other_org, erp_sandbox, "business_central")
    integration.set_credentials({"client_secret": "wrong-secret"})
    integration.save()

    code, out, _err = verify_erp(other_org.slug)

    assert verdict(out, "token issued") == "refuted"
    assert "client secret is wrong" in line(out, "token issued")
    assert "wrong-secret" not in out
    assert code == 1


def test_issue10_item11_bc_journal_and_dimension_that_do_not_exist_are_refuted(
    other_org, erp_sandbox
):
    configure(
        other_org,
        erp_sandbox,
        "business_central",
        journal_code="NOSUCH",
        cost_center_dimension="KOSTSTED",
    )

    code, out, _err = verify_erp(other_org.slug)

    journal = "journal listed by journals (batch of the default general journal template)"
    assert verdict(out, journal) == "refuted"
    assert "UTLEGG" in line(out, journal)  # what is listed instead
    assert verdict(out, "cost-center dimension exists") == "refuted"
    assert code == 1


@pytest.mark.parametrize(
    ("filter_case", "expected", "exit_code"),
    # Either answer leaves the connector safe (it looks up upper-cased): never a failure.
    [("exact", "refuted", 0), ("insensitive", "confirmed", 0)],
)
def test_issue10_item11_bc_post_test_settles_the_filter_case_and_leaves_no_line(
    other_org, erp_sandbox, filter_case, expected, exit_code
):
    configure(other_org, erp_sandbox, "business_central")
    assume(erp_sandbox, bc_filter_case=filter_case)

    code, out, _err = verify_erp(other_org.slug, "--post-test")

    assert verdict(out, "post-test journal line created") == "confirmed"
    assert verdict(out, "post-test dimension set line added") == "confirmed"
    assert verdict(out, "post-test upper-case filter finds the line") == "confirmed"
    assert verdict(out, FILTER_CASE) == expected
    assert verdict(out, "post-test line deleted") == "confirmed"
    assert code == exit_code
    company = bc_company(erp_sandbox)
    assert company.get("journalLines", []) == []
    assert company.get("generalLedgerEntries", []) == []
    assert not any(company.get("dimensionSetLines", {}).values())


@pytest.mark.parametrize(
    ("filter_case", "expected"), [("exact", "refuted"), ("insensitive", "confirmed")]
)
def test_issue10_item11_bc_filter_case_is_settled_read_only_by_an_existing_line(
    other_org, erp_sandbox, filter_case, expected
):
    configure(other_org, erp_sandbox, "business_central")
    assume(erp_sandbox, bc_filter_case=filter_case)

    make_records(other_org, 1)
    sync(other_org)
    lines_before = bc_company(erp_sandbox)["journalLines"]
    assert len(lines_before) == 1

    code, out, _err = verify_erp(other_org.slug)

    assert verdict(out, FILTER_CASE) == expected
    assert lines_before[0]["externalDocumentNumber"] in line(out, FILTER_CASE)
    assert code == 0  # recorded, not a failure: the connector looks up upper-cased
    assert bc_company(erp_sandbox)["journalLines"] == lines_before  # read-only


# --- both -----------------------------------------------------------------------------------


def test_issue10_item11_json_lists_the_same_checks(other_org, erp_sandbox):
    configure(other_org, erp_sandbox, "business_central")

    code, out, _err = verify_erp(other_org.slug, "--json")

    checks = json.loads(out)
    assert [c["check"] for c in checks] == list(BC_CHECKS)
    assert {c["verdict"] for c in checks} <= {"confirmed", "refuted", "unknown"}
    assert all(c["erp"] == "Dynamics 365 Business Central" and c["evidence"] for c in checks)
    assert code == 0


def test_issue10_item11_no_secret_appears_in_the_output(org, other_org, erp_sandbox):
    integration = configure(org, erp_sandbox, "xledger")
    configure(other_org, erp_sandbox, "business_central")
    outputs = []
    for args in (
        (other_org.slug, "--post-test"),
        (other_org.slug, "--post-test", "--json"),
        (org.slug, "--post-test", "--yes"),
    ):
        outputs.append(verify_erp(*args))
    # Xledger with OAuth2: the client secret and a bearer token are in play too.
    integration.xledger_auth = Integration.XledgerAuth.OAUTH2
    integration.token_url = f"{erp_sandbox.url}/xledger/oauth2/token"
    integration.client_id = XL_CLIENT_ID
    integration.oauth_scope = "graphql"
    integration.set_credentials({"client_secret": XL_CLIENT_SECRET})
    integration.save()
    outputs.append(verify_erp(org.slug, "--json"))

    access_tokens = [t.access_token for t in xl._tokens.values()]
    for app in bc._apps.values():
        cache = app.token_cache
        access_tokens += [
            item["secret"] for item in cache.search(type(cache).CredentialType.ACCESS_TOKEN)
        ]
    assert len(access_tokens) >= 2, "both ERPs issued an access token"
    secrets = [XLEDGER_TOKEN, XL_CLIENT_SECRET, BC["secret"], *access_tokens]
    for code, out, err in outputs:
        assert code in (0, 1)
        for secret in secrets:
            assert secret not in out and secret not in err


def test_issue10_item11_bad_usage_exits_2_with_a_clear_message(db, erp_sandbox):
    code, _out, err = verify_erp("no-such-org")
    assert code == 2 and "No organization with the slug 'no-such-org'" in err

    bare = Organization.objects.create(name="Bare", slug="bare")
    code, _out, err = verify_erp(bare.slug)
    assert code == 2 and "has no ERP integration" in err

    Integration.objects.create(organization=bare, connector="business_central")
    code, _out, err = verify_erp(bare.slug)
    assert code == 2 and "no saved credentials" in err and "client_secret" in err


def test_issue10_item11_post_test_needs_a_mapping_and_a_payable_account(other_org, erp_sandbox):
    configure(other_org, erp_sandbox, "business_central", payable_account="")

    code, _out, err = verify_erp(other_org.slug, "--post-test")

    assert code == 2 and "payable account" in err
    assert bc_company(erp_sandbox).get("journalLines", []) == []


def test_issue10_item11_bc_post_test_refused_line_is_reported_and_nothing_is_left(
    other_org, erp_sandbox
):
    configure(other_org, erp_sandbox, "business_central")
    # The first mapped account (5330, honorarium) is not in the chart as far as BC says.
    erp_sandbox.set_faults(unknown_accounts=["5330"])

    code, out, _err = verify_erp(other_org.slug, "--post-test")

    assert verdict(out, "mapped accounts take journal lines") == "refuted"
    assert "5330 does not exist" in line(out, "mapped accounts take journal lines")
    assert verdict(out, "post-test journal line created") == "refuted"
    assert "5330" in line(out, "post-test journal line created")  # Business Central's words
    assert verdict(out, FILTER_CASE) == "unknown"
    assert "post-test line deleted" not in out  # nothing was made, nothing to delete
    assert code == 1
    assert bc_company(erp_sandbox).get("journalLines", []) == []
