"""Issue 15, items 1 and 6: what the ERP holds under our references, read page by page
(`Connector.entries`), against the ERP sandbox over HTTPS; and the sandbox's controls for
what finance and the ERPs do after a send (delete, edit, post, reject, key by hand).

A few `responses` tests pin the request each connector sends for a page.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from integrations.clients import business_central as bc
from integrations.clients import xledger as xl
from integrations.clients.base import ConnectorError, EntrySource, ErpEntry, Outcome, Posting
from tests.test_gateway_sandbox import bc_connector, xl_connector

MARCH = (date(2025, 3, 1), date(2025, 3, 31))
OURS = "VH-12-"


@pytest.fixture(autouse=True)
def sandbox(erp_sandbox):
    """A sandbox back at its seed, and no token or MSAL app left from another test."""
    xl._tokens.clear()
    bc._apps.clear()
    yield erp_sandbox
    erp_sandbox.reset()
    xl._tokens.clear()
    bc._apps.clear()


def posting(n: int, *, org: int = 12, day: date = date(2025, 3, 14), **changes) -> Posting:
    fields: dict[str, Any] = {
        "reference": f"VH-{org}-{n}",
        "posting_date": day,
        "amount": Decimal("450.25") + n,
        "currency": "NOK",
        "expense_account": "7130",
        "cost_center": "0300",
        "payable_account": "2910",
        "claimant_reference": f"V-{n:04d}",
        "claimant_name": "Kari Nordmann",
        "description": f"Reise nr. {n}",
        "number": 1000 * org + n,
    }
    fields.update(changes)
    return Posting(**fields)


def xl_posting(n: int, **changes) -> Posting:
    return posting(n, **{"cost_center": "300", **changes})


def read(connector, start: date = MARCH[0], end: date = MARCH[1], prefix: str = OURS):
    """Every page, as the reconciliation reads them."""
    return list(connector.entries(start, end, prefix))


def flat(pages: list[list[ErpEntry]]) -> list[ErpEntry]:
    return [entry for page in pages for entry in page]


def by_reference(pages: list[list[ErpEntry]]) -> dict[str, ErpEntry]:
    entries = flat(pages)
    found = {entry.reference: entry for entry in entries}
    assert len(found) == len(entries), "one entry per reference"
    return found


def api_requests(sandbox, erp: str) -> int:
    return sum(sandbox.requests()[erp].values())


# =============================================================================================
# Business Central
# =============================================================================================


class TestBusinessCentralEntries:
    def test_issue15_item1_bc_unposted_lines_come_back_as_posted_through_the_connector(
        self, sandbox
    ):
        connector = bc_connector(sandbox)
        connector.post([posting(1), posting(2, cost_center="0500", expense_account="7100")])

        found = by_reference(read(connector))

        assert set(found) == {"VH-12-1", "VH-12-2"}
        first, second = found["VH-12-1"], found["VH-12-2"]
        assert first.source is EntrySource.JOURNAL_LINE and not first.posted
        assert (first.amount, first.account, first.cost_center) == (
            Decimal("451.25"),
            "7130",
            "0300",
        )
        assert (first.posting_date, first.currency, first.payable_account) == (
            date(2025, 3, 14),
            "NOK",
            "2910",
        )
        assert (second.account, second.cost_center) == ("7100", "0500")
        lines = sandbox.ledger()["business_central"]["HLF"]["journalLines"]
        assert first.erp_id in {line["id"] for line in lines}

    def test_issue15_item1_bc_pages_cost_the_requests_the_page_size_allows(
        self, sandbox, monkeypatch
    ):
        monkeypatch.setattr(bc, "ENTRIES_PAGE_SIZE", 2)
        connector = bc_connector(sandbox)
        connector.post([posting(n) for n in range(1, 6)])
        before = api_requests(sandbox, "business_central")

        pages = read(connector)

        # 5 lines at 2 a page: 3 requests; the empty ledger: 1 (journal id known from post).
        assert api_requests(sandbox, "business_central") - before == 3 + 1
        assert [len(page) for page in pages] == [2, 2, 1]
        assert len(by_reference(pages)) == 5

        sandbox.bc_post_journal()
        before = api_requests(sandbox, "business_central")
        posted = by_reference(read(connector))
        # No lines left: 1 request; 10 G/L entries at 2 a page: 5; folded to 5 documents
        # although each page ends where the next document's second entry follows.
        assert api_requests(sandbox, "business_central") - before == 1 + 5
        assert len(posted) == 5
        assert all(entry.posted for entry in posted.values())

    def test_issue15_item1_bc_prefix_excludes_other_organizations_and_period_other_dates(
        self, sandbox
    ):
        connector = bc_connector(sandbox)
        connector.post(
            [
                posting(1),
                posting(2, org=13),
                posting(3, org=1),  # VH-1-3: "VH-1" is not "VH-12-"
                posting(4, day=date(2025, 4, 1)),
                posting(5, day=date(2025, 2, 28)),
                posting(6, day=date(2025, 3, 31)),
            ]
        )
        assert set(by_reference(read(connector))) == {"VH-12-1", "VH-12-6"}
        sandbox.bc_post_journal()
        assert set(by_reference(read(connector))) == {"VH-12-1", "VH-12-6"}
        assert set(by_reference(read(connector, prefix="VH-13-"))) == {"VH-13-2"}

    def test_issue15_item6_bc_a_line_finance_deleted_is_gone(self, sandbox):
        connector = bc_connector(sandbox)
        connector.post([posting(1), posting(2)])

        deleted = sandbox.bc_delete_line("VH-12-1")

        assert len(deleted["deleted"]) == 1
        assert set(by_reference(read(connector))) == {"VH-12-2"}

    def test_issue15_item6_bc_a_line_finance_edited_shows_the_new_values(self, sandbox):
        connector = bc_connector(sandbox)
        connector.post([posting(1)])

        sandbox.bc_edit_line(
            "VH-12-1",
            amount="999.50",
            accountNumber="7100",
            postingDate="2025-03-20",
            dimension={"code": "AVDELING", "valueCode": "0500"},
        )

        entry = by_reference(read(connector))["VH-12-1"]
        assert (entry.amount, entry.account, entry.posting_date, entry.cost_center) == (
            Decimal("999.50"),
            "7100",
            date(2025, 3, 20),
            "0500",
        )
        sandbox.bc_edit_line("VH-12-1", postingDate="2025-04-02")
        assert read(connector) == []

    def test_issue15_item6_bc_a_posted_journal_is_one_ledger_entry_per_document(self, sandbox):
        connector = bc_connector(sandbox)
        connector.post([posting(1), posting(2, cost_center="0700")])

        answer = sandbox.bc_post_journal("UTLEGG")

        assert answer == {"posted_entries": 4}  # expense debit and payable credit, each
        found = by_reference(read(connector))
        assert set(found) == {"VH-12-1", "VH-12-2"}
        first = found["VH-12-1"]
        assert first.source is EntrySource.LEDGER_ENTRY
        assert (first.amount, first.account, first.payable_account, first.cost_center) == (
            Decimal("451.25"),
            "7130",
            "2910",
            "0300",
        )
        assert found["VH-12-2"].cost_center == "0700"
        entries = sandbox.ledger()["business_central"]["HLF"]["generalLedgerEntries"]
        assert first.erp_id == str(entries[0]["entryNumber"])
        # What the lookup finds is the same entry.
        assert connector.lookup(["VH-12-1"])["VH-12-1"].erp_id == first.erp_id

    def test_issue15_item6_bc_entries_keyed_by_hand_are_returned(self, sandbox):
        connector = bc_connector(sandbox)
        sandbox.bc_key_entry(
            "ledger_entry",
            "VH-12-77",
            amount="120.00",
            accountNumber="7150",
            balancingAccountNumber="2910",
            postingDate="2025-03-03",
            dimension={"code": "AVDELING", "valueCode": "0200"},
        )
        sandbox.bc_key_entry(
            "journal_line", "VH-12-78", amount=75, accountNumber="7130", postingDate="2025-03-04"
        )

        found = by_reference(read(connector))

        keyed = found["VH-12-77"]
        assert (keyed.source, keyed.amount, keyed.account, keyed.cost_center) == (
            EntrySource.LEDGER_ENTRY,
            Decimal("120.00"),
            "7150",
            "0200",
        )
        line = found["VH-12-78"]
        assert (line.source, line.amount, line.cost_center, line.payable_account) == (
            EntrySource.JOURNAL_LINE,
            Decimal("75"),
            "",
            "",
        )

    @pytest.mark.parametrize(
        ("faults", "outcome"),
        [
            ({"error_rate": 1.0}, Outcome.TRANSIENT),
            ({"rate_limit_rate": 1.0}, Outcome.RATE_LIMITED),
        ],
    )
    def test_issue15_item1_bc_an_unavailable_erp_raises_rather_than_answering_empty(
        self, sandbox, monkeypatch, faults, outcome
    ):
        monkeypatch.setattr(bc, "ENTRIES_PAGE_SIZE", 1)
        connector = bc_connector(sandbox)
        connector.post([posting(1), posting(2)])
        pages = connector.entries(*MARCH, OURS)
        assert len(next(pages)) == 1

        sandbox.set_faults(only="business_central", **faults)  # from the second page on

        with pytest.raises(ConnectorError) as caught:
            list(pages)
        assert caught.value.outcome is outcome
        assert caught.value.status in (503, 429)


# =============================================================================================
# Xledger
# =============================================================================================


def assume(sandbox, faults: dict | None = None, **assumptions) -> None:
    sandbox.set_faults(**(faults or {}), assumptions=assumptions)


class TestXledgerEntries:
    def test_issue15_item1_xledger_posted_vouchers_come_back_one_per_reference(self, sandbox):
        connector = xl_connector(sandbox)
        connector.post([xl_posting(1), xl_posting(2, expense_account="7100", cost_center="500")])

        found = by_reference(read(connector))

        assert set(found) == {"VH-12-1", "VH-12-2"}
        first = found["VH-12-1"]
        assert first.source is EntrySource.LEDGER_ENTRY
        assert (first.amount, first.account, first.cost_center, first.payable_account) == (
            Decimal("451.25"),
            "7130",
            "300",
            "2910",
        )
        assert (first.posting_date, first.currency) == (date(2025, 3, 14), "NOK")
        assert (found["VH-12-2"].account, found["VH-12-2"].cost_center) == ("7100", "500")

    def test_issue15_item1_xledger_items_waiting_for_the_import_then_transactions(self, sandbox):
        assume(sandbox, xledger_import="deferred")
        connector = xl_connector(sandbox)
        [result] = connector.post([xl_posting(1)])

        waiting = by_reference(read(connector))["VH-12-1"]
        assert waiting.source is EntrySource.IMPORT_ITEM
        assert (waiting.erp_id, waiting.amount, waiting.cost_center) == (
            result.erp_id,
            Decimal("451.25"),
            "300",
        )

        sandbox.xledger_import()
        assert by_reference(read(connector))["VH-12-1"].source is EntrySource.LEDGER_ENTRY

    def test_issue15_item1_xledger_imported_items_kept_listed_are_not_counted_twice(self, sandbox):
        assume(sandbox, xledger_imported_items="kept")
        connector = xl_connector(sandbox)
        connector.post([xl_posting(1)])

        [entry] = flat(read(connector))
        assert entry.source is EntrySource.LEDGER_ENTRY

    def test_issue15_item1_xledger_pages_cost_the_requests_the_page_size_allows(
        self, sandbox, monkeypatch
    ):
        monkeypatch.setattr(xl, "ENTRIES_PAGE_SIZE", 3)
        connector = xl_connector(sandbox)
        connector.post([xl_posting(n) for n in range(1, 6)])
        before = api_requests(sandbox, "xledger")

        pages = read(connector)

        # 10 transaction lines at 3 a page: 4 queries; no item waits: 1 query, and no
        # glImportItemErrors query for an empty page.
        assert api_requests(sandbox, "xledger") - before == 4 + 1
        assert len(by_reference(pages)) == 5
        assert all(entry.amount > 0 for entry in flat(pages))

    def test_issue15_item1_xledger_prefix_excludes_other_organizations_and_period_other_dates(
        self, sandbox
    ):
        connector = xl_connector(sandbox)
        connector.post(
            [
                xl_posting(1),
                xl_posting(2, org=13),
                xl_posting(3, org=1),
                xl_posting(4, day=date(2025, 4, 1)),
                xl_posting(6, day=date(2025, 3, 31)),
            ]
        )
        assert set(by_reference(read(connector))) == {"VH-12-1", "VH-12-6"}
        assert set(by_reference(read(connector, prefix="VH-13-"))) == {"VH-13-2"}

    def test_issue15_item6_xledger_a_late_rejection_is_not_returned_at_all(self, sandbox):
        assume(sandbox, xledger_import="deferred")
        connector = xl_connector(sandbox)
        connector.post([xl_posting(1), xl_posting(2)])

        answer = sandbox.xledger_reject("VH-12-1", message="Account 7130 is blocked")

        assert len(answer["rejected"]) == 2  # both lines of the voucher
        # The refused voucher's items stay listed in glImportItems, with their errors in
        # glImportItemErrors: Xledger does not hold the posting, so no entry says it does.
        assert set(by_reference(read(connector))) == {"VH-12-2"}
        sandbox.xledger_import()
        found = by_reference(read(connector))
        assert set(found) == {"VH-12-2"}
        assert found["VH-12-2"].source is EntrySource.LEDGER_ENTRY
        settled = connector.settle({"VH-12-1": answer["rejected"][0]})
        assert settled["VH-12-1"].message == "Account 7130 is blocked"

    def test_issue15_item6_xledger_the_late_rejection_fault_is_not_returned_either(self, sandbox):
        assume(sandbox, {"late_rejection_rate": 1.0})
        connector = xl_connector(sandbox)
        connector.post([xl_posting(1)])
        assert read(connector) == []

    def test_issue15_item6_xledger_vouchers_keyed_by_hand_are_returned(self, sandbox):
        connector = xl_connector(sandbox)
        sandbox.xledger_key_voucher(
            "transaction",
            "VH-12-88",
            amount="120.00",
            account="7150",
            payableAccount="2910",
            postedDate="2025-03-10",
            glObjects={"glObject2": "200"},
            trRegNumber=88,
        )
        sandbox.xledger_key_voucher(
            "import_item",
            "VH-12-89",
            amount=35,
            account="7130",
            payableAccount="2910",
            postedDate="2025-03-11",
        )

        found = by_reference(read(connector))

        keyed = found["VH-12-88"]
        assert (keyed.source, keyed.amount, keyed.account, keyed.cost_center) == (
            EntrySource.LEDGER_ENTRY,
            Decimal("120.00"),
            "7150",
            "200",
        )
        assert found["VH-12-89"].source is EntrySource.IMPORT_ITEM
        assert found["VH-12-89"].amount == Decimal("35")

    def test_issue15_item1_xledger_without_the_ext_identifier_filter_still_reads(self, sandbox):
        assume(sandbox, xledger_ext_identifier_filter=False)
        connector = xl_connector(sandbox)
        connector.post([xl_posting(1)])
        assert set(by_reference(read(connector))) == {"VH-12-1"}

    def test_issue15_item1_xledger_without_the_posted_date_filter_reads_all_and_keeps_the_period(
        self, sandbox, monkeypatch
    ):
        monkeypatch.setattr(xl, "ENTRIES_PAGE_SIZE", 4)
        assume(sandbox, xledger_posted_date_filter=False, xledger_ext_identifier_filter=False)
        connector = xl_connector(sandbox)
        connector.post([xl_posting(1), xl_posting(2, day=date(2025, 5, 2)), xl_posting(3)])
        before = api_requests(sandbox, "xledger")

        assert set(by_reference(read(connector))) == {"VH-12-1", "VH-12-3"}
        # The refused filtered query, then 6 lines unfiltered at 4 a page: 2; the items: 1.
        assert api_requests(sandbox, "xledger") - before == 1 + 2 + 1
        before = api_requests(sandbox, "xledger")
        read(connector)
        # Remembered: the filtered query is not asked again.
        assert api_requests(sandbox, "xledger") - before == 2 + 1

    @pytest.mark.parametrize(
        ("faults", "outcome"),
        [
            ({"error_rate": 1.0}, Outcome.TRANSIENT),
            ({"rate_limit_rate": 1.0}, Outcome.RATE_LIMITED),
            ({"insufficient_credits_rate": 1.0}, Outcome.RATE_LIMITED),
        ],
    )
    def test_issue15_item1_xledger_an_unavailable_erp_raises_rather_than_answering_empty(
        self, sandbox, monkeypatch, faults, outcome
    ):
        monkeypatch.setattr(xl, "ENTRIES_PAGE_SIZE", 2)
        connector = xl_connector(sandbox)
        connector.post([xl_posting(1), xl_posting(2)])
        pages = connector.entries(*MARCH, OURS)
        assert len(next(pages)) == 1  # the first voucher, once the second page began

        sandbox.set_faults(only="xledger", **faults)

        with pytest.raises(ConnectorError) as caught:
            list(pages)
        assert caught.value.outcome is outcome


# =============================================================================================
# The sandbox's controls refuse what they cannot do, and say why
# =============================================================================================


class TestFinanceControls:
    def post(self, sandbox, path: str, body: Any) -> requests.Response:
        session = requests.Session()
        session.verify = str(sandbox.ca_bundle)
        session.trust_env = False
        return session.post(f"{sandbox.url}/_sandbox/{path}", json=body, timeout=10)

    @pytest.mark.parametrize(
        ("path", "body", "words"),
        [
            ("business_central/delete_line", {"reference": "VH-12-404"}, "no journal line"),
            ("business_central/delete_line", {"reference": "VH-12-1", "x": 1}, "unknown fields: x"),
            ("business_central/edit_line", {"reference": "VH-12-1"}, "at least one change"),
            ("business_central/post_journal", {"journal": "NOPE"}, "no journal 'NOPE'"),
            (
                "business_central/key_entry",
                {
                    "kind": "ledger_entry",
                    "reference": "VH-12-1",
                    "amount": "1.005",
                    "accountNumber": "7130",
                    "postingDate": "2025-03-01",
                },
                "at most two decimals",
            ),
            (
                "business_central/key_entry",
                {
                    "kind": "journal_line",
                    "reference": "VH-12-1",
                    "amount": 1,
                    "accountNumber": "0001",
                    "postingDate": "2025-03-01",
                },
                "does not match to an Account",
            ),
            ("xledger/reject", {"reference": "VH-12-1"}, "no GL import item waits"),
            (
                "xledger/key_voucher",
                {
                    "kind": "posted",
                    "reference": "VH-12-1",
                    "amount": 1,
                    "account": "7130",
                    "payableAccount": "2910",
                    "postedDate": "2025-03-01",
                },
                'kind must be "transaction" or "import_item"',
            ),
            ("xledger/key_voucher", [], "must be a JSON object"),
        ],
    )
    def test_issue15_item6_controls_refuse_bad_input_clearly_and_change_nothing(
        self, sandbox, path, body, words
    ):
        bc_connector(sandbox).post([posting(1)])
        before = sandbox.ledger()

        answer = self.post(sandbox, path, body)

        assert answer.status_code in (400, 404, 409)
        assert words in answer.json()["error"]
        assert sandbox.ledger() == before

    def test_issue15_item6_an_invalid_dimension_edit_changes_nothing(self, sandbox):
        bc_connector(sandbox).post([posting(1)])
        before = sandbox.ledger()
        answer = self.post(
            sandbox,
            "business_central/edit_line",
            {"reference": "VH-12-1", "dimension": {"code": "AVDELING", "valueCode": "9999"}},
        )
        assert answer.status_code == 400
        assert "does not exist" in answer.json()["error"]
        assert sandbox.ledger() == before


# =============================================================================================
# The request each page sends (responses)
# =============================================================================================

API = "https://bc.example.test/v2.0/11111111-2222-3333-4444-555555555555/production/api/v2.0"
COMPANY = "99999999-8888-7777-6666-555555555555"
JOURNAL = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
XL_URL = "https://demo.xledger.test/graphql"


class TestRequestShapes:
    def test_issue15_item1_bc_filters_by_prefix_and_dates_and_expands_dimensions(self, monkeypatch):
        config = bc.BusinessCentralConfig(
            tenant_id="11111111-2222-3333-4444-555555555555",
            environment="production",
            company_id=COMPANY,
            client_id="client-1",
            client_secret="secret-1",
            journal_code="UTLEGG",
            cost_center_dimension="AVDELING",
            api_base_url="https://bc.example.test",
            authority_host="https://login.example.test",
        )
        connector = bc.BusinessCentralConnector(config)
        monkeypatch.setattr(connector, "_token", lambda: "token")
        connector._journal_id = JOURNAL
        with responses.RequestsMock() as mocked:
            mocked.get(
                f"{API}/companies({COMPANY})/journals({JOURNAL})/journalLines", json={"value": []}
            )
            mocked.get(f"{API}/companies({COMPANY})/generalLedgerEntries", json={"value": []})
            assert read(connector, prefix="vh-12-") == []
            calls = list(mocked.calls)
        for call in calls:
            query = parse_qs(urlsplit(str(call.request.url)).query)
            assert query["$filter"] == [
                "startswith(documentNumber,'VH-12-') and postingDate ge 2025-03-01"
                " and postingDate le 2025-03-31"
            ]
            assert query["$expand"] == ["dimensionSetLines"]
            assert call.request.headers["Prefer"] == f"odata.maxpagesize={bc.ENTRIES_PAGE_SIZE}"
            assert "Data-Access-Intent" not in call.request.headers

    def test_issue15_item1_xledger_asks_a_posted_date_range_at_the_page_size(self):
        connector = xl.XledgerConnector(
            xl.XledgerConfig(graphql_url=XL_URL, api_token="t", cost_center_object=3)
        )
        empty = {"edges": [], "pageInfo": {"hasNextPage": False}}
        with responses.RequestsMock() as mocked:
            mocked.post(XL_URL, json={"data": {"transactions": empty}})
            mocked.post(XL_URL, json={"data": {"glImportItems": empty}})
            assert read(connector) == []
            sent = [json.loads(call.request.body or b"") for call in mocked.calls]
        assert [s["variables"] for s in sent] == [
            {"from": "2025-03-01", "to": "2025-03-31", "first": xl.ENTRIES_PAGE_SIZE, "after": None}
        ] * 2
        for body in sent:
            assert "postedDate_gte: $from, postedDate_lte: $to" in body["query"]
            assert "glObject3 { code }" in body["query"]
            assert "endCursor" not in body["query"]
