"""The ERP connectors against the ERP sandbox, over HTTPS, with the real msal and
requests-oauthlib code paths: what arrives in the ledger, and how every injected
fault is classified (docs/architecture.md, "Exactly once").
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import certifi
import msal
import pytest

from integrations.clients import business_central as bc
from integrations.clients import xledger as xl
from integrations.clients.base import (
    ConnectorError,
    Found,
    Outcome,
    Posting,
    PostResult,
    Settled,
    Settlement,
)

SEED = json.loads((Path(__file__).resolve().parent.parent / "erp_sandbox/seed.json").read_text())

XL_ENTITY = "Blindeforbundet"
XL_TOKEN = "xl-demo-blindeforbundet-token"
XL_CLIENT_ID = "bf-xledger-client"
XL_SECRET = "bf-xledger-secret"
XL_COST_CENTER_KIND = 101

BC_TENANT = "3f2b9c4e-5d6a-4b7c-8e9f-0a1b2c3d4e5f"
BC_CLIENT_ID = "5c1e7a92-0d3b-4f6e-9a8c-2b4d6f8a0c1e"
BC_SECRET = "hlf-demo-secret"
BC_COMPANY_ID = "8a4c2e6f-1b3d-4a5c-9e7f-6d8b0a2c4e6f"
BC_COMPANY = "HLF"


def xl_seed() -> dict:
    return next(e for e in SEED["xledger"]["entities"] if e["name"] == XL_ENTITY)


def bc_seed() -> dict:
    tenant = next(t for t in SEED["business_central"]["tenants"] if t["id"] == BC_TENANT)
    companies = tenant["environments"]["production"]["companies"]
    return next(c for c in companies if c["id"] == BC_COMPANY_ID)


@pytest.fixture(autouse=True)
def sandbox(erp_sandbox):
    """A sandbox back at its seed, and no token or MSAL app left from another test."""
    erp_sandbox.reset()
    xl._tokens.clear()
    bc._apps.clear()
    yield erp_sandbox
    erp_sandbox.reset()
    xl._tokens.clear()
    bc._apps.clear()


def xl_connector(sandbox, *, auth: str = "token", **changes) -> xl.XledgerConnector:
    fields: dict[str, Any] = {
        "graphql_url": f"{sandbox.url}/graphql",
        "auth": auth,
        "api_token": XL_TOKEN if auth == "token" else "",
        "token_url": f"{sandbox.url}/xledger/oauth2/token" if auth == "oauth2" else "",
        "client_id": XL_CLIENT_ID if auth == "oauth2" else "",
        "client_secret": XL_SECRET if auth == "oauth2" else "",
        "scope": "graphql" if auth == "oauth2" else "",
        "cost_center_object": 2,
        "cost_center_kind_db_id": XL_COST_CENTER_KIND,
        "ca_bundle": str(sandbox.ca_bundle),
        "connect_timeout": 5,
        "read_timeout": 20,
    }
    fields.update(changes)
    return xl.XledgerConnector(xl.XledgerConfig(**fields))


def bc_connector(sandbox, **changes) -> bc.BusinessCentralConnector:
    fields = {
        "api_base_url": sandbox.url,
        "authority_host": sandbox.url,
        "tenant_id": BC_TENANT,
        "environment": "production",
        "company_id": BC_COMPANY_ID,
        "client_id": BC_CLIENT_ID,
        "client_secret": BC_SECRET,
        "journal_code": "UTLEGG",
        "cost_center_dimension": "AVDELING",
        "ca_bundle": str(sandbox.ca_bundle),
        "connect_timeout": 5,
        "read_timeout": 20,
    }
    fields.update(changes)
    return bc.BusinessCentralConnector(bc.BusinessCentralConfig(**fields))


def xl_posting(n: int, **changes) -> Posting:
    fields: dict[str, Any] = {
        "reference": f"VH-bf-{n}",
        "posting_date": date(2025, 3, 14),
        "amount": Decimal("450.00") + n,
        "currency": "NOK",
        "expense_account": "7130",
        "cost_center": "300",
        "payable_account": "2910",
        "claimant_reference": f"V-{n:04d}",
        "claimant_name": "Kari Nordmann",
        "description": f"Reise til likepersonsmøte nr. {n}",
        "number": 1000 + n,
    }
    fields.update(changes)
    return Posting(**fields)


def bc_posting(n: int, **changes) -> Posting:
    fields: dict[str, Any] = {
        "reference": f"VH-hlf-{n}",
        "posting_date": date(2025, 3, 14),
        "amount": Decimal("0.10") + Decimal("0.20") + n,
        "currency": "NOK",
        "expense_account": "7130",
        "cost_center": "0300",
        "payable_account": "2910",
        "claimant_reference": f"V-{n:04d}",
        "claimant_name": "Ola Nordmann",
        "description": f"Kjøring til kurs nr. {n}",
    }
    fields.update(changes)
    return Posting(**fields)


def xl_items(sandbox) -> list[dict]:
    return sandbox.ledger()["xledger"][XL_ENTITY]


def bc_ledger(sandbox) -> dict:
    return sandbox.ledger()["business_central"][BC_COMPANY]


def outcomes(results: list[PostResult]) -> list[Outcome]:
    return [r.outcome for r in results]


def handled(sandbox, erp: str) -> int:
    return sum(sandbox.requests()[erp].values())


def wait_until_handled(sandbox, erp: str, count: int, timeout: float = 15) -> None:
    """Wait for a request the client gave up on: the sandbox still carries it out after
    its latency, and must not write it into the next test's ledger."""
    deadline = time.monotonic() + timeout
    while handled(sandbox, erp) < count:
        assert time.monotonic() < deadline, "the sandbox never finished the slow request"
        time.sleep(0.1)


# =============================================================================================
# Xledger
# =============================================================================================


class TestXledgerConnection:
    def test_test_connection_with_the_api_token_reads_accounts_and_cost_centers(self, sandbox):
        report = xl_connector(sandbox).test_connection()
        seed = xl_seed()
        assert {a.code for a in report.accounts} == {a["code"] for a in seed["accounts"]}
        expected = {v["code"] for v in seed["objectValues"] if v["objectKindDbId"] == 101}
        assert {c.code for c in report.cost_centers} == expected
        assert {d.code for d in report.dimensions} == {"101", "102"}
        assert "object kind 101 Avdeling" in report.detail

    def test_test_connection_with_oauth2_client_credentials_works_too(self, sandbox):
        report = xl_connector(sandbox, auth="oauth2").test_connection()
        assert len(report.accounts) == len(xl_seed()["accounts"])
        assert report.cost_centers

    def test_without_a_cost_center_kind_the_kinds_are_offered_instead(self, sandbox):
        report = xl_connector(sandbox, cost_center_kind_db_id=None).test_connection()
        assert report.cost_centers == []
        assert [(d.code, d.name) for d in report.dimensions] == [
            ("101", "Avdeling"),
            ("102", "Prosjekt"),
        ]

    def test_small_pages_deliver_every_account_exactly_once(self, sandbox):
        accounts = xl_connector(sandbox, page_size=10).list_accounts()
        codes = [a.code for a in accounts]
        assert len(codes) == len(set(codes)) == len(xl_seed()["accounts"])
        assert set(codes) == {a["code"] for a in xl_seed()["accounts"]}
        assert sandbox.requests()["xledger"]["ok"] >= len(codes) // 10

    def test_small_pages_deliver_every_cost_center_exactly_once(self, sandbox):
        centers = xl_connector(sandbox, page_size=5).list_cost_centers()
        codes = [c.code for c in centers]
        assert len(codes) == len(set(codes))
        assert set(codes) == {
            v["code"] for v in xl_seed()["objectValues"] if v["objectKindDbId"] == 101
        }


class TestXledgerPosting:
    def test_a_batch_lands_in_the_ledger_as_balanced_vouchers(self, sandbox):
        batch = [xl_posting(1), xl_posting(2, cost_center="200"), xl_posting(3)]
        results = xl_connector(sandbox).post(batch)

        assert outcomes(results) == [Outcome.SUCCEEDED] * 3
        items = xl_items(sandbox)
        assert len(items) == 6
        by_reference: dict[str, list[dict]] = {}
        for item in items:
            by_reference.setdefault(item["extIdentifier"], []).append(item)
        assert set(by_reference) == {p.reference for p in batch}
        for p in batch:
            debit, credit = sorted(by_reference[p.reference], key=lambda i: -Decimal(i["amount"]))
            assert Decimal(debit["amount"]) + Decimal(credit["amount"]) == 0
            assert Decimal(debit["amount"]) == p.amount
            assert (debit["account"], credit["account"]) == ("7130", "2910")
            assert debit["glObject2"] == p.cost_center
            assert credit["subledger"] is None  # only with the claimant-subledger setting
            assert debit["invoiceNumber"] == credit["invoiceNumber"] == p.reference
            assert debit["postedDate"] == "2025-03-14"
            assert debit["transactionSource"] == "GL"
        assert {r.erp_id for r in results} <= {str(i["dbId"]) for i in items}

    def test_the_same_batch_posts_through_oauth2_with_a_bearer_token(self, sandbox):
        results = xl_connector(sandbox, auth="oauth2").post([xl_posting(1)])
        assert outcomes(results) == [Outcome.SUCCEEDED]
        assert len(xl_items(sandbox)) == 2

    def test_a_token_forgotten_by_the_server_is_fetched_again(self, sandbox):
        connector = xl_connector(sandbox, auth="oauth2")
        assert outcomes(connector.post([xl_posting(1)])) == [Outcome.SUCCEEDED]
        sandbox.reset()  # the sandbox forgets issued tokens; ours is still cached
        assert outcomes(connector.post([xl_posting(2)])) == [Outcome.SUCCEEDED]

    def test_lookup_finds_a_posted_reference_and_not_an_unknown_one(self, sandbox):
        sandbox.set_faults(assumptions={"xledger_import": "deferred"})
        connector = xl_connector(sandbox)
        [result] = connector.post([xl_posting(1)])
        found = connector.lookup(["VH-bf-1", "VH-bf-404"])
        assert found == {"VH-bf-1": Found(result.erp_id)}

    def test_a_full_batch_of_250_postings_is_one_call(self, sandbox):
        batch = [xl_posting(n) for n in range(xl.XledgerConnector.batch_size)]
        results = xl_connector(sandbox).post(batch)
        assert set(outcomes(results)) == {Outcome.SUCCEEDED}
        assert len(xl_items(sandbox)) == 500
        assert sandbox.requests()["xledger"]["ok"] == 1


class TestXledgerFaults:
    def test_a_service_error_is_transient(self, sandbox):
        sandbox.set_faults(error_rate=1.0)
        results = xl_connector(sandbox).post([xl_posting(1), xl_posting(2)])
        assert outcomes(results) == [Outcome.TRANSIENT] * 2
        assert results[0].response_status == 503
        assert xl_items(sandbox) == []

    def test_the_burst_limit_is_rate_limited_with_a_default_wait_of_5_seconds(self, sandbox):
        sandbox.set_faults(rate_limit_rate=1.0)
        results = xl_connector(sandbox).post([xl_posting(1)])
        assert (results[0].outcome, results[0].retry_after) == (Outcome.RATE_LIMITED, 5.0)

    def test_a_connection_dropped_after_commit_is_uncertain_and_lookup_finds_it(self, sandbox):
        connector = xl_connector(sandbox)
        sandbox.set_faults(drop_after_commit_rate=1.0)
        results = connector.post([xl_posting(1), xl_posting(2)])
        assert outcomes(results) == [Outcome.UNCERTAIN] * 2
        assert sandbox.requests()["xledger"]["dropped"] == 1

        sandbox.set_faults()
        found = connector.lookup(["VH-bf-1", "VH-bf-2"])
        assert set(found) == {"VH-bf-1", "VH-bf-2"}  # in the ledger: must not be sent again
        assert len(xl_items(sandbox)) == 4

    def test_refused_postings_are_permanent_and_the_others_are_posted(self, sandbox):
        sandbox.set_faults(permanent_error_rate=0.5)
        batch = [xl_posting(n) for n in range(10)]
        results = xl_connector(sandbox).post(batch)

        refused = [r for r in results if r.outcome is Outcome.PERMANENT]
        posted = [r for r in results if r.outcome is Outcome.SUCCEEDED]
        assert refused and posted and len(refused) + len(posted) == 10
        assert all("Period is closed for posting date 2025-03-14" in r.message for r in refused)
        assert {i["extIdentifier"] for i in xl_items(sandbox)} == {r.reference for r in posted}

    def test_an_unknown_account_is_permanent_with_the_erps_message(self, sandbox):
        sandbox.set_faults(unknown_accounts=["7150"])
        batch = [xl_posting(1), xl_posting(2, expense_account="7150"), xl_posting(3)]
        results = xl_connector(sandbox).post(batch)
        assert outcomes(results) == [Outcome.SUCCEEDED, Outcome.PERMANENT, Outcome.SUCCEEDED]
        assert results[1].words == "Account '7150' does not exist"
        assert {i["extIdentifier"] for i in xl_items(sandbox)} == {"VH-bf-1", "VH-bf-3"}

    @pytest.mark.parametrize("auth", ["token", "oauth2"])
    def test_expired_credentials_stop_everything_with_plain_words(self, sandbox, auth):
        sandbox.set_faults(expired_credentials=True)
        connector = xl_connector(sandbox, auth=auth)
        with pytest.raises(ConnectorError) as caught:
            connector.test_connection()
        assert caught.value.outcome is Outcome.AUTHENTICATION
        assert "refused. Check that" in caught.value.message
        results = connector.post([xl_posting(1), xl_posting(2)])
        assert outcomes(results) == [Outcome.AUTHENTICATION] * 2

    def test_an_answer_slower_than_the_read_timeout_is_uncertain(self, sandbox):
        sandbox.set_faults(latency_ms=1500)
        before = handled(sandbox, "xledger")
        results = xl_connector(sandbox, read_timeout=0.5).post([xl_posting(1)])
        assert results[0].outcome is Outcome.UNCERTAIN
        wait_until_handled(sandbox, "xledger", before + 1)
        assert [i["extIdentifier"] for i in xl_items(sandbox)] == ["VH-bf-1"] * 2

    def test_a_wrong_api_token_is_refused_without_showing_it(self, sandbox):
        connector = xl_connector(sandbox, api_token="xl-wrong-token-123")
        with pytest.raises(ConnectorError) as caught:
            connector.test_connection()
        assert caught.value.outcome is Outcome.AUTHENTICATION
        assert str(caught.value.note) == (
            "The API token was refused. Check that it is correct and not revoked."
        )
        [result] = connector.post([xl_posting(1)])
        assert result.outcome is Outcome.AUTHENTICATION
        assert "xl-wrong-token-123" not in result.words + result.response_body

    def test_a_wrong_client_secret_is_refused_without_showing_it(self, sandbox):
        connector = xl_connector(sandbox, auth="oauth2", client_secret="wrong-secret-456")
        with pytest.raises(ConnectorError) as caught:
            connector.test_connection()
        assert caught.value.outcome is Outcome.AUTHENTICATION
        assert "client secret was refused" in caught.value.message
        assert "wrong-secret-456" not in caught.value.message
        [result] = connector.post([xl_posting(1)])
        assert result.outcome is Outcome.AUTHENTICATION

    def test_an_unknown_host_is_named_in_plain_words(self, sandbox):
        connector = xl_connector(sandbox, graphql_url="https://no-such-host.invalid/graphql")
        with pytest.raises(ConnectorError) as caught:
            connector.test_connection()
        assert caught.value.outcome is Outcome.TRANSIENT
        assert str(caught.value.note) == (
            "Could not find the host no-such-host.invalid. Check the address."
        )

    def test_an_untrusted_certificate_is_named_and_nothing_is_sent(self, sandbox):
        results = xl_connector(sandbox, ca_bundle=certifi.where()).post([xl_posting(1)])
        assert results[0].outcome is Outcome.TRANSIENT
        with pytest.raises(ConnectorError) as caught:
            xl_connector(sandbox, ca_bundle=certifi.where()).test_connection()
        assert "certificate of localhost could not be verified" in caught.value.message
        assert xl_items(sandbox) == []


# --- Xledger, issue 10: what the public sources show, and the assumptions flipped -------------


def assume(sandbox, faults: dict | None = None, **assumptions) -> None:
    """Set the faults (none by default) and flip unconfirmed behaviours of the sandbox."""
    sandbox.set_faults(**(faults or {}), assumptions=assumptions)


def xl_lines(sandbox, reference: str) -> list[dict]:
    return [i for i in xl_items(sandbox) if i["extIdentifier"] == reference]


def xl_transactions(sandbox) -> list[dict]:
    return sandbox.ledger()["xledger_transactions"][XL_ENTITY]


def sent_mutations(sandbox) -> int:
    """API requests served so far (reads included)."""
    return handled(sandbox, "xledger")


class TestXledgerIssue10Voucher:
    def test_issue10_item6_voucher_lines_share_one_trregnumber(self, sandbox):
        posting = xl_posting(7)
        [result] = xl_connector(sandbox).post([posting])
        assert result.outcome is Outcome.SUCCEEDED
        debit, credit = xl_lines(sandbox, posting.reference)
        assert debit["trRegNumber"] == credit["trRegNumber"] == posting.number == 1007
        for line in (debit, credit):
            assert line["invoiceAmount"] == line["amount"]
            assert line["jobLevel"] == 1
            assert line["postedDate"] == line["invoiceDate"] == line["dueDate"] == "2025-03-14"
            assert line["transactionSource"] == "GL"
            assert line["text"] == posting.description
            assert line["invoiceNumber"] == line["extIdentifier"] == posting.reference
        assert (debit["account"], debit["amount"]) == ("7130", "457.00")
        assert (credit["account"], credit["amount"]) == ("2910", "-457.00")
        assert (debit["glObject2"], credit["glObject2"]) == ("300", None)
        assert result.erp_id == str(debit["dbId"])

    def test_issue10_item6_subledger_only_with_the_claimant_subledger_setting(self, sandbox):
        xl_connector(sandbox).post([xl_posting(1)])
        xl_connector(sandbox, claimant_subledger=True).post([xl_posting(2)])
        assert [i["subledger"] for i in xl_lines(sandbox, "VH-bf-1")] == [None, None]
        # On the payable line only, never on the expense line.
        assert [i["subledger"] for i in xl_lines(sandbox, "VH-bf-2")] == [None, "V-0002"]

    def test_issue10_item5_paging_without_end_cursor_and_int64string_ids(self, sandbox):
        connector = xl_connector(sandbox, page_size=3)
        centers = connector.list_cost_centers()  # the kind travels as $kind: Int64String
        expected = {v["code"] for v in xl_seed()["objectValues"] if v["objectKindDbId"] == 101}
        assert sorted(c.code for c in centers) == sorted(expected)
        accounts = connector.list_accounts()
        assert len(accounts) == len({a.code for a in accounts}) == len(xl_seed()["accounts"])
        kinds = connector.list_object_kinds()
        assert [(k.id, k.name) for k in kinds] == [("101", "Avdeling"), ("102", "Prosjekt")]
        assert sandbox.requests()["xledger"]["error"] == 0


class TestXledgerIssue10Errors:
    def test_issue10_item7_the_default_refusal_names_its_input_and_the_rest_go_again(self, sandbox):
        sandbox.set_faults(unknown_accounts=["7150"])
        batch = [xl_posting(1), xl_posting(2, expense_account="7150"), xl_posting(3)]
        results = xl_connector(sandbox).post(batch)
        assert outcomes(results) == [Outcome.SUCCEEDED, Outcome.PERMANENT, Outcome.SUCCEEDED]
        assert not results[1].partial
        # The refused call; a lookup (import items, then transactions) proving nothing
        # of it was kept; the resend.
        assert sandbox.requests()["xledger"] == {
            "ok": 3,
            "error": 1,
            "rate_limited": 0,
            "dropped": 0,
        }

    def test_issue10_item7_per_item_refuses_the_named_posting_and_keeps_the_others(self, sandbox):
        assume(sandbox, {"unknown_accounts": ["7150"]}, xledger_item_errors="per_item")
        connector = xl_connector(sandbox)
        batch = [xl_posting(1), xl_posting(2, expense_account="7150"), xl_posting(3)]
        results = connector.post(batch)

        assert outcomes(results) == [Outcome.SUCCEEDED, Outcome.PERMANENT, Outcome.SUCCEEDED]
        assert [r.partial for r in results] == [False, True, False]
        assert results[1].message.startswith("Account '7150' does not exist")
        assert "Xledger holds part of voucher VH-bf-2" in results[1].words
        assert "finance must remove it in Xledger" in results[1].words
        assert [i["account"] for i in xl_lines(sandbox, "VH-bf-2")] == ["2910"]
        assert sandbox.requests()["xledger"]["error"] == 1  # one call: nothing resent

    def test_issue10_item7_a_half_stored_voucher_is_found_in_part_and_never_sent_again(
        self, sandbox
    ):
        assume(sandbox, {"unknown_accounts": ["7150"]}, xledger_item_errors="per_item")
        connector = xl_connector(sandbox)
        half = xl_posting(2, expense_account="7150")
        connector.post([half])
        found = connector.lookup(["VH-bf-2"])
        assert found == {"VH-bf-2": Found(found["VH-bf-2"].erp_id, complete=False)}

        sandbox.set_faults(assumptions={"xledger_item_errors": "per_item"})  # account is back
        before = sent_mutations(sandbox)
        [again] = connector.post([replace(half, existing_id=found["VH-bf-2"].erp_id)])
        assert (again.outcome, again.partial) == (Outcome.PERMANENT, True)
        assert "Xledger holds part of voucher VH-bf-2" in again.words
        assert sent_mutations(sandbox) == before  # never sent
        assert len(xl_lines(sandbox, "VH-bf-2")) == 1

    def test_issue10_item7_per_item_without_names_never_claims_a_half_voucher(self, sandbox):
        assume(
            sandbox,
            {"unknown_accounts": ["7150"]},
            xledger_item_errors="per_item",
            xledger_error_names_input="none",
        )
        batch = [xl_posting(1), xl_posting(2, expense_account="7150"), xl_posting(3)]
        results = xl_connector(sandbox).post(batch)
        assert outcomes(results) == [Outcome.SUCCEEDED, Outcome.UNCERTAIN, Outcome.SUCCEEDED]
        assert results[1].partial

    def test_issue10_item7_an_error_naming_no_input_is_uncertain_for_all(self, sandbox):
        assume(sandbox, {"unknown_accounts": ["7150"]}, xledger_error_names_input="none")
        connector = xl_connector(sandbox)
        batch = [xl_posting(1), xl_posting(2, expense_account="7150"), xl_posting(3)]
        results = connector.post(batch)
        assert outcomes(results) == [Outcome.UNCERTAIN] * 3
        assert results[1].words == "Account '7150' does not exist"
        assert xl_items(sandbox) == []
        assert connector.lookup([p.reference for p in batch]) == {}  # may be sent again

    def test_issue10_item7_without_the_ext_identifier_filter_nothing_is_resent_blindly(
        self, sandbox
    ):
        assume(sandbox, {"unknown_accounts": ["7150"]}, xledger_ext_identifier_filter=False)
        batch = [xl_posting(1), xl_posting(2, expense_account="7150"), xl_posting(3)]
        results = xl_connector(sandbox).post(batch)
        assert outcomes(results) == [Outcome.UNCERTAIN, Outcome.PERMANENT, Outcome.UNCERTAIN]
        assert "could not be checked" in results[0].words
        assert xl_items(sandbox) == []

    def test_issue10_item7_without_the_ext_identifier_filter_lookup_and_settle_raise(self, sandbox):
        connector = xl_connector(sandbox)
        [result] = connector.post([xl_posting(1)])
        assume(sandbox, xledger_ext_identifier_filter=False)
        with pytest.raises(ConnectorError) as caught:
            connector.lookup(["VH-bf-1"])
        assert "Field 'extIdentifier_in' is not defined by type" in caught.value.message
        with pytest.raises(ConnectorError):
            connector.settle({"VH-bf-1": result.erp_id})

    def test_issue10_item7_insufficient_credits_is_rate_limited_until_reset_at(self, sandbox):
        sandbox.set_faults(insufficient_credits_rate=1.0, credits_reset_s=600)
        connector = xl_connector(sandbox)
        results = connector.post([xl_posting(1), xl_posting(2)])
        assert outcomes(results) == [Outcome.RATE_LIMITED] * 2
        assert all(r.retry_after is not None and 580 <= r.retry_after <= 600 for r in results)
        with pytest.raises(ConnectorError) as caught:
            connector.list_accounts()
        assert caught.value.outcome is Outcome.RATE_LIMITED
        assert "API credits" in caught.value.message
        assert xl_items(sandbox) == []

    def test_issue10_item7_your_query_timed_out_on_the_mutation_is_uncertain(self, sandbox):
        sandbox.set_faults(query_timeout_rate=1.0)
        connector = xl_connector(sandbox)
        results = connector.post([xl_posting(1), xl_posting(2)])
        assert outcomes(results) == [Outcome.UNCERTAIN] * 2
        assert results[0].words == "Your query timed out."
        sandbox.set_faults()
        assert set(connector.lookup(["VH-bf-1", "VH-bf-2"])) == {"VH-bf-1", "VH-bf-2"}

    @pytest.mark.parametrize("answer", ["bad_format", "unauthenticated_401"])
    def test_issue10_item7_a_revoked_token_is_authentication_in_both_shapes(self, sandbox, answer):
        assume(sandbox, xledger_revoked_token=answer)
        connector = xl_connector(sandbox, api_token="xl-revoked-token-321")
        with pytest.raises(ConnectorError) as caught:
            connector.test_connection()
        assert caught.value.outcome is Outcome.AUTHENTICATION
        [result] = connector.post([xl_posting(1)])
        assert result.outcome is Outcome.AUTHENTICATION
        assert "xl-revoked-token-321" not in result.words + result.response_body

    def test_issue10_item7_a_malformed_token_is_authentication_with_xledgers_words(self, sandbox):
        [result] = xl_connector(sandbox, api_token="two words").post([xl_posting(1)])
        assert result.outcome is Outcome.AUTHENTICATION
        assert result.words.startswith("Bad format for API Token.")


class TestXledgerIssue10Settle:
    def test_issue10_item8_settle_waits_until_the_import_job_posts(self, sandbox):
        sandbox.set_faults(assumptions={"xledger_import": "deferred"})
        connector = xl_connector(sandbox)
        assert connector.settles_later is True
        results = connector.post([xl_posting(1)])
        held = {r.reference: r.erp_id for r in results}
        assert connector.settle(held) == {"VH-bf-1": Settled(Settlement.WAITING)}

        assert sandbox.xledger_import() == {"imported": 2, "rejected": 0}
        settled = connector.settle(held)["VH-bf-1"]
        assert settled.state is Settlement.POSTED
        assert settled.erp_id == str(min(t["dbId"] for t in xl_transactions(sandbox)))

    def test_issue10_item8_settle_tells_late_rejections_in_xledgers_words(self, sandbox):
        sandbox.set_faults(late_rejection_rate=0.5)
        connector = xl_connector(sandbox)
        results = connector.post([xl_posting(n) for n in range(10)])
        assert set(outcomes(results)) == {Outcome.SUCCEEDED}  # accepted, not yet posted
        sandbox.xledger_import()
        settled = connector.settle({r.reference: r.erp_id for r in results})

        rejected = {r for r, s in settled.items() if s.state is Settlement.REJECTED}
        posted = {r for r, s in settled.items() if s.state is Settlement.POSTED}
        assert rejected and posted and len(rejected) + len(posted) == 10
        for reference in rejected:
            assert settled[reference].message == "Period is closed for posting date 2025-03-14"
        assert {t["extIdentifier"] for t in xl_transactions(sandbox)} == posted

    def test_issue10_item8_settle_reads_in_pages_and_chunks(self, sandbox, monkeypatch):
        monkeypatch.setattr(xl, "LOOKUP_CHUNK", 3)
        monkeypatch.setattr(xl, "ID_CHUNK", 4)
        sandbox.set_faults(late_rejection_rate=0.5, assumptions={"xledger_import": "deferred"})
        connector = xl_connector(sandbox, page_size=2)
        results = connector.post([xl_posting(n) for n in range(8)])
        held = {r.reference: r.erp_id for r in results}
        whole = xl_connector(sandbox).settle(held)  # one chunk, one page each
        sandbox.xledger_import()
        assert {s.state for s in whole.values()} == {Settlement.WAITING}
        assert connector.settle(held) == xl_connector(sandbox).settle(held)
        assert {s.state for s in connector.settle(held).values()} == {
            Settlement.POSTED,
            Settlement.REJECTED,
        }

    def test_issue13_item10_settle_asks_once_per_page_of_posted_vouchers(self, sandbox):
        """Import checks are metered requests under the burst limit: one asks about as
        many vouchers as a page of their transactions holds (500 at 1,000 lines a page)."""
        assume(sandbox, xledger_import="immediate")
        connector = xl_connector(sandbox)
        postings = [xl_posting(n) for n in range(600)]
        results = [
            r for start in (0, 250, 500) for r in connector.post(postings[start : start + 250])
        ]
        held = {r.reference: r.erp_id for r in results}
        before = handled(sandbox, "xledger")

        settled = connector.settle(held)

        assert handled(sandbox, "xledger") - before == 2  # 500, then 100
        assert {s.state for s in settled.values()} == {Settlement.POSTED}
        assert len(settled) == 600

    def test_issue10_item8_an_immediate_import_settles_at_once(self, sandbox):
        assume(sandbox, xledger_import="immediate")
        connector = xl_connector(sandbox)
        results = connector.post([xl_posting(1)])
        assert connector.settle({"VH-bf-1": results[0].erp_id})["VH-bf-1"].state is (
            Settlement.POSTED
        )

    @pytest.mark.parametrize("kept", ["removed", "kept"])
    def test_issue10_item8_lookup_finds_a_voucher_the_import_job_posted(self, sandbox, kept):
        assume(sandbox, xledger_imported_items=kept)
        connector = xl_connector(sandbox)
        connector.post([xl_posting(1)])
        sandbox.xledger_import()
        found = connector.lookup(["VH-bf-1", "VH-bf-404"])
        assert set(found) == {"VH-bf-1"}
        assert found["VH-bf-1"].complete


# =============================================================================================
# Business Central
# =============================================================================================


def postable_accounts() -> set[str]:
    return {
        a["number"]
        for a in bc_seed()["accounts"]
        if not a["blocked"]
        and a["directPosting"] is not False
        and a.get("accountType", "Posting") == "Posting"
    }


def journal_lines(sandbox) -> list[dict]:
    return bc_ledger(sandbox)["journalLines"]


def dimensions_of(sandbox, line_id: str) -> list[tuple[str, str]]:
    return [
        (d["code"], d["valueCode"])
        for d in bc_ledger(sandbox)["dimensionSetLines"].get(line_id, [])
    ]


def bc_ok_requests(sandbox) -> int:
    return sandbox.requests()["business_central"]["ok"]


class TestBusinessCentralConnection:
    def test_test_connection_names_company_and_environment_and_reads_the_lists(self, sandbox):
        report = bc_connector(sandbox).test_connection()
        seed = bc_seed()
        assert report.detail == "company HLF, environment production"
        assert {a.code for a in report.accounts} == postable_accounts()
        avdeling = next(d for d in seed["dimensions"] if d["code"] == "AVDELING")
        assert {c.code for c in report.cost_centers} == {
            v["code"] for v in seed["dimensionValues"] if v["dimensionId"] == avdeling["id"]
        }
        assert {c.dimension for c in report.cost_centers} == {"AVDELING"}
        assert {j.code for j in report.journals} == {"UTLEGG", "GENERELT"}
        assert {d.code for d in report.dimensions} == {"AVDELING", "PROSJEKT"}

    def test_blocked_accounts_and_control_accounts_are_not_offered(self, sandbox):
        codes = {a.code for a in bc_connector(sandbox).list_accounts()}
        assert "1950" not in codes  # blocked
        assert "2400" not in codes  # direct posting off
        assert {"7130", "2910"} <= codes

    def test_issue10_item3_headings_and_totals_are_not_offered_for_mapping(self, sandbox):
        codes = {a.code for a in bc_connector(sandbox).list_accounts()}
        not_posting = {a["number"] for a in bc_seed()["accounts"] if a.get("accountType")}
        assert not_posting == {"1000", "3999", "4999", "7999"}
        assert not codes & not_posting
        assert codes == postable_accounts()

    def test_small_pages_deliver_every_account_exactly_once(self, sandbox):
        connector = bc_connector(sandbox, page_size=10)
        rows = list(connector._collection(f"companies({BC_COMPANY_ID})/accounts"))
        numbers = [r["number"] for r in rows]
        assert len(numbers) == len(set(numbers)) == len(bc_seed()["accounts"])
        assert [a.code for a in connector.list_accounts()] == [
            n for n in numbers if n in postable_accounts()
        ]

    def test_small_pages_deliver_every_cost_center_exactly_once(self, sandbox):
        centers = bc_connector(sandbox, page_size=3).list_cost_centers()
        codes = [c.code for c in centers]
        assert len(codes) == len(set(codes)) >= 4

    def test_the_msal_application_is_made_once_for_the_same_credentials(self, sandbox):
        first, second = bc_connector(sandbox), bc_connector(sandbox)
        first.list_journals()
        second.list_journals()
        assert len(bc._apps) == 1
        app = bc.msal_app(first.config)
        tokens = list(app.token_cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN))
        assert len(tokens) == 1

    def test_issue10_item4_an_app_missing_from_entra_applications_is_named_in_plain_words(
        self, sandbox
    ):
        sandbox.set_faults(assumptions={"bc_app_registered": False})
        connector = bc_connector(sandbox)
        with pytest.raises(ConnectorError) as caught:
            connector.test_connection()
        message = caught.value.message
        assert caught.value.outcome is Outcome.AUTHENTICATION
        assert "Microsoft Entra ID issued a token, but Business Central refused it" in message
        assert '"Microsoft Entra Applications"' in message
        assert BC_CLIENT_ID in message
        assert "Enabled" in message and "permission sets" in message
        assert "AADSTS" not in message  # not a refusal at Entra
        [result] = connector.post([bc_posting(1)])
        assert result.outcome is Outcome.AUTHENTICATION
        assert "Microsoft Entra Applications" in result.words
        assert journal_lines(sandbox) == []

    def test_issue10_item4_a_journal_outside_the_default_template_says_where_to_create_it(
        self, sandbox
    ):
        connector = bc_connector(sandbox, journal_code="UTBETALING")
        report = connector.test_connection()
        assert "The journal UTBETALING does not exist under the default general journal" in (
            report.detail
        )
        assert "GENERELT" in report.detail
        [result] = connector.post([bc_posting(1)])
        assert result.outcome is Outcome.PERMANENT
        assert "default general journal template" in result.words


class TestBusinessCentralPosting:
    def test_issue10_item1_lines_then_dimensions_land_on_the_line_id_the_201_returned(
        self, sandbox
    ):
        connector = bc_connector(sandbox)
        connector._journal()  # found once per connector
        before = bc_ok_requests(sandbox)
        batch = [bc_posting(1), bc_posting(2, cost_center="0200"), bc_posting(3)]
        results = connector.post(batch)

        assert outcomes(results) == [Outcome.SUCCEEDED] * 3
        assert not any(r.partial for r in results)
        lines = journal_lines(sandbox)
        assert len(lines) == 3
        by_reference = {line["externalDocumentNumber"]: line for line in lines}
        assert set(by_reference) == {p.reference.upper() for p in batch}
        for p, result in zip(batch, results, strict=True):
            line = by_reference[p.reference.upper()]
            assert line["id"] == result.erp_id
            assert line["documentNumber"] == p.reference.upper()
            assert Decimal(str(line["amount"])) == p.amount
            assert line["accountNumber"] == "7130"
            assert line["balancingAccountNumber"] == "2910"
            assert line["comment"] == f"Ola Nordmann ({p.claimant_reference})"
            assert dimensions_of(sandbox, line["id"]) == [("AVDELING", p.cost_center)]
            sent = [op["url"] for op in result.payload["requests"]]
            assert sent[1].endswith(f"/journalLines({result.erp_id})/dimensionSetLines")
            assert not any("$" in url for url in sent)
        assert bc_ledger(sandbox)["generalLedgerEntries"] == []
        assert bc_ok_requests(sandbox) - before == 2  # the lines batch, the dimensions batch

    def test_issue10_item1_100_postings_are_one_lines_batch_and_one_dimension_batch(self, sandbox):
        connector = bc_connector(sandbox)
        connector._journal()  # found once per connector
        before = sandbox.requests()["business_central"]
        batch = [bc_posting(n) for n in range(bc.BusinessCentralConnector.batch_size)]
        results = connector.post(batch)
        assert bc.BusinessCentralConnector.batch_size == 100
        assert set(outcomes(results)) == {Outcome.SUCCEEDED}
        lines = journal_lines(sandbox)
        assert len(lines) == 100
        assert all(len(dimensions_of(sandbox, line["id"])) == 1 for line in lines)
        after = sandbox.requests()["business_central"]
        # The two batches only, and never "too many parts" (an error).
        assert after["ok"] - before["ok"] == 2
        assert after["error"] == before["error"]

    def test_lookup_finds_unposted_lines_and_posted_entries_but_not_unknown_ones(self, sandbox):
        connector = bc_connector(sandbox)
        [first, _second] = connector.post([bc_posting(1), bc_posting(2)])
        assert connector.lookup(["VH-hlf-1", "VH-hlf-404"]) == {"VH-hlf-1": Found(first.erp_id)}

        journal_id = connector._journal()
        connector._call(
            "POST",
            f"{connector._api}/companies({BC_COMPANY_ID})/journals({journal_id})/Microsoft.NAV.post",
            operation="post journal",
            count=1,
            write=True,
        )
        entries = bc_ledger(sandbox)["generalLedgerEntries"]
        found = connector.lookup(["VH-hlf-1", "VH-hlf-2", "VH-hlf-404"])
        assert set(found) == {"VH-hlf-1", "VH-hlf-2"}
        assert found["VH-hlf-1"].erp_id in {str(e["entryNumber"]) for e in entries}
        assert found["VH-hlf-1"].complete

    @pytest.mark.parametrize("case", ["exact", "insensitive"])
    def test_issue10_item3_lookup_finds_references_whatever_the_filter_case(self, sandbox, case):
        sandbox.set_faults(assumptions={"bc_filter_case": case})
        connector = bc_connector(sandbox)
        results = connector.post([bc_posting(1), bc_posting(2)])
        assert outcomes(results) == [Outcome.SUCCEEDED] * 2
        found = connector.lookup(["VH-hlf-1", "vh-HLF-2", "VH-hlf-404"])
        assert found == {
            "VH-hlf-1": Found(results[0].erp_id),
            "vh-HLF-2": Found(results[1].erp_id),
        }

    def test_a_reference_with_a_quote_is_looked_up_safely(self, sandbox):
        connector = bc_connector(sandbox)
        [result] = connector.post([bc_posting(1, reference="VH-O'Brien-1")])
        assert result.outcome is Outcome.SUCCEEDED
        assert connector.lookup(["VH-O'Brien-1", "VH-O'Brien-2"]) == {
            "VH-O'Brien-1": Found(result.erp_id)
        }

    def test_a_foreign_currency_is_permanent_and_never_sent(self, sandbox):
        connector = bc_connector(sandbox)
        results = connector.post([bc_posting(1, currency="EUR"), bc_posting(2)])
        assert outcomes(results) == [Outcome.PERMANENT, Outcome.SUCCEEDED]
        assert "local currency" in results[0].words
        assert [line["externalDocumentNumber"] for line in journal_lines(sandbox)] == ["VH-HLF-2"]

    def test_settle_answers_every_reference_posted_without_a_call(self, sandbox):
        connector = bc_connector(sandbox)
        assert connector.settles_later is False
        settled = connector.settle({"VH-hlf-1": "line-1", "VH-hlf-2": "line-2"})
        assert settled == {
            "VH-hlf-1": Settled(Settlement.POSTED, erp_id="line-1"),
            "VH-hlf-2": Settled(Settlement.POSTED, erp_id="line-2"),
        }
        assert sum(sandbox.requests()["business_central"].values()) == 0


class TestBusinessCentralFaults:
    def test_a_service_error_is_transient_with_retry_after(self, sandbox):
        connector = bc_connector(sandbox)
        connector.list_journals()
        sandbox.set_faults(error_rate=1.0, retry_after_s=2)
        results = connector.post([bc_posting(1), bc_posting(2)])
        assert {(r.outcome, r.retry_after) for r in results} == {(Outcome.TRANSIENT, 2.0)}
        assert not any(r.partial for r in results)
        assert journal_lines(sandbox) == []

    def test_a_rate_limit_is_rate_limited_with_retry_after_from_the_header(self, sandbox):
        connector = bc_connector(sandbox)
        connector.post([bc_posting(0)])  # the journal id is known from here on
        sandbox.set_faults(rate_limit_rate=1.0, retry_after_s=3)
        results = connector.post([bc_posting(1)])
        assert (results[0].outcome, results[0].retry_after) == (Outcome.RATE_LIMITED, 3.0)
        assert results[0].response_status == 429

    def test_a_connection_dropped_after_commit_is_uncertain_and_completed_after_lookup(
        self, sandbox
    ):
        connector = bc_connector(sandbox)
        connector.list_journals()
        sandbox.set_faults(drop_after_commit_rate=1.0)
        batch = [bc_posting(1), bc_posting(2)]
        results = connector.post(batch)
        assert outcomes(results) == [Outcome.UNCERTAIN] * 2

        sandbox.set_faults()
        found = connector.lookup(["VH-hlf-1", "VH-hlf-2"])
        lines = journal_lines(sandbox)
        assert len(lines) == 2
        # The lines batch was committed; the dimension batch never went.
        assert found == {
            line["externalDocumentNumber"].replace("HLF", "hlf"): Found(line["id"], complete=False)
            for line in lines
        }
        again = connector.post([replace(p, existing_id=found[p.reference].erp_id) for p in batch])
        assert outcomes(again) == [Outcome.SUCCEEDED] * 2
        assert len(journal_lines(sandbox)) == 2
        assert all(dimensions_of(sandbox, line["id"]) == [("AVDELING", "0300")] for line in lines)

    def test_issue10_item1_a_dimension_failure_is_partial_and_completed_on_the_existing_line(
        self, sandbox
    ):
        connector = bc_connector(sandbox)
        posting = bc_posting(1)
        sandbox.set_faults(dimension_error_rate=1.0)
        [result] = connector.post([posting])
        assert result.outcome is Outcome.TRANSIENT
        assert result.partial
        [line] = journal_lines(sandbox)
        assert f"The journal line {line['id']} exists in Business Central" in result.words
        assert "will be added to that line on the next attempt" in result.words
        assert dimensions_of(sandbox, line["id"]) == []

        sandbox.set_faults()
        found = connector.lookup([posting.reference])
        assert found == {posting.reference: Found(line["id"], complete=False)}
        before = bc_ok_requests(sandbox)
        [again] = connector.post([replace(posting, existing_id=found[posting.reference].erp_id)])
        assert (again.outcome, again.erp_id, again.partial) == (
            Outcome.SUCCEEDED,
            line["id"],
            False,
        )
        assert [op["method"] for op in again.payload["requests"]] == ["POST"]
        assert again.payload["requests"][0]["url"].endswith(
            f"journalLines({line['id']})/dimensionSetLines"
        )
        assert bc_ok_requests(sandbox) - before == 2  # read the line's dimensions, add one
        [same] = journal_lines(sandbox)
        assert same["id"] == line["id"]
        assert dimensions_of(sandbox, line["id"]) == [("AVDELING", "0300")]
        assert connector.lookup([posting.reference]) == {posting.reference: Found(line["id"])}

    def test_issue10_item1_an_existing_line_that_has_its_dimension_is_succeeded_without_a_write(
        self, sandbox
    ):
        connector = bc_connector(sandbox)
        [first] = connector.post([bc_posting(1)])
        writes_before = len(journal_lines(sandbox))
        [again] = connector.post([replace(bc_posting(1), existing_id=first.erp_id)])
        assert (again.outcome, again.erp_id) == (Outcome.SUCCEEDED, first.erp_id)
        assert again.payload == {}
        assert len(journal_lines(sandbox)) == writes_before
        assert dimensions_of(sandbox, first.erp_id) == [("AVDELING", "0300")]

    def test_issue10_item2_one_invalid_posting_in_a_snapshot_batch_others_posted_exactly_once(
        self, sandbox
    ):
        sandbox.set_faults(unknown_accounts=["7150"])
        batch = [bc_posting(n) for n in range(9)]
        batch.insert(4, bc_posting(99, expense_account="7150"))
        results = bc_connector(sandbox).post(batch)

        expected = [Outcome.SUCCEEDED] * 10
        expected[4] = Outcome.PERMANENT
        assert outcomes(results) == expected
        assert results[4].words.startswith('The "accountNumber" does not match to an Account.')
        assert results[4].response_status == 400
        assert not results[4].partial
        lines = journal_lines(sandbox)
        references = [line["externalDocumentNumber"] for line in lines]
        valid = [p.reference.upper() for p in batch if p.expense_account != "7150"]
        assert sorted(references) == sorted(valid)  # each exactly once
        assert len(references) == len(set(references)) == 9
        assert all(len(dimensions_of(sandbox, line["id"])) == 1 for line in lines)

    def test_refused_postings_are_permanent_and_the_others_are_posted(self, sandbox):
        sandbox.set_faults(permanent_error_rate=0.4)
        batch = [bc_posting(n) for n in range(10)]
        results = bc_connector(sandbox).post(batch)

        refused = [r for r in results if r.outcome is Outcome.PERMANENT]
        posted = [r for r in results if r.outcome is Outcome.SUCCEEDED]
        assert refused and posted and len(refused) + len(posted) == 10
        assert all("Period is closed for posting date 2025-03-14" in r.message for r in refused)
        assert all(r.response_status == 400 for r in refused)
        ledger = bc_ledger(sandbox)
        assert {line["externalDocumentNumber"] for line in ledger["journalLines"]} == {
            r.reference.upper() for r in posted
        }
        assert set(ledger["dimensionSetLines"]) == {r.erp_id for r in posted}

    def test_an_unknown_account_is_permanent_with_the_erps_message(self, sandbox):
        sandbox.set_faults(unknown_accounts=["7150"])
        batch = [bc_posting(1), bc_posting(2, expense_account="7150"), bc_posting(3)]
        results = bc_connector(sandbox).post(batch)
        assert outcomes(results) == [Outcome.SUCCEEDED, Outcome.PERMANENT, Outcome.SUCCEEDED]
        assert results[1].words.startswith('The "accountNumber" does not match to an Account.')
        assert {line["externalDocumentNumber"] for line in journal_lines(sandbox)} == {
            "VH-HLF-1",
            "VH-HLF-3",
        }

    def test_issue10_item1_a_refused_cost_center_deletes_the_line_just_created(self, sandbox):
        batch = [bc_posting(1), bc_posting(2, cost_center="9999")]
        results = bc_connector(sandbox).post(batch)
        assert outcomes(results) == [Outcome.SUCCEEDED, Outcome.PERMANENT]
        assert not results[1].partial
        assert results[1].words.startswith(
            "The dimension value 9999 for dimension AVDELING does not exist."
        )
        assert [op["method"] for op in results[1].payload["requests"]] == [
            "POST",
            "POST",
            "DELETE",
        ]
        lines = journal_lines(sandbox)
        assert [line["externalDocumentNumber"] for line in lines] == ["VH-HLF-1"]
        assert set(bc_ledger(sandbox)["dimensionSetLines"]) == {lines[0]["id"]}

    def test_expired_credentials_stop_everything_with_plain_words(self, sandbox):
        sandbox.set_faults(expired_credentials=True)
        connector = bc_connector(sandbox)
        with pytest.raises(ConnectorError) as caught:
            connector.test_connection()
        assert caught.value.outcome is Outcome.AUTHENTICATION
        assert "client secret has expired" in caught.value.message
        assert "AADSTS7000222" in caught.value.message
        results = connector.post([bc_posting(1), bc_posting(2)])
        assert outcomes(results) == [Outcome.AUTHENTICATION] * 2

    def test_a_token_that_expired_at_the_api_is_an_authentication_failure(self, sandbox):
        connector = bc_connector(sandbox)
        connector.list_journals()  # a token is cached now
        sandbox.set_faults(expired_credentials=True)
        results = connector.post([bc_posting(1)])
        assert results[0].outcome is Outcome.AUTHENTICATION

    def test_an_answer_slower_than_the_read_timeout_is_uncertain(self, sandbox):
        connector = bc_connector(sandbox, read_timeout=0.5)
        connector.post([bc_posting(0)])  # token and journal id are in hand before it gets slow
        sandbox.set_faults(latency_ms=1500)
        before = handled(sandbox, "business_central")
        results = connector.post([bc_posting(1)])
        assert results[0].outcome is Outcome.UNCERTAIN
        wait_until_handled(sandbox, "business_central", before + 1)
        sandbox.set_faults()
        assert set(connector.lookup(["VH-hlf-1"])) == {"VH-hlf-1"}

    def test_a_wrong_secret_is_explained_without_showing_it(self, sandbox):
        connector = bc_connector(sandbox, client_secret="not-the-secret-789")
        with pytest.raises(ConnectorError) as caught:
            connector.test_connection()
        assert caught.value.outcome is Outcome.AUTHENTICATION
        assert "client secret is wrong" in caught.value.message
        assert "not-the-secret-789" not in caught.value.message
        [result] = connector.post([bc_posting(1)])
        assert result.outcome is Outcome.AUTHENTICATION
        assert "not-the-secret-789" not in result.words + result.response_body

    def test_an_unknown_tenant_is_explained(self, sandbox):
        connector = bc_connector(sandbox, tenant_id="00000000-0000-0000-0000-000000000000")
        with pytest.raises(ConnectorError) as caught:
            connector.test_connection()
        assert caught.value.outcome is Outcome.AUTHENTICATION
        assert "tenant was not found" in caught.value.message

    def test_an_unknown_client_is_explained(self, sandbox):
        connector = bc_connector(sandbox, client_id="00000000-1111-2222-3333-444444444444")
        with pytest.raises(ConnectorError) as caught:
            connector.test_connection()
        assert "No application with this client ID" in caught.value.message

    def test_an_unknown_environment_is_explained(self, sandbox):
        with pytest.raises(ConnectorError) as caught:
            bc_connector(sandbox, environment="sandbox-x").test_connection()
        assert "did not find environment sandbox-x" in caught.value.message

    def test_an_unknown_journal_refuses_postings_with_its_code(self, sandbox):
        results = bc_connector(sandbox, journal_code="NOPE").post([bc_posting(1)])
        assert results[0].outcome is Outcome.PERMANENT
        assert "journal NOPE does not exist" in results[0].words

    def test_issue10_item4_a_lower_case_journal_code_finds_the_journal(self, sandbox):
        results = bc_connector(sandbox, journal_code="utlegg").post([bc_posting(1)])
        assert outcomes(results) == [Outcome.SUCCEEDED]


# =============================================================================================
# Secrets
# =============================================================================================


FAULTS: list[dict[str, Any]] = [
    {},
    {"error_rate": 1.0},
    {"rate_limit_rate": 1.0},
    {"drop_after_commit_rate": 1.0},
    {"permanent_error_rate": 0.5},
    {"unknown_accounts": ["7130"]},
    {"expired_credentials": True},
    {"insufficient_credits_rate": 1.0},
    {"query_timeout_rate": 1.0},
    {"latency_ms": 700},
]


def _exercise(connector, postings: list[Posting], texts: list[str]) -> None:
    """Everything a connector does, its results and refusals collected as text."""
    references = [p.reference for p in postings]
    for call in (connector.test_connection, lambda: connector.lookup(references)):
        try:
            texts.append(repr(call()))
        except ConnectorError as error:
            texts.append(error.message)
            texts.append(str(error))
    for result in connector.post(postings):
        texts.extend([result.words, result.response_body, json.dumps(result.payload)])


def _access_tokens_in_caches() -> set[str]:
    tokens = {t.access_token for t in xl._tokens.values()}
    for app in bc._apps.values():
        cached = app.token_cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)
        tokens |= {item["secret"] for item in cached}
    return tokens


@pytest.mark.slow  # every fault, six connectors: about 20 s
def test_no_secret_appears_in_results_errors_or_logs_under_every_fault(sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    access_tokens: set[str] = set()
    for n, faults in enumerate(FAULTS):
        sandbox.set_faults(**faults)
        connectors = [
            xl_connector(sandbox, read_timeout=0.5),
            xl_connector(sandbox, auth="oauth2", read_timeout=0.5),
            bc_connector(sandbox, read_timeout=0.5),
            xl_connector(sandbox, api_token="xl-wrong-token-123"),
            xl_connector(sandbox, auth="oauth2", client_secret="wrong-secret-456"),
            bc_connector(sandbox, client_secret="not-the-secret-789"),
        ]
        for c, connector in enumerate(connectors):
            make = bc_posting if isinstance(connector, bc.BusinessCentralConnector) else xl_posting
            _exercise(connector, [make(100 * n + 10 * c + k) for k in range(3)], texts)
        access_tokens |= _access_tokens_in_caches()
    sandbox.set_faults()
    # Requests the connectors gave up on (read timeout 0.5 s, latency 0.7 s) are still being
    # carried out: wait until the sandbox has finished them, so none writes into the next
    # test's ledger. Waiting the latency out raced them on a slow machine.
    sandbox.wait_until_idle()

    assert len(access_tokens) >= 2, "the run should have obtained access tokens"
    secrets = [
        XL_TOKEN,
        XL_SECRET,
        BC_SECRET,
        "xl-wrong-token-123",
        "wrong-secret-456",
        "not-the-secret-789",
        *access_tokens,
    ]
    logged = [record.getMessage() for record in caplog.records] + [caplog.text]
    assert len(caplog.records) > 50
    for secret in secrets:
        assert not [t for t in texts if secret in t], f"a result or error shows {secret[:4]}…"
        assert not [t for t in logged if secret in t], f"a log line shows {secret[:4]}…"
