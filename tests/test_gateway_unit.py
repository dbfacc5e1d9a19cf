"""Unit tests of the ERP connectors: one method at a time, HTTP mocked with `responses`.

What is checked here is what each connector puts on the wire and how it reads
each answer; the same connectors against the running sandbox are in
test_gateway_sandbox.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from http.client import RemoteDisconnected
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError, ProtocolError

from integrations.clients import business_central as bc
from integrations.clients import http as gw_http
from integrations.clients import xledger as xl
from integrations.clients.base import (
    ConnectorError,
    Found,
    Outcome,
    Posting,
    Settled,
    Settlement,
)

XL_URL = "https://demo.xledger.test/graphql"
XL_TOKEN_URL = "https://demo.xledger.test/oauth2/token"
XL_TOKEN = "xl-unit-test-token-7f3a"
XL_SECRET = "xl-unit-client-secret-91c2"

TENANT = "11111111-2222-3333-4444-555555555555"
COMPANY = "99999999-8888-7777-6666-555555555555"
JOURNAL_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
AUTHORITY_HOST = "https://login.example.test"
API_HOST = "https://bc.example.test"
API = f"{API_HOST}/v2.0/{TENANT}/production/api/v2.0"
BC_SECRET = "bc-unit-client-secret-55e1"
BC_ACCESS_TOKEN = "bc-access-token-abc123"
TOKEN_ENDPOINT = f"{AUTHORITY_HOST}/{TENANT}/oauth2/v2.0/token"


def posting(reference: str = "VH-1-101", amount: str = "450.00", **changes) -> Posting:
    fields: dict[str, Any] = {
        "reference": reference,
        "posting_date": date(2025, 3, 14),
        "amount": Decimal(amount),
        "currency": "NOK",
        "expense_account": "7130",
        "cost_center": "300",
        "payable_account": "2910",
        "claimant_reference": "V-0042",
        "claimant_name": "Kari Nordmann",
        "description": "Reise Oslo-Bergen, likepersonsmøte",
        "number": 101,
    }
    fields.update(changes)
    return Posting(**fields)


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Module-level caches (OAuth2 tokens, MSAL apps) must not leak between tests."""
    xl._tokens.clear()
    bc._apps.clear()
    yield
    xl._tokens.clear()
    bc._apps.clear()


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def sent_json(call) -> dict:
    return json.loads(call.request.body)


# =============================================================================================
# http.py: Retry-After, classification, admin words
# =============================================================================================


class TestRetryAfter:
    def test_seconds_are_read_as_seconds(self):
        assert gw_http.parse_retry_after("7") == 7.0

    def test_fractional_seconds_are_kept(self):
        assert gw_http.parse_retry_after("1.5") == 1.5

    def test_an_http_date_becomes_the_seconds_until_then(self):
        now = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC)
        assert gw_http.parse_retry_after("Fri, 14 Mar 2025 12:00:30 GMT", now=now) == 30.0

    def test_an_http_date_in_the_past_means_now(self):
        now = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC)
        assert gw_http.parse_retry_after("Fri, 14 Mar 2025 11:00:00 GMT", now=now) == 0.0

    def test_a_missing_or_unreadable_header_gives_no_wait(self):
        assert gw_http.parse_retry_after(None) is None
        assert gw_http.parse_retry_after("") is None
        assert gw_http.parse_retry_after("soon") is None


class TestStatusClassification:
    @pytest.mark.parametrize(
        ("status", "outcome"),
        [
            (401, Outcome.AUTHENTICATION),
            (403, Outcome.AUTHENTICATION),
            (429, Outcome.RATE_LIMITED),
            (502, Outcome.UNCERTAIN),
            (504, Outcome.UNCERTAIN),
            (408, Outcome.UNCERTAIN),
            (500, Outcome.TRANSIENT),
            (503, Outcome.TRANSIENT),
            (400, Outcome.PERMANENT),
            (404, Outcome.PERMANENT),
            (422, Outcome.PERMANENT),
        ],
    )
    def test_each_status_of_a_write_has_its_class(self, status, outcome):
        assert gw_http.classify_failure(status=status).outcome is outcome

    @pytest.mark.parametrize("status", [408, 502, 504])
    def test_a_gateway_giving_up_on_a_read_is_only_transient(self, status):
        assert gw_http.classify_failure(status=status, write=False).outcome is Outcome.TRANSIENT

    def test_429_honours_retry_after_in_seconds(self):
        failure = gw_http.classify_failure(status=429, headers={"Retry-After": "12"})
        assert failure.retry_after == 12.0

    def test_429_honours_retry_after_as_an_http_date(self):
        later = datetime.now(UTC).timestamp() + 60
        header = datetime.fromtimestamp(later, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
        failure = gw_http.classify_failure(status=429, headers={"retry-after": header})
        assert failure.retry_after is not None and 55 <= failure.retry_after <= 60

    def test_503_honours_retry_after_when_present(self):
        with_header = gw_http.classify_failure(status=503, headers={"Retry-After": "3"})
        without = gw_http.classify_failure(status=503)
        assert (with_header.outcome, with_header.retry_after) == (Outcome.TRANSIENT, 3.0)
        assert without.retry_after is None

    def test_a_refused_request_keeps_the_erps_message(self):
        failure = gw_http.classify_failure(status=400, erp_message="Period is closed")
        assert failure.outcome is Outcome.PERMANENT
        assert failure.message == "Period is closed"


def _connection_error(reason: Exception) -> requests.ConnectionError:
    # A fake: no pool or connection, nothing connects.
    return requests.ConnectionError(MaxRetryError(None, "/", reason=reason))  # type: ignore[arg-type]


class TestExceptionClassification:
    def test_a_connect_timeout_is_transient(self):
        failure = gw_http.classify_failure(requests.exceptions.ConnectTimeout("connect"))
        assert (failure.outcome, failure.cause) == (
            Outcome.TRANSIENT,
            gw_http.Cause.CONNECT_TIMEOUT,
        )

    def test_a_read_timeout_is_uncertain(self):
        failure = gw_http.classify_failure(requests.exceptions.ReadTimeout("read"))
        assert (failure.outcome, failure.cause) == (Outcome.UNCERTAIN, gw_http.Cause.READ_TIMEOUT)

    def test_a_read_timeout_on_a_read_is_transient(self):
        failure = gw_http.classify_failure(requests.exceptions.ReadTimeout("read"), write=False)
        assert failure.outcome is Outcome.TRANSIENT

    def test_a_connection_dropped_after_sending_is_uncertain(self):
        error = requests.ConnectionError(
            ProtocolError("Connection aborted.", RemoteDisconnected("closed without response"))
        )
        failure = gw_http.classify_failure(error)
        assert (failure.outcome, failure.cause) == (Outcome.UNCERTAIN, gw_http.Cause.DROPPED)

    def test_a_connection_reset_after_sending_is_uncertain(self):
        error = requests.ConnectionError(
            ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
        )
        assert gw_http.classify_failure(error).outcome is Outcome.UNCERTAIN

    def test_a_refused_connection_is_transient(self):
        # A fake: no pool or connection, nothing connects.
        reason = NewConnectionError(None, "Failed to establish a new connection: refused")  # type: ignore[arg-type]
        failure = gw_http.classify_failure(_connection_error(reason))
        assert (failure.outcome, failure.cause) == (Outcome.TRANSIENT, gw_http.Cause.REFUSED)

    def test_an_unknown_host_is_transient(self):
        # A fake: no pool or connection, nothing connects.
        reason = NameResolutionError("www.xledger.net", None, socket.gaierror(-2, "not known"))  # type: ignore[arg-type]
        failure = gw_http.classify_failure(_connection_error(reason))
        assert (failure.outcome, failure.cause) == (Outcome.TRANSIENT, gw_http.Cause.UNKNOWN_HOST)

    def test_a_certificate_that_does_not_verify_is_transient(self):
        error = requests.exceptions.SSLError(
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
        )
        failure = gw_http.classify_failure(error)
        assert (failure.outcome, failure.cause) == (Outcome.TRANSIENT, gw_http.Cause.CERTIFICATE)

    def test_a_failed_tls_handshake_is_transient(self):
        error = requests.exceptions.SSLError("[SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] handshake")
        assert gw_http.classify_failure(error).outcome is Outcome.TRANSIENT

    def test_a_tls_eof_which_may_follow_the_request_is_uncertain(self):
        error = requests.exceptions.SSLError("EOF occurred in violation of protocol (_ssl.c:2427)")
        assert gw_http.classify_failure(error).outcome is Outcome.UNCERTAIN


class _OneShotServer:
    """A plain TCP server that reads one request, then misbehaves as told."""

    def __init__(self, behaviour: str) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self._behaviour = behaviour
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(5)
            self.received = conn.recv(65536)
            if self._behaviour == "slow":
                time.sleep(1.5)

    def close(self) -> None:
        self._thread.join(timeout=5)
        self.sock.close()


def _socket_session(connect_timeout: float = 5, read_timeout: float = 60) -> requests.Session:
    """A session whose gate lets plain http to 127.0.0.1 through: these tests are about
    what a socket does, against a bare TCP server (the gate has its own tests)."""
    session = gw_http.make_session(
        True,
        allowed=gw_http.AllowList.parse(["127.0.0.1:*"]),
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    session.mount("http://", gw_http._TimeoutAdapter((connect_timeout, read_timeout)))
    del session.request  # the gate's check before preparing, which refuses plain http
    return session


class TestRealSockets:
    def test_a_connection_closed_after_the_request_arrived_is_uncertain(self):
        server = _OneShotServer("drop")
        session = _socket_session(connect_timeout=2, read_timeout=5)
        try:
            with pytest.raises(requests.RequestException) as caught:
                session.post(f"http://127.0.0.1:{server.port}/graphql", json={"q": 1})
        finally:
            server.close()
        assert server.received.startswith(b"POST /graphql")
        assert gw_http.classify_failure(caught.value).outcome is Outcome.UNCERTAIN

    def test_no_answer_within_the_read_timeout_is_uncertain(self):
        server = _OneShotServer("slow")
        session = _socket_session(connect_timeout=2, read_timeout=0.3)
        try:
            with pytest.raises(requests.RequestException) as caught:
                session.post(f"http://127.0.0.1:{server.port}/graphql", json={"q": 1})
        finally:
            server.close()
        failure = gw_http.classify_failure(caught.value)
        assert (failure.outcome, failure.cause) == (Outcome.UNCERTAIN, gw_http.Cause.READ_TIMEOUT)

    def test_a_port_nobody_listens_on_is_transient(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        session = _socket_session(connect_timeout=2, read_timeout=2)
        with pytest.raises(requests.RequestException) as caught:
            session.post(f"http://127.0.0.1:{port}/graphql", json={})
        failure = gw_http.classify_failure(caught.value)
        assert (failure.outcome, failure.cause) == (Outcome.TRANSIENT, gw_http.Cause.REFUSED)

    def test_the_session_never_retries_a_write_on_its_own(self):
        session = gw_http.make_session(True, allowed=gw_http.AllowList.parse([]))
        adapter = session.get_adapter("https://x.test")
        assert isinstance(adapter, requests.adapters.HTTPAdapter)
        assert adapter.max_retries.total == 0


class TestAdminWords:
    def words(self, failure, credential="api_token") -> str:
        return str(
            gw_http.describe_failure(
                failure, erp="Xledger", host="www.xledger.net", credential=credential
            )
        )

    def test_an_unknown_host_is_named_with_what_to_check(self):
        # A fake: no pool or connection, nothing connects.
        reason = NameResolutionError("www.xledger.net", None, socket.gaierror(-2, "not known"))  # type: ignore[arg-type]
        failure = gw_http.classify_failure(_connection_error(reason))
        assert self.words(failure) == "Could not find the host www.xledger.net. Check the address."

    def test_a_refused_credential_says_what_to_check(self):
        failure = gw_http.classify_failure(status=401)
        assert self.words(failure) == (
            "The API token was refused. Check that it is correct and not revoked or expired."
        )

    def test_a_missing_permission_says_an_admin_must_grant_it(self):
        words = self.words(gw_http.classify_failure(status=403), credential="client_secret")
        assert "does not allow this operation" in words
        assert "administrator must grant" in words

    def test_a_certificate_problem_is_named(self):
        error = requests.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED")
        assert "certificate of www.xledger.net" in self.words(gw_http.classify_failure(error))

    def test_a_rate_limit_says_when_to_try_again(self):
        failure = gw_http.classify_failure(status=429, headers={"Retry-After": "30"})
        assert self.words(failure) == (
            "Xledger is limiting the number of requests. Try again in 30 seconds."
        )

    def test_redact_removes_a_secret_that_slipped_into_a_text(self):
        assert gw_http.redact("token=abcd1234 failed", ["abcd1234"]) == "token=[redacted] failed"


# =============================================================================================
# Xledger
# =============================================================================================


def xl_config(**changes) -> xl.XledgerConfig:
    fields: dict[str, Any] = {
        "graphql_url": XL_URL,
        "auth": "token",
        "api_token": XL_TOKEN,
        "cost_center_object": 3,
        "cost_center_kind_db_id": 101,
    }
    fields.update(changes)
    return xl.XledgerConfig(**fields)


def xl_oauth_config(**changes) -> xl.XledgerConfig:
    fields = {
        "auth": "oauth2",
        "api_token": "",
        "token_url": XL_TOKEN_URL,
        "client_id": "bf-client",
        "client_secret": XL_SECRET,
        "scope": "graphql",
    }
    fields.update(changes)
    return xl_config(**fields)


def edges_for(postings_: list[Posting], first_db_id: int = 500) -> dict:
    edges = []
    for n, p in enumerate(postings_):
        edges.append({"clientId": f"{p.reference}:D", "node": {"dbId": first_db_id + 2 * n}})
        edges.append({"clientId": f"{p.reference}:C", "node": {"dbId": first_db_id + 2 * n + 1}})
    return {"data": {"addGLImportItems": {"edges": edges}}}


def input_error(index: int, message: str) -> dict:
    """An input error as the sandbox gives it by default: INVALID_VALUE, its index in `path`."""
    return {
        "message": message,
        "path": ["addGLImportItems", "inputs", index],
        "extensions": {"code": "INVALID_VALUE"},
    }


def xl_page(field_name: str, nodes: list[dict], *, cursor: str = "c", more: bool = False) -> dict:
    """One Relay page as public clients read it: edges with cursors, pageInfo { hasNextPage }."""
    edges = [{"cursor": f"{cursor}-{n}", "node": node} for n, node in enumerate(nodes)]
    return {"data": {field_name: {"edges": edges, "pageInfo": {"hasNextPage": more}}}}


class TestXledgerAmounts:
    def test_an_amount_is_a_string_with_two_decimals(self):
        assert xl.format_amount(Decimal("450")) == "450.00"
        assert xl.format_amount(Decimal("450.5")) == "450.50"

    def test_a_credit_is_negative(self):
        assert xl.format_amount(-Decimal("450.00")) == "-450.00"

    def test_decimal_sums_stay_exact_where_float_sums_do_not(self):
        assert 0.1 + 0.2 != 0.3
        assert xl.format_amount(Decimal("0.1") + Decimal("0.2")) == "0.30"

    def test_a_large_amount_is_written_without_exponent_or_rounding(self):
        assert xl.format_amount(Decimal("12345678901234.56")) == "12345678901234.56"
        assert xl.format_amount(Decimal("1E+3")) == "1000.00"

    def test_an_amount_with_more_than_two_decimals_is_refused_not_rounded(self):
        with pytest.raises(ValueError):
            xl.format_amount(Decimal("450.005"))
        binary_tenth = 0.1
        with pytest.raises(ValueError):
            xl.format_amount(Decimal(binary_tenth))  # the float's binary value, not 0.1

    def test_a_float_is_refused(self):
        with pytest.raises(TypeError):
            xl.format_amount(450.0)  # type: ignore[arg-type]


class TestXledgerVoucher:
    def test_issue10_item6_a_posting_becomes_one_voucher_formed_as_xledgers_example(self):
        inputs = xl.voucher_inputs(posting(), xl_config())
        common = {
            "trRegNumber": 101,
            "currency": {"code": "NOK"},
            "postedDate": "2025-03-14",
            "invoiceDate": "2025-03-14",
            "dueDate": "2025-03-14",
            "text": "Reise Oslo-Bergen, likepersonsmøte",
            "transactionSource": {"code": "GL"},
            "jobLevel": {"dbSubId": 1},
            "extIdentifier": "VH-1-101",
            "invoiceNumber": "VH-1-101",
        }
        assert inputs == [
            {
                "clientId": "VH-1-101:D",
                "node": {
                    **common,
                    "account": {"code": "7130"},
                    "amount": "450.00",
                    "invoiceAmount": "450.00",
                    "yourReference": "V-0042",
                    "glObject3": {"code": "300"},
                },
            },
            {
                "clientId": "VH-1-101:C",
                "node": {
                    **common,
                    "account": {"code": "2910"},
                    "amount": "-450.00",
                    "invoiceAmount": "-450.00",
                },
            },
        ]
        assert sum(Decimal(i["node"]["amount"]) for i in inputs) == 0

    def test_issue10_item6_voucher_lines_share_one_trregnumber_and_a_resend_is_identical(self):
        first = xl.voucher_inputs(posting(number=20260217), xl_config())
        assert {line["node"]["trRegNumber"] for line in first} == {20260217}
        assert xl.voucher_inputs(posting(number=20260217), xl_config()) == first

    def test_issue10_item6_the_claimant_is_the_payable_lines_subledger_only_on_request(self):
        plain = xl.voucher_inputs(posting(), xl_config())
        asked = xl.voucher_inputs(posting(), xl_config(claimant_subledger=True))
        assert not any("subledger" in line["node"] for line in plain)
        assert "subledger" not in asked[0]["node"]
        assert asked[1]["node"]["subledger"] == {"code": "V-0042"}

    @pytest.mark.parametrize("number", [0, -5, 2**31])
    def test_issue10_item6_a_posting_without_a_usable_number_is_never_sent(self, mocked, number):
        [result] = xl.XledgerConnector(xl_config()).post([posting(number=number)])
        assert result.outcome is Outcome.PERMANENT
        assert "voucher number" in result.words
        assert not mocked.calls

    def test_the_cost_center_goes_to_the_configured_gl_object(self):
        inputs = xl.voucher_inputs(posting(), xl_config(cost_center_object=1))
        assert inputs[0]["node"]["glObject1"] == {"code": "300"}
        assert not any(k.startswith("glObject") for k in inputs[1]["node"])

    def test_the_transaction_source_comes_from_the_config(self):
        inputs = xl.voucher_inputs(posting(), xl_config(transaction_source="UTL"))
        assert {i["node"]["transactionSource"]["code"] for i in inputs} == {"UTL"}

    def test_a_config_with_an_impossible_gl_object_is_refused(self):
        with pytest.raises(ValueError):
            xl_config(cost_center_object=6)

    def test_the_config_repr_shows_no_secret(self):
        config = xl_oauth_config()
        assert XL_SECRET not in repr(config)
        assert XL_TOKEN not in repr(xl_config())


class TestXledgerPost:
    def test_a_batch_is_one_mutation_with_the_token_header_and_every_node(self, mocked):
        batch = [posting("VH-1-101"), posting("VH-1-102", "99.90")]
        mocked.post(XL_URL, json=edges_for(batch))
        results = xl.XledgerConnector(xl_config()).post(batch)

        assert len(mocked.calls) == 1
        request = mocked.calls[0].request
        assert request.headers["Authorization"] == f"token {XL_TOKEN}"
        body = sent_json(mocked.calls[0])
        assert "addGLImportItems(inputs: $inputs)" in body["query"]
        assert [i["clientId"] for i in body["variables"]["inputs"]] == [
            "VH-1-101:D",
            "VH-1-101:C",
            "VH-1-102:D",
            "VH-1-102:C",
        ]
        assert [i["node"]["amount"] for i in body["variables"]["inputs"]] == [
            "450.00",
            "-450.00",
            "99.90",
            "-99.90",
        ]
        assert [(r.reference, r.outcome, r.erp_id) for r in results] == [
            ("VH-1-101", Outcome.SUCCEEDED, "500"),
            ("VH-1-102", Outcome.SUCCEEDED, "502"),
        ]
        assert results[0].payload == {"inputs": body["variables"]["inputs"][:2]}
        assert results[0].response_status == 200

    def test_batch_size_keeps_a_call_within_500_nodes(self):
        assert xl.XledgerConnector.batch_size * 2 == 500

    def test_issue10_item7_a_named_posting_is_refused_and_the_others_go_again_once_absent(
        self, mocked
    ):
        batch = [posting("VH-1-101"), posting("VH-1-102"), posting("VH-1-103")]
        mocked.post(
            XL_URL,
            json={
                "data": None,
                "errors": [
                    input_error(2, "Account '7130' does not exist"),
                    input_error(3, "Account '7130' does not exist"),
                ],
            },
        )
        mocked.post(XL_URL, json=xl_page("glImportItems", []))  # nothing of the call kept
        mocked.post(XL_URL, json=xl_page("transactions", []))
        mocked.post(XL_URL, json=edges_for([batch[0], batch[2]]))
        results = xl.XledgerConnector(xl_config()).post(batch)

        assert [r.outcome for r in results] == [
            Outcome.SUCCEEDED,
            Outcome.PERMANENT,
            Outcome.SUCCEEDED,
        ]
        assert results[1].words == "Account '7130' does not exist"
        assert '"inputs", 2' in results[1].response_body
        assert sent_json(mocked.calls[1])["variables"]["refs"] == ["VH-1-101", "VH-1-103"]
        resent = sent_json(mocked.calls[3])["variables"]["inputs"]
        assert {i["clientId"].split(":")[0] for i in resent} == {"VH-1-101", "VH-1-103"}

    def test_issue10_item7_others_of_a_refused_call_that_xledger_kept_are_not_resent(self, mocked):
        batch = [posting("VH-1-101"), posting("VH-1-102")]
        mocked.post(XL_URL, json={"data": None, "errors": [input_error(0, "Period is closed")]})
        kept = [
            {"dbId": "71", "extIdentifier": "VH-1-102"},
            {"dbId": "72", "extIdentifier": "VH-1-102"},
        ]
        mocked.post(XL_URL, json=xl_page("glImportItems", kept))
        results = xl.XledgerConnector(xl_config()).post(batch)
        assert [(r.outcome, r.erp_id) for r in results] == [
            (Outcome.PERMANENT, ""),
            (Outcome.SUCCEEDED, "71"),
        ]
        assert len(mocked.calls) == 2

    def test_issue10_item7_errors_naming_no_input_make_every_posting_uncertain(self, mocked):
        errors = [
            {"message": "Account '7130' does not exist", "extensions": {"code": "INVALID_VALUE"}},
            {"message": "Something new", "path": ["addGLImportItems"], "code": "BAD_REQUEST"},
        ]
        mocked.post(XL_URL, json={"data": None, "errors": errors})
        results = xl.XledgerConnector(xl_config()).post([posting("VH-1-101"), posting("VH-1-102")])
        assert {r.outcome for r in results} == {Outcome.UNCERTAIN}
        assert len(mocked.calls) == 1

    def test_issue10_item7_half_a_voucher_kept_is_partial_and_never_succeeded(self, mocked):
        batch = [posting("VH-1-101"), posting("VH-1-102")]
        edges = edges_for(batch)["data"]["addGLImportItems"]["edges"]
        body = {"data": {"addGLImportItems": {"edges": [edges[0], edges[1], edges[3]]}}}
        mocked.post(
            XL_URL, json={**body, "errors": [input_error(2, "Object value does not exist")]}
        )
        results = xl.XledgerConnector(xl_config()).post(batch)
        assert [(r.outcome, r.partial) for r in results] == [
            (Outcome.SUCCEEDED, False),
            (Outcome.PERMANENT, True),
        ]
        assert "Xledger holds part of voucher VH-1-102" in results[1].words

    def test_issue10_item7_a_posting_found_in_part_is_refused_without_being_sent(self, mocked):
        [result] = xl.XledgerConnector(xl_config()).post([posting(existing_id="900123")])
        assert (result.outcome, result.partial) == (Outcome.PERMANENT, True)
        assert result.words.startswith(
            "Xledger holds part of voucher VH-1-101: finance must remove it in Xledger before "
            "it is sent again."
        )
        assert not mocked.calls

    def test_when_every_posting_is_invalid_nothing_is_sent_again(self, mocked):
        mocked.post(
            XL_URL,
            json={"data": None, "errors": [input_error(0, "Period is closed")]},
        )
        results = xl.XledgerConnector(xl_config()).post([posting()])
        assert results[0].outcome is Outcome.PERMANENT
        assert len(mocked.calls) == 1

    @pytest.mark.parametrize(
        ("error", "outcome", "retry_after"),
        [
            (
                {"message": "bad format for api token", "code": "UNAUTHENTICATED"},
                Outcome.AUTHENTICATION,
                None,
            ),
            (
                {
                    "message": 'Bad format for API Token. Expected header: "Authorization: '
                    'token <your-token>"'
                },
                Outcome.AUTHENTICATION,
                None,
            ),
            (
                {"message": "x", "extensions": {"code": "unauthenticated"}},
                Outcome.AUTHENTICATION,
                None,
            ),
            (
                {"message": "Burst", "code": "BAD_REQUEST.BURST_RATE_LIMIT_REACHED"},
                Outcome.RATE_LIMITED,
                5.0,
            ),
            (
                {"message": "Busy", "code": "BAD_REQUEST.CONCURRENCY_LIMIT_REACHED"},
                Outcome.RATE_LIMITED,
                5.0,
            ),
            (
                {"message": "No credits", "code": "BAD_REQUEST.INSUFFICIENT_CREDITS"},
                Outcome.RATE_LIMITED,
                1200.0,
            ),
            (
                {"message": "Cannot query field", "extensions": {"code": "GRAPHQL_VALIDATION"}},
                Outcome.UNCERTAIN,
                None,
            ),
            ({"message": "Your query timed out."}, Outcome.UNCERTAIN, None),
            (
                {"message": "Boom", "extensions": {"code": "INTERNAL_SERVER_ERROR"}},
                Outcome.UNCERTAIN,
                None,
            ),
        ],
    )
    def test_each_graphql_error_code_has_its_class(self, mocked, error, outcome, retry_after):
        mocked.post(XL_URL, json={"data": None, "errors": [error]})
        results = xl.XledgerConnector(xl_config()).post([posting(), posting("VH-1-102")])
        assert {(r.outcome, r.retry_after) for r in results} == {(outcome, retry_after)}

    @pytest.mark.parametrize(
        ("status", "outcome"),
        [(503, Outcome.TRANSIENT), (502, Outcome.UNCERTAIN), (401, Outcome.AUTHENTICATION)],
    )
    def test_http_failures_of_the_mutation_are_classified(self, mocked, status, outcome):
        mocked.post(XL_URL, body="Service Unavailable", status=status)
        results = xl.XledgerConnector(xl_config()).post([posting()])
        assert results[0].outcome is outcome
        assert results[0].response_status == status

    def test_a_read_timeout_during_the_mutation_is_uncertain(self, mocked):
        mocked.post(XL_URL, body=requests.exceptions.ReadTimeout("read timed out"))
        results = xl.XledgerConnector(xl_config()).post([posting()])
        assert results[0].outcome is Outcome.UNCERTAIN
        assert results[0].payload["inputs"][0]["clientId"] == "VH-1-101:D"

    def test_an_amount_with_three_decimals_is_refused_without_being_sent(self, mocked):
        mocked.post(XL_URL, json=edges_for([posting("VH-1-102")]))
        results = xl.XledgerConnector(xl_config()).post(
            [posting("VH-1-101", "10.005"), posting("VH-1-102")]
        )
        assert results[0].outcome is Outcome.PERMANENT
        assert "more than two decimals" in results[0].words
        assert results[1].outcome is Outcome.SUCCEEDED
        sent = sent_json(mocked.calls[0])["variables"]["inputs"]
        assert {i["clientId"] for i in sent} == {"VH-1-102:D", "VH-1-102:C"}

    def test_a_reference_twice_in_one_batch_is_refused_the_second_time(self, mocked):
        mocked.post(XL_URL, json=edges_for([posting()]))
        results = xl.XledgerConnector(xl_config()).post([posting(), posting()])
        assert [r.outcome for r in results] == [Outcome.SUCCEEDED, Outcome.PERMANENT]


class TestXledgerReading:
    def page(self, field_name: str, nodes: list[dict], *, cursor: str, more: bool) -> dict:
        return xl_page(field_name, nodes, cursor=cursor, more=more)

    def test_accounts_are_read_page_by_page_until_the_last(self, mocked):
        first = [{"dbId": 1, "code": "2910", "description": "Gjeld til ansatte"}]
        second = [{"dbId": 2, "code": "7130", "description": "Reisekostnad"}]
        mocked.post(XL_URL, json=self.page("accounts", first, cursor="p1", more=True))
        mocked.post(XL_URL, json=self.page("accounts", second, cursor="p2", more=False))
        accounts = xl.XledgerConnector(xl_config(page_size=1)).list_accounts()

        assert [(a.code, a.name) for a in accounts] == [
            ("2910", "Gjeld til ansatte"),
            ("7130", "Reisekostnad"),
        ]
        assert sent_json(mocked.calls[0])["variables"] == {"first": 1, "after": None}
        # The last edge's cursor: public clients never ask for endCursor.
        assert sent_json(mocked.calls[1])["variables"] == {"first": 1, "after": "p1-0"}
        assert "endCursor" not in sent_json(mocked.calls[0])["query"]

    def test_issue10_item5_a_page_promising_more_without_a_cursor_raises(self, mocked):
        mocked.post(XL_URL, json=self.page("glImportItems", [], cursor="x", more=True))
        with pytest.raises(ConnectorError):
            xl.XledgerConnector(xl_config()).lookup(["VH-1-101"])

    def test_cost_centers_are_the_values_of_the_configured_object_kind(self, mocked):
        values = [{"dbId": 7, "code": "300", "description": "Ledsagertjeneste"}]
        mocked.post(XL_URL, json=self.page("objectValues", values, cursor="c", more=False))
        centers = xl.XledgerConnector(xl_config()).list_cost_centers()
        assert [(c.code, c.name, c.dimension) for c in centers] == [
            ("300", "Ledsagertjeneste", "101")
        ]
        body = sent_json(mocked.calls[0])
        assert body["variables"]["kind"] == "101"
        assert "$kind: Int64String" in body["query"]

    def test_without_a_chosen_kind_test_connection_offers_the_kinds_instead(self, mocked):
        kinds = [{"dbId": 101, "name": "Avdeling"}, {"dbId": 102, "name": "Prosjekt"}]
        mocked.post(XL_URL, json=self.page("accounts", [], cursor="a", more=False))
        mocked.post(XL_URL, json=self.page("objectKinds", kinds, cursor="k", more=False))
        report = xl.XledgerConnector(xl_config(cost_center_kind_db_id=None)).test_connection()
        assert report.cost_centers == []
        assert [(d.code, d.name) for d in report.dimensions] == [
            ("101", "Avdeling"),
            ("102", "Prosjekt"),
        ]
        assert "choose the object kind" in report.detail
        assert len(mocked.calls) == 2  # no objectValues query

    def test_lookup_filters_import_items_by_reference(self, mocked):
        nodes = [
            {"dbId": 900, "extIdentifier": "VH-1-101"},
            {"dbId": 901, "extIdentifier": "VH-1-101"},
        ]
        mocked.post(XL_URL, json=self.page("glImportItems", nodes, cursor="g", more=False))
        half = [{"dbId": 700, "extIdentifier": "VH-1-102"}]
        mocked.post(XL_URL, json=self.page("transactions", half, cursor="t", more=False))
        found = xl.XledgerConnector(xl_config()).lookup(["VH-1-101", "VH-1-102", "VH-1-103"])
        assert found == {"VH-1-101": Found("900"), "VH-1-102": Found("700", complete=False)}
        body = sent_json(mocked.calls[0])
        assert "glImportItems(" in body["query"] and "extIdentifier_in: $refs" in body["query"]
        assert body["variables"]["refs"] == ["VH-1-101", "VH-1-102", "VH-1-103"]
        # Posted transactions are asked only for what the import items did not hold whole.
        body = sent_json(mocked.calls[1])
        assert "transactions(" in body["query"]
        assert body["variables"]["refs"] == ["VH-1-102", "VH-1-103"]

    def test_issue10_item8_settle_reads_posted_vouchers_then_every_lines_errors(self, mocked):
        held = {"VH-1-101": "900", "VH-1-102": "902", "VH-1-103": "904"}
        posted = [
            {"dbId": "71", "extIdentifier": "VH-1-101"},
            {"dbId": "70", "extIdentifier": "VH-1-101"},
        ]
        waiting = [
            {"dbId": "902", "extIdentifier": "VH-1-102"},
            {"dbId": "903", "extIdentifier": "VH-1-102"},
            {"dbId": "904", "extIdentifier": "VH-1-103"},
            {"dbId": "905", "extIdentifier": "VH-1-103"},
        ]
        errors = [
            # Only the credit line is named: the voucher is refused all the same.
            {"transactionDbId": "903", "errorLevel": "Error", "message": "Period is closed"},
            {"transactionDbId": "905", "errorLevel": "Warning", "message": "Long text"},
        ]
        mocked.post(XL_URL, json=self.page("transactions", posted, cursor="t", more=False))
        mocked.post(XL_URL, json=self.page("glImportItems", waiting, cursor="g", more=False))
        mocked.post(XL_URL, json=self.page("glImportItemErrors", errors, cursor="e", more=False))
        settled = xl.XledgerConnector(xl_config()).settle(held)

        assert {r: (s.state, s.erp_id, s.message) for r, s in settled.items()} == {
            "VH-1-101": (Settlement.POSTED, "70", ""),
            "VH-1-102": (Settlement.REJECTED, "902", "Period is closed"),
            "VH-1-103": (Settlement.WAITING, "", ""),
        }
        assert settled["VH-1-103"] == Settled(Settlement.WAITING)
        assert sent_json(mocked.calls[1])["variables"]["refs"] == ["VH-1-102", "VH-1-103"]
        error_query = sent_json(mocked.calls[2])
        assert "$ids: [Int64String!]" in error_query["query"]
        assert sorted(error_query["variables"]["ids"]) == ["902", "903", "904", "905"]

    def test_issue10_item8_settle_that_cannot_be_answered_raises(self, mocked):
        mocked.post(
            XL_URL,
            json={"errors": [{"message": "Field 'extIdentifier_in' is not defined by type 'X'."}]},
        )
        with pytest.raises(ConnectorError) as caught:
            xl.XledgerConnector(xl_config()).settle({"VH-1-101": "900"})
        assert "extIdentifier_in" in caught.value.message

    def test_a_refused_token_makes_test_connection_fail_in_plain_words(self, mocked):
        mocked.post(
            XL_URL,
            json={
                "data": None,
                "errors": [{"message": "bad format for api token", "code": "UNAUTHENTICATED"}],
            },
        )
        with pytest.raises(ConnectorError) as caught:
            xl.XledgerConnector(xl_config()).test_connection()
        assert caught.value.outcome is Outcome.AUTHENTICATION
        assert str(caught.value.note) == (
            "The API token was refused. Check that it is correct and not revoked."
        )
        assert XL_TOKEN not in str(caught.value)

    def test_issue10_item7_no_credits_left_waits_until_reset_at_and_says_so(self, mocked):
        reset_at = datetime.now(UTC).timestamp() + 600
        error = {
            "message": "x",
            "code": "BAD_REQUEST.INSUFFICIENT_CREDITS",
            "extensions": {"resetAt": datetime.fromtimestamp(reset_at, UTC).isoformat()},
        }
        mocked.post(XL_URL, json={"errors": [error]})
        with pytest.raises(ConnectorError) as caught:
            xl.XledgerConnector(xl_config()).list_accounts()
        assert caught.value.outcome is Outcome.RATE_LIMITED
        assert caught.value.retry_after is not None
        assert 590 <= caught.value.retry_after <= 600
        assert "API credits" in caught.value.message
        assert "in about 10 minutes" in caught.value.message

    def test_a_lookup_that_cannot_be_answered_raises(self, mocked):
        mocked.post(XL_URL, body="Service Unavailable", status=503)
        with pytest.raises(ConnectorError) as caught:
            xl.XledgerConnector(xl_config()).lookup(["VH-1-101"])
        assert caught.value.outcome is Outcome.TRANSIENT


class TestXledgerOAuth2:
    def token_answer(self, token: str = "access-1", expires_in: int = 3600) -> dict:
        return {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}

    def test_the_token_is_fetched_once_and_reused_across_connectors(self, mocked):
        mocked.post(XL_TOKEN_URL, json=self.token_answer())
        mocked.post(XL_URL, json=edges_for([posting()]))
        xl.XledgerConnector(xl_oauth_config()).post([posting()])
        xl.XledgerConnector(xl_oauth_config()).post([posting()])

        token_calls = [c for c in mocked.calls if c.request.url == XL_TOKEN_URL]
        api_calls = [c for c in mocked.calls if c.request.url == XL_URL]
        assert len(token_calls) == 1
        assert {c.request.headers["Authorization"] for c in api_calls} == {"Bearer access-1"}

    def test_the_token_request_is_client_credentials_with_basic_auth(self, mocked):
        mocked.post(XL_TOKEN_URL, json=self.token_answer())
        mocked.post(XL_URL, json=edges_for([posting()]))
        xl.XledgerConnector(xl_oauth_config()).post([posting()])
        request = mocked.calls[0].request
        form = parse_qs(request.body)
        assert form["grant_type"] == ["client_credentials"]
        assert form["scope"] == ["graphql"]
        assert request.headers["Authorization"].startswith("Basic ")

    def test_a_token_with_under_five_minutes_left_is_fetched_again(self, mocked):
        mocked.post(XL_TOKEN_URL, json=self.token_answer("short-1", expires_in=200))
        mocked.post(XL_TOKEN_URL, json=self.token_answer("short-2", expires_in=200))
        mocked.post(XL_URL, json=edges_for([posting()]))
        connector = xl.XledgerConnector(xl_oauth_config())
        connector.post([posting()])
        connector.post([posting()])
        api_calls = [c for c in mocked.calls if c.request.url == XL_URL]
        assert [c.request.headers["Authorization"] for c in api_calls] == [
            "Bearer short-1",
            "Bearer short-2",
        ]

    def test_another_secret_gets_its_own_token(self, mocked):
        mocked.post(XL_TOKEN_URL, json=self.token_answer("for-secret-1"))
        mocked.post(XL_TOKEN_URL, json=self.token_answer("for-secret-2"))
        mocked.post(XL_URL, json=edges_for([posting()]))
        xl.XledgerConnector(xl_oauth_config()).post([posting()])
        xl.XledgerConnector(xl_oauth_config(client_secret="another-secret")).post([posting()])
        api_calls = [c for c in mocked.calls if c.request.url == XL_URL]
        assert [c.request.headers["Authorization"] for c in api_calls] == [
            "Bearer for-secret-1",
            "Bearer for-secret-2",
        ]

    def test_the_cache_key_holds_a_digest_not_the_secret(self, mocked):
        mocked.post(XL_TOKEN_URL, json=self.token_answer())
        mocked.post(XL_URL, json=edges_for([posting()]))
        xl.XledgerConnector(xl_oauth_config()).post([posting()])
        assert XL_SECRET not in repr(list(xl._tokens))

    def test_a_refused_bearer_token_is_fetched_again_once(self, mocked):
        mocked.post(XL_TOKEN_URL, json=self.token_answer("old"))
        mocked.post(XL_TOKEN_URL, json=self.token_answer("new"))
        mocked.post(XL_URL, json={"errors": [{"message": "invalid or expired"}]}, status=401)
        mocked.post(XL_URL, json=edges_for([posting()]))
        results = xl.XledgerConnector(xl_oauth_config()).post([posting()])
        assert results[0].outcome is Outcome.SUCCEEDED
        api_calls = [c for c in mocked.calls if c.request.url == XL_URL]
        assert [c.request.headers["Authorization"] for c in api_calls] == [
            "Bearer old",
            "Bearer new",
        ]

    def test_a_refused_client_is_an_authentication_failure_without_the_secret(self, mocked):
        mocked.post(
            XL_TOKEN_URL,
            json={"error": "invalid_client", "error_description": "Client authentication failed"},
            status=401,
        )
        connector = xl.XledgerConnector(xl_oauth_config())
        results = connector.post([posting()])
        assert results[0].outcome is Outcome.AUTHENTICATION
        assert XL_SECRET not in results[0].words
        with pytest.raises(ConnectorError) as caught:
            connector.test_connection()
        assert caught.value.outcome is Outcome.AUTHENTICATION
        assert "client secret was refused" in caught.value.message
        assert XL_SECRET not in caught.value.message

    def test_a_token_endpoint_that_is_down_is_transient(self, mocked):
        mocked.post(XL_TOKEN_URL, body="Service Unavailable", status=503)
        results = xl.XledgerConnector(xl_oauth_config()).post([posting()])
        assert results[0].outcome is Outcome.TRANSIENT
        assert not [c for c in mocked.calls if c.request.url == XL_URL]


# =============================================================================================
# Business Central
# =============================================================================================


def bc_config(**changes) -> bc.BusinessCentralConfig:
    fields: dict[str, Any] = {
        "api_base_url": API_HOST,
        "authority_host": AUTHORITY_HOST,
        "tenant_id": TENANT,
        "environment": "production",
        "company_id": COMPANY,
        "client_id": "client-1",
        "client_secret": BC_SECRET,
        "journal_code": "UTLEGG",
        "cost_center_dimension": "AVDELING",
    }
    fields.update(changes)
    return bc.BusinessCentralConfig(**fields)


def openid_configuration(tenant: str = TENANT) -> dict:
    base = f"{AUTHORITY_HOST}/{tenant}"
    return {
        "issuer": f"{base}/v2.0",
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
        "jwks_uri": f"{base}/discovery/v2.0/keys",
        "response_types_supported": ["code", "token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
    }


@pytest.fixture
def entra(mocked):
    """Microsoft Entra ID: discovery and a token endpoint that accepts BC_SECRET."""
    mocked.get(
        f"{AUTHORITY_HOST}/{TENANT}/v2.0/.well-known/openid-configuration",
        json=openid_configuration(),
    )
    mocked.post(
        TOKEN_ENDPOINT,
        json={"token_type": "Bearer", "expires_in": 3599, "access_token": BC_ACCESS_TOKEN},
    )
    return mocked


def journal_lookup(mocked) -> None:
    mocked.get(
        f"{API}/companies({COMPANY})/journals",
        json={"value": [{"id": JOURNAL_ID, "code": "UTLEGG", "displayName": "Utlegg"}]},
    )


def batch_calls(mocked) -> list:
    return [c for c in mocked.calls if c.request.url == f"{API}/$batch"]


def created(op_id: str, body: dict | None = None) -> dict:
    return {"id": op_id, "status": 201, "headers": {}, "body": body or {"id": f"line-{op_id}"}}


class TestBusinessCentralAmounts:
    def test_an_amount_becomes_the_same_json_number(self):
        assert bc.amount_number(Decimal("450.00")) == 450.0
        assert json.dumps(bc.amount_number(Decimal("0.1") + Decimal("0.2"))) == "0.3"

    def test_thirteen_digits_and_two_decimals_still_convert_exactly(self):
        assert Decimal(repr(bc.amount_number(Decimal("1234567890123.45")))) == Decimal(
            "1234567890123.45"
        )

    def test_more_than_fifteen_significant_digits_are_refused(self):
        with pytest.raises(ValueError):
            bc.amount_number(Decimal("12345678901234567.89"))

    def test_a_float_value_in_a_decimal_is_refused(self):
        binary_tenth = 0.1
        with pytest.raises(ValueError):
            bc.amount_number(Decimal(binary_tenth))


class TestBusinessCentralOData:
    def test_single_quotes_in_a_string_literal_are_doubled(self):
        assert bc.odata_string("VH-1-101") == "'VH-1-101'"
        assert bc.odata_string("O'Brien's") == "'O''Brien''s'"

    def test_a_filter_is_percent_encoded_with_spaces_as_percent_20(self):
        query = bc.odata_filter_query("code eq 'A B'")
        assert query == "$filter=code%20eq%20'A%20B'"
        assert unquote(query) == "$filter=code eq 'A B'"


class TestBusinessCentralMsal:
    def test_the_same_credentials_share_one_application_object(self, entra):
        assert bc.msal_app(bc_config()) is bc.msal_app(bc_config())

    def test_another_secret_gets_another_application_object(self, entra):
        assert bc.msal_app(bc_config()) is not bc.msal_app(bc_config(client_secret="other"))

    def test_the_cache_key_holds_a_digest_not_the_secret(self, entra):
        bc.msal_app(bc_config())
        assert BC_SECRET not in repr(list(bc._apps))

    def test_the_token_is_fetched_once_for_many_calls(self, entra):
        journal_lookup(entra)
        entra.post(f"{API}/$batch", json={"responses": [created("1"), created("2")]})
        connector = bc.BusinessCentralConnector(bc_config())
        connector.post([posting(cost_center="0300")])
        bc.BusinessCentralConnector(bc_config()).post([posting(cost_center="0300")])
        assert len([c for c in entra.calls if c.request.url == TOKEN_ENDPOINT]) == 1
        api_calls = [c for c in entra.calls if c.request.url.startswith(API)]
        assert {c.request.headers["Authorization"] for c in api_calls} == {
            f"Bearer {BC_ACCESS_TOKEN}"
        }

    def test_no_instance_discovery_call_goes_to_microsoft(self, entra):
        bc.msal_app(bc_config())
        assert all(c.request.url.startswith(AUTHORITY_HOST) for c in entra.calls)

    @pytest.mark.parametrize(
        ("code", "words"),
        [
            ("7000215", "client secret is wrong"),
            ("7000222", "client secret has expired"),
            ("700016", "No application with this client ID"),
            ("90002", "tenant was not found"),
        ],
    )
    def test_entra_refusals_are_explained_in_plain_words(self, mocked, code, words):
        mocked.get(
            f"{AUTHORITY_HOST}/{TENANT}/v2.0/.well-known/openid-configuration",
            json=openid_configuration(),
        )
        mocked.post(
            TOKEN_ENDPOINT,
            json={
                "error": "invalid_client",
                "error_description": f"AADSTS{code}: something. Trace ID: x",
                "error_codes": [int(code)],
            },
            status=401,
        )
        with pytest.raises(ConnectorError) as caught:
            bc.BusinessCentralConnector(bc_config()).test_connection()
        assert caught.value.outcome is Outcome.AUTHENTICATION
        assert words in caught.value.message
        assert f"AADSTS{code}" in caught.value.message
        assert BC_SECRET not in caught.value.message

    def test_an_unknown_tenant_is_explained_in_plain_words(self, mocked):
        mocked.get(
            f"{AUTHORITY_HOST}/{TENANT}/v2.0/.well-known/openid-configuration",
            json={"error": "invalid_tenant", "error_description": "AADSTS90002: Tenant not found"},
            status=400,
        )
        with pytest.raises(ConnectorError) as caught:
            bc.BusinessCentralConnector(bc_config()).list_accounts()
        assert caught.value.outcome is Outcome.AUTHENTICATION
        assert "tenant was not found" in caught.value.message
        assert bc._apps == {}  # a failed application object is not kept

    def test_a_sign_in_service_that_is_down_is_transient_and_does_not_raise(self, mocked):
        mocked.get(
            f"{AUTHORITY_HOST}/{TENANT}/v2.0/.well-known/openid-configuration",
            body="Bad Gateway",
            status=502,
        )
        results = bc.BusinessCentralConnector(bc_config()).post([posting()])
        assert results[0].outcome is Outcome.TRANSIENT
        with pytest.raises(ConnectorError) as caught:
            bc.BusinessCentralConnector(bc_config()).list_journals()
        assert caught.value.outcome is Outcome.TRANSIENT

    def test_a_refused_access_token_is_dropped_and_fetched_again_once(self, entra):
        entra.post(
            TOKEN_ENDPOINT,
            json={"token_type": "Bearer", "expires_in": 3599, "access_token": "second-token"},
        )
        entra.get(
            f"{API}/companies({COMPANY})/journals",
            json={"error": {"code": "Authentication_InvalidCredentials", "message": "no"}},
            status=401,
        )
        journal_lookup(entra)
        journals = bc.BusinessCentralConnector(bc_config()).list_journals()
        assert [j.code for j in journals] == ["UTLEGG"]
        api_calls = [c for c in entra.calls if c.request.url.startswith(API)]
        assert [c.request.headers["Authorization"] for c in api_calls] == [
            f"Bearer {BC_ACCESS_TOKEN}",
            "Bearer second-token",
        ]


class TestBusinessCentralEntraApplications:
    @pytest.mark.parametrize("status", [401, 403])
    def test_issue10_item4_a_refusal_after_a_fresh_token_names_the_entra_applications_page(
        self, entra, status
    ):
        entra.get(
            f"{API}/companies",
            json={"error": {"code": "Authentication_InvalidCredentials", "message": "no"}},
            status=status,
        )
        with pytest.raises(ConnectorError) as caught:
            bc.BusinessCentralConnector(bc_config()).test_connection()
        message = caught.value.message
        assert caught.value.outcome is Outcome.AUTHENTICATION
        assert '"Microsoft Entra Applications"' in message
        assert "client ID client-1" in message
        assert "permission sets" in message
        if status == 401:
            assert "Microsoft Entra ID issued a token, but Business Central refused it" in message
            assert "Enabled" in message
        # Two tokens: the cached one, then a fresh one, both refused.
        assert len([c for c in entra.calls if c.request.url == TOKEN_ENDPOINT]) == 2
        assert len([c for c in entra.calls if c.request.url == f"{API}/companies"]) == 2

    def test_issue10_item4_a_refused_token_request_keeps_its_aadsts_words(self, mocked):
        mocked.get(
            f"{AUTHORITY_HOST}/{TENANT}/v2.0/.well-known/openid-configuration",
            json=openid_configuration(),
        )
        mocked.post(
            TOKEN_ENDPOINT,
            json={"error": "invalid_client", "error_description": "AADSTS7000215: wrong"},
            status=401,
        )
        with pytest.raises(ConnectorError) as caught:
            bc.BusinessCentralConnector(bc_config()).test_connection()
        assert "AADSTS7000215" in caught.value.message
        assert "Microsoft Entra Applications" not in caught.value.message


class TestBusinessCentralSettle:
    def test_settle_answers_posted_for_every_reference_without_a_call(self, mocked):
        settled = bc.BusinessCentralConnector(bc_config()).settle({"VH-1-101": "line-1"})
        assert settled == {"VH-1-101": Settled(Settlement.POSTED, erp_id="line-1")}
        assert len(mocked.calls) == 0


class TestBusinessCentralPost:
    def test_issue10_item1_lines_go_in_a_snapshot_batch_then_dimensions_on_the_returned_ids(
        self, entra
    ):
        journal_lookup(entra)
        entra.post(f"{API}/$batch", json={"responses": [created("1", {"id": "line-guid-1"})]})
        entra.post(f"{API}/$batch", json={"responses": [created("1", {"id": "dim-1"})]})
        results = bc.BusinessCentralConnector(bc_config()).post([posting(cost_center="0300")])

        lines_call, dimensions_call = batch_calls(entra)
        assert lines_call.request.headers["Isolation"] == "snapshot"
        assert "Prefer" not in lines_call.request.headers
        assert lines_call.request.headers["Content-Type"] == "application/json"
        line_operation = {
            "method": "POST",
            "id": "1",
            "url": f"companies({COMPANY})/journals({JOURNAL_ID})/journalLines",
            "headers": {"Content-Type": "application/json"},
            "body": {
                "accountType": "G/L Account",
                "accountNumber": "7130",
                "postingDate": "2025-03-14",
                "documentNumber": "VH-1-101",
                "externalDocumentNumber": "VH-1-101",
                "amount": 450.0,
                "description": "Reise Oslo-Bergen, likepersonsmøte",
                "comment": "Kari Nordmann (V-0042)",
                "balanceAccountType": "G/L Account",
                "balancingAccountNumber": "2910",
            },
        }
        assert sent_json(lines_call) == {"requests": [line_operation]}
        # Each dimension stands alone (no snapshot), on the id the line's 201 returned.
        assert "Isolation" not in dimensions_call.request.headers
        assert dimensions_call.request.headers["Prefer"] == "odata.continue-on-error"
        dimension_operation = {
            "method": "POST",
            "id": "1",
            "url": f"companies({COMPANY})/journalLines(line-guid-1)/dimensionSetLines",
            "headers": {"Content-Type": "application/json"},
            "body": {"code": "AVDELING", "valueCode": "0300"},
        }
        assert sent_json(dimensions_call) == {"requests": [dimension_operation]}
        assert "$" not in json.dumps(sent_json(lines_call)["requests"][0]["url"])
        assert results[0].outcome is Outcome.SUCCEEDED
        assert results[0].erp_id == "line-guid-1"
        assert not results[0].partial
        assert results[0].payload == {"requests": [line_operation, dimension_operation]}

    def test_the_journal_is_found_by_code_once_per_connector(self, entra):
        journal_lookup(entra)
        entra.post(f"{API}/$batch", json={"responses": [created("1"), created("2")]})
        connector = bc.BusinessCentralConnector(bc_config())
        connector.post([posting(cost_center="0300")])
        connector.post([posting(cost_center="0300")])
        journal_calls = [c for c in entra.calls if "/journals?" in c.request.url]
        assert len(journal_calls) == 1
        assert unquote(journal_calls[0].request.url).endswith("$filter=code eq 'UTLEGG'")

    def test_issue10_item4_the_journal_code_is_asked_for_upper_cased(self, entra):
        journal_lookup(entra)
        entra.post(f"{API}/$batch", json={"responses": [created("1")]})
        bc.BusinessCentralConnector(bc_config(journal_code="utlegg")).post([posting()])
        [call] = [c for c in entra.calls if "/journals?" in c.request.url]
        assert unquote(call.request.url).endswith("$filter=code eq 'UTLEGG'")

    def test_long_texts_are_cut_to_the_field_limits(self, entra):
        journal_lookup(entra)
        entra.post(f"{API}/$batch", json={"responses": [created("1"), created("2")]})
        long = posting(description="d" * 150, claimant_name="n" * 300)
        bc.BusinessCentralConnector(bc_config()).post([long])
        line = sent_json(batch_calls(entra)[0])["requests"][0]["body"]
        assert len(line["description"]) == 100
        assert len(line["comment"]) == 250

    def test_batch_size_keeps_a_batch_within_100_operations(self):
        # One operation per posting in each batch: 100 postings, 100 operations.
        assert bc.BusinessCentralConnector.batch_size == 100
        assert bc.BusinessCentralConnector.settles_later is False

    def test_a_foreign_currency_is_refused_without_being_sent(self, entra):
        results = bc.BusinessCentralConnector(bc_config()).post([posting(currency="EUR")])
        assert results[0].outcome is Outcome.PERMANENT
        assert "local currency" in results[0].words
        assert not [c for c in entra.calls if c.request.url.startswith(API)]

    def test_a_reference_too_long_for_a_document_number_is_refused_without_being_sent(self, entra):
        results = bc.BusinessCentralConnector(bc_config()).post(
            [posting("VH-blindeforbundet-123456")]
        )
        assert results[0].outcome is Outcome.PERMANENT
        assert "longer than the 20 characters" in results[0].words
        assert not [c for c in entra.calls if c.request.url.startswith(API)]

    def test_the_comment_names_the_claimant_and_their_reference(self):
        assert bc.journal_line_body(posting())["comment"] == "Kari Nordmann (V-0042)"
        assert bc.journal_line_body(posting(claimant_reference=""))["comment"] == "Kari Nordmann"

    def test_issue10_item2_a_failed_snapshot_batch_is_read_as_business_central_answers(self, entra):
        journal_lookup(entra)
        refusal = {
            "error": {
                "code": "Application_DialogException",
                "message": 'The "accountNumber" does not match to an Account.  CorrelationId: 1.',
            }
        }
        # Before the failure: 201 although rolled back. The failure. After it: absent.
        entra.post(
            f"{API}/$batch",
            json={
                "responses": [
                    created("1", {"id": "rolled-back-a"}),
                    {"id": "2", "status": 400, "body": refusal},
                ]
            },
        )
        entra.post(
            f"{API}/$batch",
            json={"responses": [created("1", {"id": "line-a"}), created("3", {"id": "line-c"})]},
        )
        entra.post(f"{API}/$batch", json={"responses": [created("1"), created("3")]})
        batch = [
            posting("VH-1-101", cost_center="0300"),
            posting("VH-1-102", cost_center="0300", expense_account="9999"),
            posting("VH-1-103", cost_center="0300"),
        ]
        results = bc.BusinessCentralConnector(bc_config()).post(batch)

        assert [(r.outcome, r.erp_id) for r in results] == [
            (Outcome.SUCCEEDED, "line-a"),
            (Outcome.PERMANENT, ""),
            (Outcome.SUCCEEDED, "line-c"),
        ]
        assert results[1].words.startswith('The "accountNumber" does not match to an Account.')
        assert results[1].response_status == 400
        first, resent, dimensions = batch_calls(entra)
        assert [op["id"] for op in sent_json(first)["requests"]] == ["1", "2", "3"]
        assert [op["id"] for op in sent_json(resent)["requests"]] == ["1", "3"]
        assert resent.request.headers["Isolation"] == "snapshot"
        # The rolled-back line's id is never used; the resent batch's ids are.
        assert [op["url"] for op in sent_json(dimensions)["requests"]] == [
            f"companies({COMPANY})/journalLines(line-a)/dimensionSetLines",
            f"companies({COMPANY})/journalLines(line-c)/dimensionSetLines",
        ]

    def test_issue10_item2_an_answer_that_leaves_lines_out_and_names_no_failure_is_uncertain(
        self, entra
    ):
        journal_lookup(entra)
        entra.post(f"{API}/$batch", json={"responses": [created("1")]})
        results = bc.BusinessCentralConnector(bc_config()).post(
            [posting("VH-1-101"), posting("VH-1-102")]
        )
        assert [r.outcome for r in results] == [Outcome.UNCERTAIN] * 2
        assert len(batch_calls(entra)) == 1  # no dimension for a line that may not exist

    def test_issue10_item1_a_transient_dimension_failure_is_partial_in_plain_words(self, entra):
        journal_lookup(entra)
        entra.post(f"{API}/$batch", json={"responses": [created("1", {"id": "line-1"})]})
        busy = {"error": {"code": "Internal_ServiceUnavailable", "message": "busy"}}
        entra.post(
            f"{API}/$batch",
            json={"responses": [{"id": "1", "status": 503, "headers": {}, "body": busy}]},
        )
        [result] = bc.BusinessCentralConnector(bc_config()).post([posting(cost_center="0300")])
        assert (result.outcome, result.partial, result.erp_id) == (Outcome.TRANSIENT, True, "")
        assert result.words.startswith("The journal line line-1 exists in Business Central")
        assert "will be added to that line on the next attempt" in result.words
        assert len(batch_calls(entra)) == 2  # nothing deleted: the line is completed later

    def test_issue10_item1_a_dimension_left_out_of_the_answer_is_uncertain_and_partial(self, entra):
        journal_lookup(entra)
        entra.post(f"{API}/$batch", json={"responses": [created("1", {"id": "line-1"})]})
        entra.post(f"{API}/$batch", json={"responses": []})
        [result] = bc.BusinessCentralConnector(bc_config()).post([posting(cost_center="0300")])
        assert (result.outcome, result.partial) == (Outcome.UNCERTAIN, True)

    def test_issue10_item1_a_refused_dimension_deletes_the_line_just_created(self, entra):
        journal_lookup(entra)
        entra.post(f"{API}/$batch", json={"responses": [created("1", {"id": "line-1"})]})
        refusal = {
            "error": {
                "code": "Application_DialogException",
                "message": "The dimension value 7777 for dimension AVDELING does not exist.",
            }
        }
        entra.post(
            f"{API}/$batch", json={"responses": [{"id": "1", "status": 400, "body": refusal}]}
        )
        entra.post(f"{API}/$batch", json={"responses": [{"id": "1", "status": 204}]})
        [result] = bc.BusinessCentralConnector(bc_config()).post([posting(cost_center="7777")])
        assert (result.outcome, result.partial) == (Outcome.PERMANENT, False)
        assert result.words == "The dimension value 7777 for dimension AVDELING does not exist."
        delete = sent_json(batch_calls(entra)[2])["requests"]
        assert delete == [
            {
                "method": "DELETE",
                "id": "1",
                "url": f"companies({COMPANY})/journals({JOURNAL_ID})/journalLines(line-1)",
                "headers": {"If-Match": "*"},  # required by dynamics_journalline_delete
            }
        ]
        assert [op["method"] for op in result.payload["requests"]] == ["POST", "POST", "DELETE"]

    def test_issue10_item1_a_line_that_could_not_be_deleted_is_partial(self, entra):
        journal_lookup(entra)
        entra.post(f"{API}/$batch", json={"responses": [created("1", {"id": "line-1"})]})
        refusal = {"error": {"code": "Application_DialogException", "message": "No such value."}}
        entra.post(
            f"{API}/$batch", json={"responses": [{"id": "1", "status": 400, "body": refusal}]}
        )
        entra.post(f"{API}/$batch", json={"error": {"message": "busy"}}, status=503)
        [result] = bc.BusinessCentralConnector(bc_config()).post([posting(cost_center="7777")])
        assert (result.outcome, result.partial) == (Outcome.TRANSIENT, True)
        assert "No such value." in result.words
        assert "The journal line line-1 exists without it and could not be removed" in (
            result.words
        )

    def test_issue10_item1_an_existing_line_gets_only_its_dimension(self, entra):
        journal_lookup(entra)
        entra.post(
            f"{API}/$batch",
            json={"responses": [{"id": "1", "status": 200, "body": {"value": []}}]},
        )
        entra.post(f"{API}/$batch", json={"responses": [created("1", {"id": "dim-1"})]})
        held = posting(cost_center="0300", existing_id="line-9")
        [result] = bc.BusinessCentralConnector(bc_config()).post([held])
        assert (result.outcome, result.erp_id) == (Outcome.SUCCEEDED, "line-9")
        read, add = batch_calls(entra)
        assert sent_json(read)["requests"] == [
            {
                "method": "GET",
                "id": "1",
                "url": f"companies({COMPANY})/journalLines(line-9)/dimensionSetLines",
            }
        ]
        assert [(op["method"], op["url"]) for op in sent_json(add)["requests"]] == [
            ("POST", f"companies({COMPANY})/journalLines(line-9)/dimensionSetLines")
        ]
        assert not [
            op
            for c in batch_calls(entra)
            for op in sent_json(c)["requests"]
            if op["url"].endswith("/journalLines")
        ]

    def test_issue10_item1_an_existing_line_that_has_its_dimension_is_succeeded(self, entra):
        journal_lookup(entra)
        present = {"value": [{"code": "avdeling", "valueCode": "0300"}]}
        entra.post(
            f"{API}/$batch", json={"responses": [{"id": "1", "status": 200, "body": present}]}
        )
        held = posting(cost_center="0300", existing_id="line-9")
        [result] = bc.BusinessCentralConnector(bc_config()).post([held])
        assert (result.outcome, result.erp_id) == (Outcome.SUCCEEDED, "line-9")
        assert len(batch_calls(entra)) == 1

    def test_issue10_item1_an_existing_line_without_a_cost_center_needs_no_call(self, entra):
        journal_lookup(entra)
        held = posting(cost_center="", existing_id="line-9")
        [result] = bc.BusinessCentralConnector(bc_config()).post([held])
        assert (result.outcome, result.erp_id) == (Outcome.SUCCEEDED, "line-9")
        assert batch_calls(entra) == []

    def test_a_rate_limited_item_inside_the_batch_holds_back_everyone_as_not_sent(self, entra):
        journal_lookup(entra)
        entra.post(
            f"{API}/$batch",
            json={
                "responses": [
                    {"id": "1", "status": 429, "headers": {"Retry-After": "4"}, "body": {}},
                    {"id": "2", "status": 424, "body": {}},
                ]
            },
        )
        results = bc.BusinessCentralConnector(bc_config()).post([posting(cost_center="0300")])
        assert (results[0].outcome, results[0].retry_after) == (Outcome.RATE_LIMITED, 4.0)

    @pytest.mark.parametrize(
        ("status", "headers", "outcome", "retry_after"),
        [
            (429, {"Retry-After": "7"}, Outcome.RATE_LIMITED, 7.0),
            (503, {"Retry-After": "2"}, Outcome.TRANSIENT, 2.0),
            (500, {}, Outcome.TRANSIENT, None),
            (504, {}, Outcome.UNCERTAIN, None),
            (403, {}, Outcome.AUTHENTICATION, None),
        ],
    )
    def test_a_failed_batch_gives_every_posting_the_same_class(
        self, entra, status, headers, outcome, retry_after
    ):
        journal_lookup(entra)
        entra.post(
            f"{API}/$batch",
            json={"error": {"code": "X", "message": "no"}},
            status=status,
            headers=headers,
        )
        results = bc.BusinessCentralConnector(bc_config()).post(
            [posting("VH-1-101"), posting("VH-1-102")]
        )
        assert {(r.outcome, r.retry_after) for r in results} == {(outcome, retry_after)}

    def test_a_connection_dropped_after_the_batch_was_sent_is_uncertain(self, entra):
        journal_lookup(entra)
        entra.post(
            f"{API}/$batch",
            body=requests.ConnectionError(
                ProtocolError("Connection aborted.", RemoteDisconnected("no answer"))
            ),
        )
        results = bc.BusinessCentralConnector(bc_config()).post([posting()])
        assert results[0].outcome is Outcome.UNCERTAIN

    def test_a_journal_that_does_not_exist_refuses_every_posting_with_its_name(self, entra):
        entra.get(f"{API}/companies({COMPANY})/journals", json={"value": []})
        results = bc.BusinessCentralConnector(bc_config()).post([posting()])
        assert results[0].outcome is Outcome.PERMANENT
        assert "journal UTLEGG does not exist" in results[0].words


class TestBusinessCentralReading:
    def test_master_data_follows_next_links_and_asks_for_the_page_size(self, entra):
        url = f"{API}/companies({COMPANY})/accounts"
        entra.get(
            url,
            json={
                "value": [
                    {
                        "number": "2910",
                        "displayName": "Gjeld",
                        "accountType": "Posting",
                        "blocked": False,
                    }
                ],
                "@odata.nextLink": f"{url}?$skiptoken=abc",
            },
        )
        entra.get(
            f"{url}?$skiptoken=abc",
            json={
                "value": [
                    {
                        "number": "7130",
                        "displayName": "Reise",
                        "accountType": "Posting",
                        "directPosting": True,
                    }
                ]
            },
        )
        accounts = bc.BusinessCentralConnector(bc_config(page_size=1)).list_accounts()
        assert [a.code for a in accounts] == ["2910", "7130"]
        account_calls = [c for c in entra.calls if "/accounts" in c.request.url]
        assert {c.request.headers["Prefer"] for c in account_calls} == {"odata.maxpagesize=1"}

    def test_blocked_accounts_and_accounts_closed_to_direct_posting_are_not_offered(self, entra):
        entra.get(
            f"{API}/companies({COMPANY})/accounts",
            json={
                "value": [
                    {
                        "number": "1950",
                        "accountType": "Posting",
                        "blocked": True,
                        "directPosting": True,
                    },
                    {
                        "number": "2400",
                        "accountType": "Posting",
                        "blocked": False,
                        "directPosting": False,
                    },
                    {
                        "number": "2910",
                        "accountType": "Posting",
                        "blocked": False,
                        "directPosting": True,
                    },
                ]
            },
        )
        accounts = bc.BusinessCentralConnector(bc_config()).list_accounts()
        assert [a.code for a in accounts] == ["2910"]

    def test_issue10_item3_only_posting_accounts_are_offered(self, entra):
        kinds = ["Posting", "Heading", "Total", "Begin-Total", "End-Total", "Begin_x002D_Total"]
        entra.get(
            f"{API}/companies({COMPANY})/accounts",
            json={
                "value": [
                    {"number": str(n), "accountType": kind, "blocked": False}
                    for n, kind in enumerate(kinds)
                ]
            },
        )
        accounts = bc.BusinessCentralConnector(bc_config()).list_accounts()
        assert [a.code for a in accounts] == ["0"]

    def test_a_next_link_to_another_host_is_not_followed(self, entra):
        entra.get(
            f"{API}/companies({COMPANY})/journals",
            json={"value": [], "@odata.nextLink": "https://evil.example.test/steal"},
        )
        with pytest.raises(ConnectorError):
            bc.BusinessCentralConnector(bc_config()).list_journals()
        assert not [c for c in entra.calls if "evil" in c.request.url]

    def test_lookup_asks_journal_lines_and_ledger_entries_in_one_batch(self, entra):
        journal_lookup(entra)
        entra.post(
            f"{API}/$batch",
            json={
                "responses": [
                    {
                        "id": "1",
                        "status": 200,
                        "body": {"value": [{"id": "line-1", "externalDocumentNumber": "VH-1-101"}]},
                    },
                    {"id": "2", "status": 200, "body": {"value": []}},
                    {"id": "3", "status": 200, "body": {"value": []}},
                    {
                        "id": "4",
                        "status": 200,
                        "body": {"value": [{"entryNumber": 77, "documentNumber": "VH-1-102"}]},
                    },
                    {"id": "5", "status": 200, "body": {"value": []}},
                    {"id": "6", "status": 200, "body": {"value": []}},
                ]
            },
        )
        with_dimension = {"value": [{"code": "AVDELING", "valueCode": "0300"}]}
        entra.post(
            f"{API}/$batch",
            json={"responses": [{"id": "1", "status": 200, "body": with_dimension}]},
        )
        found = bc.BusinessCentralConnector(bc_config()).lookup(["VH-1-101", "VH-1-102", "O'Brien"])
        assert found == {"VH-1-101": Found("line-1"), "VH-1-102": Found("77")}
        references, dimensions = batch_calls(entra)
        assert "Isolation" not in references.request.headers
        assert "Data-Access-Intent" not in references.request.headers
        urls = [unquote(op["url"]) for op in sent_json(references)["requests"]]
        assert {op["method"] for op in sent_json(references)["requests"]} == {"GET"}
        assert urls[4] == (
            f"companies({COMPANY})/journals({JOURNAL_ID})/journalLines"
            "?$filter=externalDocumentNumber eq 'O''BRIEN'"
        )
        assert urls[5] == (
            f"companies({COMPANY})/generalLedgerEntries?$filter=documentNumber eq 'O''BRIEN'"
        )
        assert [op["url"] for op in sent_json(dimensions)["requests"]] == [
            f"companies({COMPANY})/journalLines(line-1)/dimensionSetLines"
        ]

    def test_issue10_item3_lookup_upper_cases_and_finds_a_line_without_its_dimension(self, entra):
        journal_lookup(entra)
        line = {"id": "line-1", "externalDocumentNumber": "VH-ABC-1"}
        entra.post(
            f"{API}/$batch",
            json={
                "responses": [
                    {"id": "1", "status": 200, "body": {"value": [line]}},
                    {"id": "2", "status": 200, "body": {"value": []}},
                ]
            },
        )
        other_dimension = {"value": [{"code": "PROSJEKT", "valueCode": "HV2401"}]}
        entra.post(
            f"{API}/$batch",
            json={"responses": [{"id": "1", "status": 200, "body": other_dimension}]},
        )
        found = bc.BusinessCentralConnector(bc_config()).lookup(["VH-abc-1"])
        assert found == {"VH-abc-1": Found("line-1", complete=False)}
        urls = [unquote(op["url"]) for op in sent_json(batch_calls(entra)[0])["requests"]]
        assert urls[0].endswith("$filter=externalDocumentNumber eq 'VH-ABC-1'")
        assert urls[1].endswith("$filter=documentNumber eq 'VH-ABC-1'")

    def test_lookup_splits_many_references_into_batches_of_100_operations(self, entra):
        journal_lookup(entra)

        def answer(request):
            ops = json.loads(request.body)["requests"]
            items = [{"id": op["id"], "status": 200, "body": {"value": []}} for op in ops]
            return 200, {}, json.dumps({"responses": items})

        entra.add_callback(responses.POST, f"{API}/$batch", callback=answer)
        refs = [f"VH-1-{n}" for n in range(120)]
        assert bc.BusinessCentralConnector(bc_config()).lookup(refs) == {}
        sizes = [len(sent_json(c)["requests"]) for c in batch_calls(entra)]
        assert sizes == [100, 100, 40]

    def test_a_lookup_item_that_failed_makes_the_lookup_raise(self, entra):
        journal_lookup(entra)
        entra.post(
            f"{API}/$batch",
            json={
                "responses": [
                    {"id": "1", "status": 503, "body": {"error": {"message": "busy"}}},
                    {"id": "2", "status": 200, "body": {"value": []}},
                ]
            },
        )
        with pytest.raises(ConnectorError) as caught:
            bc.BusinessCentralConnector(bc_config()).lookup(["VH-1-101"])
        assert caught.value.outcome is Outcome.TRANSIENT

    def test_test_connection_reports_company_environment_and_the_lists(self, entra):
        company_path = f"{API}/companies({COMPANY})"
        entra.get(
            f"{API}/companies",
            json={"value": [{"id": COMPANY, "name": "HLF", "displayName": "Hørselshemmedes"}]},
        )
        entra.get(f"{company_path}/accounts", json={"value": [{"number": "7130"}]})
        entra.get(
            f"{company_path}/dimensions",
            json={"value": [{"id": "dim-1", "code": "AVDELING", "displayName": "Avdeling"}]},
        )
        entra.get(
            f"{company_path}/dimensions(dim-1)/dimensionValues",
            json={"value": [{"code": "0300", "displayName": "Likepersonsarbeid"}]},
        )
        journal_lookup(entra)
        report = bc.BusinessCentralConnector(bc_config()).test_connection()
        assert report.detail == "company HLF, environment production"
        assert [(c.code, c.dimension) for c in report.cost_centers] == [("0300", "AVDELING")]
        assert [j.code for j in report.journals] == ["UTLEGG"]
        assert [d.code for d in report.dimensions] == ["AVDELING"]

    def test_an_unknown_environment_is_explained(self, entra):
        entra.get(
            f"{API}/companies",
            json={"error": {"code": "BadRequest_NotFound", "message": "not found"}},
            status=404,
        )
        with pytest.raises(ConnectorError) as caught:
            bc.BusinessCentralConnector(bc_config()).test_connection()
        assert "did not find environment production" in caught.value.message

    def test_the_query_string_of_a_next_link_is_kept_as_given(self):
        link = f"{API}/x?$skiptoken=a%20b"
        connector = bc.BusinessCentralConnector(bc_config())
        assert connector._checked_next_link(link) == link
        assert urlsplit(link).query == "$skiptoken=a%20b"
