"""Xledger: GraphQL over one endpoint (see reference/erp-contracts.md, "Xledger").

A posting becomes a balanced voucher of two GL import items sent with
`addGLImportItems`: the expense account debited with the cost center, the
payable account credited with the claimant as subledger. Both carry the
posting's reference in `extIdentifier`, which is how `lookup` finds a voucher
again after an uncertain send.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests
from oauthlib.oauth2 import BackendApplicationClient, OAuth2Error
from requests_oauthlib import OAuth2Session

from .base import (
    Account,
    ConnectionReport,
    CostCenter,
    Dimension,
    Outcome,
    Posting,
    PostResult,
    truncate,
)
from .http import (
    CallFailed,
    Cause,
    Failure,
    admin_errors,
    classify_failure,
    configure_session,
    describe_failure,
    erp_message_from,
    failed_result,
    host_of,
    json_or_none,
    log_call,
    make_session,
    ms_since,
)

logger = logging.getLogger(__name__)

# requests-oauthlib logs the token request's headers and body (HTTP Basic with
# the client secret) and the token answer at DEBUG. Those lines must never be
# written, whatever level the application logs at.
logging.getLogger("requests_oauthlib.oauth2_session").setLevel(logging.INFO)

ERP = "Xledger"

# Xledger accepts at most 500 nodes per addGLImportItems call; a posting is two.
MAX_NODES_PER_CALL = 500
NODES_PER_POSTING = 2

# Burst and concurrency limits answer without Retry-After; the burst window is
# about 5 seconds (client code reports ~20 requests per 5 s).
DEFAULT_RATE_LIMIT_WAIT_S = 5.0

# A cached OAuth2 token with less than this left is fetched again.
TOKEN_REFRESH_MARGIN_S = 300

# References per lookup query: keeps the filter list (and the query) small.
LOOKUP_CHUNK = 250


@dataclass(frozen=True)
class XledgerConfig:
    graphql_url: str
    auth: str = "token"  # "token" | "oauth2"
    api_token: str = field(default="", repr=False)
    token_url: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    scope: str = ""
    cost_center_object: int = 1  # which glObjectN holds the cost center
    cost_center_kind_db_id: int | None = None  # the objectKind whose values are cost centers
    transaction_source: str = "GL"
    claimant_subledger: bool = False  # send the claimant as the payable line's subledger
    ca_bundle: str | bool = True
    connect_timeout: float = 5
    read_timeout: float = 60
    page_size: int = 1000

    def __post_init__(self) -> None:
        if self.auth not in ("token", "oauth2"):
            raise ValueError(f"auth must be 'token' or 'oauth2', not {self.auth!r}")
        if not 1 <= self.cost_center_object <= 5:
            raise ValueError("cost_center_object must be between 1 and 5")
        if not 1 <= self.page_size <= 10_000:
            raise ValueError("page_size must be between 1 and 10000 (Xledger's limit)")

    @property
    def credential_name(self) -> str:
        return "API token" if self.auth == "token" else "OAuth2 client ID or secret"

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.api_token, self.client_secret) if s)


# --- OAuth2 client credentials: one token per credential set, shared by connectors ------------


@dataclass(frozen=True)
class _Token:
    access_token: str = field(repr=False)
    expires_at: float  # time.time()


_tokens: dict[tuple[str, str, str, str], _Token] = {}
_tokens_lock = threading.Lock()


def _token_key(config: XledgerConfig) -> tuple[str, str, str, str]:
    # A digest of the secret, never the secret itself: the key may be inspected or logged.
    digest = hashlib.sha256(config.client_secret.encode()).hexdigest()
    return (config.token_url, config.client_id, digest, config.scope)


def forget_token(config: XledgerConfig) -> None:
    with _tokens_lock:
        _tokens.pop(_token_key(config), None)


def _access_token(config: XledgerConfig) -> str:
    """A bearer token for `config`, fetched again when under 5 minutes remain."""
    key = _token_key(config)
    with _tokens_lock:
        cached = _tokens.get(key)
        if cached and cached.expires_at - time.time() > TOKEN_REFRESH_MARGIN_S:
            return cached.access_token
    token = _fetch_token(config)
    with _tokens_lock:
        _tokens[key] = token
    return token.access_token


def _fetch_token(config: XledgerConfig) -> _Token:
    oauth = OAuth2Session(client=BackendApplicationClient(client_id=config.client_id))
    configure_session(
        oauth,
        config.ca_bundle,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
    )
    oauth.register_compliance_hook("access_token_response", _refuse_unusable_token_answer)
    started = time.monotonic()
    status = "ok"
    try:
        token = oauth.fetch_token(
            config.token_url,
            client_id=config.client_id,
            client_secret=config.client_secret,
            scope=config.scope or None,
            timeout=(config.connect_timeout, config.read_timeout),
        )
    except CallFailed as error:
        status = error.failure.outcome.value
        raise
    except OAuth2Error as error:
        status = f"oauth2:{error.error}"
        raise CallFailed(_oauth2_failure(error)) from None
    except requests.RequestException as error:
        failure = classify_failure(error, write=False)
        status = failure.cause.value
        raise CallFailed(failure) from None
    finally:
        oauth.close()
        log_call(logger, erp=ERP, operation="oauth2 token", count=1, status=status, started=started)
    expires_in = token.get("expires_in")
    expires_at = token.get("expires_at") or time.time() + float(expires_in or 3600)
    return _Token(access_token=token["access_token"], expires_at=float(expires_at))


def _refuse_unusable_token_answer(response: requests.Response) -> requests.Response:
    """Turn a token answer that is not an OAuth2 answer (a 503 page, a 429) into a failure.

    oauthlib would report it as a missing token; the status says more (retry later).
    """
    if response.status_code == 200:
        return response
    try:
        has_oauth_error = "error" in response.json()
    except ValueError:
        has_oauth_error = False
    if has_oauth_error and response.status_code < 500:
        return response  # oauthlib raises the matching OAuth2Error
    raise CallFailed(
        classify_failure(
            status=response.status_code,
            headers=response.headers,
            body=response.text,
            write=False,
        )
    )


def _oauth2_failure(error: OAuth2Error) -> Failure:
    if error.error in ("temporarily_unavailable", "server_error"):
        return Failure(Outcome.TRANSIENT, Cause.HTTP, error.description or error.error, None)
    words = f"The token endpoint refused the client ({error.error})."
    if error.description:
        words += f" {error.description}"
    return Failure(Outcome.AUTHENTICATION, Cause.HTTP, words, None, error.status_code)


# --- GraphQL errors ---------------------------------------------------------------------------

AUTH_MESSAGE = "bad format for api token"
AUTH_CODES = {"UNAUTHENTICATED"}
RATE_CODES = {"BAD_REQUEST.BURST_RATE_LIMIT_REACHED", "BAD_REQUEST.CONCURRENCY_LIMIT_REACHED"}
CREDITS_CODE = "BAD_REQUEST.INSUFFICIENT_CREDITS"
VALIDATION_CODE = "BAD_REQUEST.VALIDATION"
NO_CREDITS = (
    "The Xledger account has no API credits left. An Xledger administrator "
    "must add credits before anything can be sent."
)


def _error_code(error: dict[str, Any]) -> str:
    extensions = error.get("extensions") or {}
    return str(error.get("code") or extensions.get("code") or "")


def _error_client_id(error: dict[str, Any]) -> str | None:
    client_id = (error.get("extensions") or {}).get("clientId")
    return str(client_id) if client_id else None


def graphql_failure(errors: list[dict[str, Any]], *, write: bool) -> Failure:
    """What GraphQL errors in an HTTP 200 answer mean, the most decisive first.

    INSUFFICIENT_CREDITS is classed AUTHENTICATION: the account has run out of
    paid API credits, which no retry fixes and an admin must fix at once; the
    AUTHENTICATION class is the one that stops the run and alerts immediately.
    """
    codes = {_error_code(e) for e in errors}
    messages = "; ".join(str(e.get("message", "")) for e in errors)
    body = truncate(json.dumps({"errors": errors}, ensure_ascii=False))
    if codes & AUTH_CODES or any(AUTH_MESSAGE in str(e.get("message", "")).lower() for e in errors):
        return Failure(Outcome.AUTHENTICATION, Cause.HTTP, messages, None, 200, body)
    if CREDITS_CODE in codes:
        return Failure(
            Outcome.AUTHENTICATION, Cause.HTTP, messages, None, 200, body, admin=NO_CREDITS
        )
    if codes & RATE_CODES:
        return Failure(
            Outcome.RATE_LIMITED, Cause.HTTP, messages, DEFAULT_RATE_LIMIT_WAIT_S, 200, body
        )
    if any("INTERNAL" in code or "TIMEOUT" in code for code in codes):
        # The server failed while executing: a write may have been done.
        outcome = Outcome.UNCERTAIN if write else Outcome.TRANSIENT
        return Failure(outcome, Cause.HTTP, messages, None, 200, body)
    # Validation, syntax, an unknown field: the same request will fail again.
    return Failure(Outcome.PERMANENT, Cause.HTTP, messages, None, 200, body)


def _is_credential_error(errors: list[dict[str, Any]]) -> bool:
    return any(
        _error_code(e) in AUTH_CODES or AUTH_MESSAGE in str(e.get("message", "")).lower()
        for e in errors
    )


# --- the voucher ------------------------------------------------------------------------------

TWO_PLACES = Decimal("0.01")


def format_amount(amount: Decimal) -> str:
    """A decimal string with exactly two decimals ("450.00"); refuses what would be rounded."""
    if not isinstance(amount, Decimal):
        raise TypeError("amounts are Decimal, never float")
    if not amount.is_finite():
        raise ValueError(f"amount {amount} is not a number")
    quantized = amount.quantize(TWO_PLACES)
    if quantized != amount:
        raise ValueError(f"amount {amount} has more than two decimals")
    if quantized == 0:
        quantized = abs(quantized)  # never "-0.00"
    return f"{quantized:f}"


def voucher_inputs(posting: Posting, config: XledgerConfig) -> list[dict[str, Any]]:
    """The two balanced AddGLImportItemsInput of one posting: debit expense, credit payable."""
    day = posting.posting_date.isoformat()
    common: dict[str, Any] = {
        "currency": {"code": posting.currency},
        "postedDate": day,
        "invoiceDate": day,
        "text": posting.description,
        "transactionSource": {"code": config.transaction_source},
        "extIdentifier": posting.reference,
        "invoiceNumber": posting.reference,
    }
    debit: dict[str, Any] = {
        "account": {"code": posting.expense_account},
        "amount": format_amount(posting.amount),
        **common,
        "yourReference": posting.claimant_reference,
    }
    if posting.cost_center:
        debit[f"glObject{config.cost_center_object}"] = {"code": posting.cost_center}
    credit: dict[str, Any] = {
        "account": {"code": posting.payable_account},
        "amount": format_amount(-posting.amount),
        **common,
    }
    if posting.claimant_reference:
        credit["subledger"] = {"code": posting.claimant_reference}
    return [
        {"clientId": f"{posting.reference}:D", "node": debit},
        {"clientId": f"{posting.reference}:C", "node": credit},
    ]


ADD_GL_IMPORT_ITEMS = """
mutation AddGLImportItems($inputs: [AddGLImportItemsInput!]!) {
  addGLImportItems(inputs: $inputs) { edges { clientId node { dbId } } }
}
"""

ACCOUNTS = """
query Accounts($first: Int, $after: String) {
  accounts(first: $first, after: $after) {
    edges { cursor node { dbId code description } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

OBJECT_KINDS = """
query ObjectKinds($first: Int, $after: String) {
  objectKinds(first: $first, after: $after) {
    edges { cursor node { dbId name } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

OBJECT_VALUES = """
query ObjectValues($first: Int, $after: String, $kind: Int) {
  objectValues(first: $first, after: $after, filter: {objectKindDbId: $kind}) {
    edges { cursor node { dbId code description } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

GL_IMPORT_ITEMS_BY_REFERENCE = """
query GLImportItemsByReference($first: Int, $after: String, $refs: [String!]) {
  glImportItems(first: $first, after: $after, filter: {extIdentifier_in: $refs}) {
    edges { cursor node { dbId extIdentifier } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


class XledgerConnector:
    batch_size = MAX_NODES_PER_CALL // NODES_PER_POSTING  # 250

    def __init__(self, config: XledgerConfig) -> None:
        self.config = config
        self._session = make_session(
            config.ca_bundle,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
        )
        self._host = host_of(config.graphql_url)

    def close(self) -> None:
        self._session.close()

    # --- the Connector protocol ---------------------------------------------------------

    def test_connection(self) -> ConnectionReport:
        with admin_errors(self):
            accounts = self._accounts()
            kinds = self._object_kinds()
            cost_centers = self._cost_centers()
        return ConnectionReport(
            accounts=accounts,
            cost_centers=cost_centers,
            dimensions=kinds,
            detail=self._detail(accounts, kinds),
        )

    def list_accounts(self) -> list[Account]:
        with admin_errors(self):
            return self._accounts()

    def list_cost_centers(self) -> list[CostCenter]:
        with admin_errors(self):
            return self._cost_centers()

    def list_object_kinds(self) -> list[Dimension]:
        with admin_errors(self):
            return self._object_kinds()

    def post(self, postings: list[Posting]) -> list[PostResult]:
        if len(postings) > self.batch_size:
            raise ValueError(f"at most {self.batch_size} postings per call")
        started = time.monotonic()
        results: dict[int, PostResult] = {}
        inputs: dict[int, list[dict[str, Any]]] = {}
        seen: set[str] = set()
        for index, posting in enumerate(postings):
            problem = _local_problem(posting, seen)
            seen.add(posting.reference)
            if problem:
                results[index] = PostResult(posting.reference, Outcome.PERMANENT, message=problem)
            else:
                inputs[index] = voucher_inputs(posting, self.config)
        pending = list(inputs)
        while pending:
            pending = self._send(postings, pending, inputs, results, started)
        return [results[index] for index in range(len(postings))]

    def lookup(self, references: list[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(references))
        wanted_set = set(wanted)
        found: dict[str, str] = {}
        with admin_errors(self):
            for start in range(0, len(wanted), LOOKUP_CHUNK):
                for node in self._import_items_by_reference(wanted[start : start + LOOKUP_CHUNK]):
                    reference = node.get("extIdentifier")
                    if reference in wanted_set:
                        # Both lines of a voucher carry the reference; the first seen names it.
                        found.setdefault(reference, str(node["dbId"]))
        return found

    # --- posting ------------------------------------------------------------------------

    def _send(
        self,
        postings: list[Posting],
        pending: list[int],
        inputs: dict[int, list[dict[str, Any]]],
        results: dict[int, PostResult],
        started: float,
    ) -> list[int]:
        """Send one mutation for `pending`; returns the postings to send again at once.

        The mutation is all or nothing: when some inputs are invalid nothing is
        stored, so those postings are refused and the others go again right away.
        """
        batch = [node for index in pending for node in inputs[index]]
        try:
            body, status = self._graphql(
                ADD_GL_IMPORT_ITEMS, {"inputs": batch}, "addGLImportItems", len(pending), True
            )
        except CallFailed as error:
            for index in pending:
                results[index] = self._result(
                    postings[index], inputs[index], error.failure, started
                )
            return []
        errors = body.get("errors")
        if not errors:
            self._record_success(postings, pending, inputs, results, body, status, started)
            return []
        by_client = _validation_errors_by_client_id(errors) or {}
        refused = {
            index
            for index in pending
            if any(node["clientId"] in by_client for node in inputs[index])
        }
        if not refused:
            failure = graphql_failure(errors, write=True)
            for index in pending:
                results[index] = self._result(postings[index], inputs[index], failure, started)
            return []
        for index in refused:
            own = [e for node in inputs[index] for e in by_client.get(node["clientId"], [])]
            failure = Failure(
                Outcome.PERMANENT,
                Cause.HTTP,
                "; ".join(dict.fromkeys(str(e.get("message", "")) for e in own)),
                None,
                status,
                truncate(json.dumps({"errors": own}, ensure_ascii=False)),
            )
            results[index] = self._result(postings[index], inputs[index], failure, started)
        return [index for index in pending if index not in refused]

    def _record_success(
        self,
        postings: list[Posting],
        pending: list[int],
        inputs: dict[int, list[dict[str, Any]]],
        results: dict[int, PostResult],
        body: dict[str, Any],
        status: int,
        started: float,
    ) -> None:
        try:
            edges = body["data"]["addGLImportItems"]["edges"]
            by_client = {edge["clientId"]: edge for edge in edges}
        except (KeyError, TypeError):
            by_client = {}
        for index in pending:
            own = [by_client[n["clientId"]] for n in inputs[index] if n["clientId"] in by_client]
            if len(own) != len(inputs[index]):
                # Answered without echoing our lines: it may or may not be stored.
                failure = Failure(
                    Outcome.UNCERTAIN,
                    Cause.OTHER,
                    "Xledger answered without confirming this voucher's lines.",
                    None,
                    status,
                    truncate(json.dumps(body, ensure_ascii=False)),
                )
                results[index] = self._result(postings[index], inputs[index], failure, started)
                continue
            results[index] = PostResult(
                reference=postings[index].reference,
                outcome=Outcome.SUCCEEDED,
                erp_id=str(own[0]["node"]["dbId"]),
                payload={"inputs": inputs[index]},
                response_status=status,
                response_body=truncate(json.dumps({"edges": own}, ensure_ascii=False)),
                duration_ms=ms_since(started),
            )

    def _result(
        self,
        posting: Posting,
        inputs: list[dict[str, Any]],
        failure: Failure,
        started: float,
    ) -> PostResult:
        payload = {"inputs": inputs}
        return failed_result(posting.reference, payload, failure, started, self.config.secrets())

    # --- reading ------------------------------------------------------------------------

    def _accounts(self) -> list[Account]:
        return [
            Account(code=str(node["code"]), name=str(node.get("description") or ""))
            for node in self._paged("accounts", ACCOUNTS, {})
        ]

    def _object_kinds(self) -> list[Dimension]:
        return [
            Dimension(
                code=str(node["dbId"]), name=str(node.get("name") or ""), id=str(node["dbId"])
            )
            for node in self._paged("objectKinds", OBJECT_KINDS, {})
        ]

    def _cost_centers(self) -> list[CostCenter]:
        kind = self.config.cost_center_kind_db_id
        if kind is None:
            # Not chosen yet: the admin picks the kind from ConnectionReport.dimensions.
            return []
        return [
            CostCenter(
                code=str(node["code"]),
                name=str(node.get("description") or ""),
                dimension=str(kind),
            )
            for node in self._paged("objectValues", OBJECT_VALUES, {"kind": kind})
        ]

    def _import_items_by_reference(self, references: list[str]) -> Iterator[dict[str, Any]]:
        """GL import items whose extIdentifier is one of `references`.

        UNCONFIRMED for the real Xledger: that `glImportItems` accepts the filter
        `extIdentifier_in` (the sandbox does). If it does not, this is the one
        function to change (e.g. to `transactions` filtered by extIdentifier).
        """
        return self._paged("glImportItems", GL_IMPORT_ITEMS_BY_REFERENCE, {"refs": references})

    def _paged(
        self, field_name: str, query: str, variables: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        """Every node of a Relay connection, following `after` until hasNextPage is false."""
        after: str | None = None
        while True:
            page = {**variables, "first": self.config.page_size, "after": after}
            body, _status = self._graphql(query, page, field_name, 1, False)
            if body.get("errors"):
                raise CallFailed(graphql_failure(body["errors"], write=False))
            try:
                connection = body["data"][field_name]
                edges = connection["edges"]
                has_next = bool(connection["pageInfo"]["hasNextPage"])
                cursor = connection["pageInfo"].get("endCursor") or (
                    edges[-1]["cursor"] if edges else None
                )
            except (KeyError, TypeError, IndexError):
                raise CallFailed(_unexpected_answer(write=False)) from None
            yield from (edge["node"] for edge in edges)
            if not has_next or not cursor or cursor == after:
                return
            after = cursor

    # --- one GraphQL call ---------------------------------------------------------------

    def _graphql(
        self,
        query: str,
        variables: dict[str, Any],
        operation: str,
        count: int,
        write: bool,
    ) -> tuple[dict[str, Any], int]:
        """POST one GraphQL request; returns the parsed body of an HTTP 200 answer.

        GraphQL errors in a 200 answer are returned for the caller to read, except
        a refused bearer token: that one is fetched again and the call repeated once
        (nothing was done with a refused token, so repeating a write is safe).
        """
        for attempt in (1, 2):
            headers = {"Authorization": self._authorization()}
            started = time.monotonic()
            try:
                response = self._session.post(
                    self.config.graphql_url,
                    json={"query": query, "variables": variables},
                    headers=headers,
                    timeout=(self.config.connect_timeout, self.config.read_timeout),
                )
            except requests.RequestException as error:
                failure = classify_failure(error, write=write)
                self._log(operation, count, failure.cause.value, started)
                raise CallFailed(failure) from None
            body = json_or_none(response)
            if self._bearer_refused(response, body) and attempt == 1:
                self._log(operation, count, "token refused, fetching a new one", started)
                forget_token(self.config)
                continue
            if response.status_code != 200:
                self._log(operation, count, str(response.status_code), started)
                raise CallFailed(
                    classify_failure(
                        status=response.status_code,
                        headers=response.headers,
                        erp_message=erp_message_from(body),
                        body=response.text,
                        write=write,
                    )
                )
            if not isinstance(body, dict):
                self._log(operation, count, "200 unreadable", started)
                raise CallFailed(_unexpected_answer(write=write, body=response.text))
            errors = body.get("errors")
            status = "200" if not errors else "200 " + ",".join(_error_code(e) for e in errors)
            self._log(operation, count, status, started)
            return body, response.status_code
        raise AssertionError("unreachable")  # pragma: no cover

    def _bearer_refused(self, response: requests.Response, body: Any) -> bool:
        if self.config.auth != "oauth2":
            return False
        if response.status_code == 401:
            return True
        errors = body.get("errors") if isinstance(body, dict) else None
        return bool(errors) and _is_credential_error(errors)

    def _authorization(self) -> str:
        if self.config.auth == "token":
            return f"token {self.config.api_token}"
        return f"Bearer {_access_token(self.config)}"

    def _log(self, operation: str, count: int, status: str, started: float) -> None:
        log_call(logger, erp=ERP, operation=operation, count=count, status=status, started=started)

    # --- admin messages -----------------------------------------------------------------

    def admin_message(self, failure: Failure) -> str:
        if failure.status == 403 or failure.admin:
            return describe_failure(
                failure, erp=ERP, host=self._host, credential=self.config.credential_name
            )
        if failure.outcome is Outcome.AUTHENTICATION and self.config.auth == "token":
            return "The API token was refused. Check that it is correct and not revoked."
        if failure.outcome is Outcome.AUTHENTICATION:
            return (
                "The OAuth2 client ID or client secret was refused. Check that they are "
                "correct and that the client is not disabled or expired."
            )
        if failure.outcome is Outcome.PERMANENT and failure.status == 200:
            return f"Xledger refused the request: {failure.message}"
        return describe_failure(
            failure, erp=ERP, host=self._host, credential=self.config.credential_name
        )

    def _detail(self, accounts: list[Account], kinds: list[Dimension]) -> str:
        kind_id = self.config.cost_center_kind_db_id
        detail = f"Xledger at {self._host}: {len(accounts)} accounts"
        if kind_id is None:
            return detail + "; choose the object kind that holds the cost centers"
        names = {kind.id: kind.name for kind in kinds}
        if str(kind_id) not in names:
            return detail + f"; object kind {kind_id} was not found, choose another"
        return detail + f"; cost centers from object kind {kind_id} {names[str(kind_id)]}"


# --- small helpers ----------------------------------------------------------------------------


def _local_problem(posting: Posting, seen: set[str]) -> str:
    """Why a posting cannot be sent at all, or ""."""
    if posting.reference in seen:
        return f"The reference {posting.reference} appears twice in the same batch."
    try:
        format_amount(posting.amount)
    except (TypeError, ValueError) as error:
        return f"The amount cannot be sent to Xledger: {error}."
    return ""


def _validation_errors_by_client_id(
    errors: list[dict[str, Any]],
) -> dict[str, list[dict[str, Any]]] | None:
    """Validation errors keyed by the input they name; None if any error is of another kind."""
    by_client: dict[str, list[dict[str, Any]]] = {}
    for error in errors:
        client_id = _error_client_id(error)
        if _error_code(error) != VALIDATION_CODE or client_id is None:
            return None
        by_client.setdefault(client_id, []).append(error)
    return by_client


def _unexpected_answer(*, write: bool, body: str = "") -> Failure:
    # A write answered with something unreadable may still have been stored.
    outcome = Outcome.UNCERTAIN if write else Outcome.TRANSIENT
    return Failure(
        outcome,
        Cause.OTHER,
        "Xledger gave an answer that could not be read.",
        None,
        200,
        truncate(body),
    )
