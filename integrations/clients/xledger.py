"""Xledger: GraphQL over one endpoint (see docs/erp/xledger.md).

A posting becomes one voucher of two GL import items sent with `addGLImportItems`,
formed as Xledger's own example forms one (help centre article 33393587744786): both
lines share one `trRegNumber` (the posting's number, so a resend carries the same
one), `invoiceAmount` equals `amount`, `jobLevel {dbSubId: 1}`. The expense account is
debited with the cost center; the payable account is credited, with the claimant as
subledger when the integration asks for it. Both lines carry the posting's reference
in `extIdentifier`, which is how `lookup` finds a voucher again after an uncertain send.

An answer with ids is not yet a posted voucher: Xledger's import job may still refuse
it (`glImportItemErrors`), so this connector settles later (`settle`).

Facts no public source confirms are each read in ONE function whose docstring says
UNCONFIRMED: `_import_items_by_reference`, `_transactions_by_reference`,
`_import_item_errors` and `_input_index`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import pairwise
from typing import Any

import requests
from oauthlib.oauth2 import BackendApplicationClient, OAuth2Error
from requests_oauthlib import OAuth2Session

from integrations.notes import Note, NoteCode, note

from .base import (
    Account,
    ConnectionReport,
    CostCenter,
    Dimension,
    EntrySource,
    ErpEntry,
    Found,
    Outcome,
    Posting,
    PostResult,
    Settled,
    Settlement,
    truncate,
)
from .http import (
    AllowList,
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
from .limits import Pacer
from .reading import amount_of, day_of, folded_pages, in_period

logger = logging.getLogger(__name__)

# requests-oauthlib logs the token request's headers and body (HTTP Basic with
# the client secret) and the token answer at DEBUG. Those lines must never be
# written, whatever level the application logs at.
logging.getLogger("requests_oauthlib.oauth2_session").setLevel(logging.INFO)

ERP = "Xledger"

# Xledger accepts at most 500 nodes per addGLImportItems call; a posting is two.
MAX_NODES_PER_CALL = 500
NODES_PER_POSTING = 2

# Burst and concurrency limits answer without a wait; the burst window is about 5
# seconds (client code reports ~20 requests per 5 s).
DEFAULT_RATE_LIMIT_WAIT_S = 5.0
# Out of credits without `extensions.resetAt`: the official sample waits about 20 minutes.
CREDITS_WAIT_S = 20 * 60.0

# A cached OAuth2 token with less than this left is fetched again.
TOKEN_REFRESH_MARGIN_S = 300

# References per lookup query, ids per error query: keeps each filter list small.
LOOKUP_CHUNK = 250
ID_CHUNK = 500

# Nodes per query when reading for reconciliation (`entries`). Xledger allows at most
# 10,000 per query, and requests are metered and billed past the monthly allowance, so
# pages are large; half the maximum leaves room before "Your query timed out.", which
# would fail the whole read and cost a request for nothing.
ENTRIES_PAGE_SIZE = 5000

# trRegNumber is a GraphQL Int: 32 bits, signed.
MAX_TR_REG_NUMBER = 2**31 - 1
# Xledger's example sets jobLevel { dbSubId: 1 } on every line; public clients do too.
JOB_LEVEL_SUB_ID = 1


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
    # ERP_ALLOWED_HOSTS entries (see http.AllowList). None: exactly the configured
    # addresses' origins, so a connector built without a list still goes nowhere else.
    allowed_hosts: tuple[str, ...] | None = None
    # Paces the API's requests in a window shared by every worker (limits.py); None
    # sends unpaced (unit tests, verify_erp's single calls).
    pacer: Pacer | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.auth not in ("token", "oauth2"):
            raise ValueError(f"auth must be 'token' or 'oauth2', not {self.auth!r}")
        if not 1 <= self.cost_center_object <= 5:
            raise ValueError("cost_center_object must be between 1 and 5")
        if not 1 <= self.page_size <= 10_000:
            raise ValueError("page_size must be between 1 and 10000 (Xledger's limit)")

    @property
    def credential_name(self) -> str:
        """What the admin typed in, as a code notes.py words."""
        return "api_token" if self.auth == "token" else "oauth2_client"

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.api_token, self.client_secret) if s)

    @property
    def allow_list(self) -> AllowList:
        if self.allowed_hosts is not None:
            return AllowList.parse(self.allowed_hosts)
        return AllowList.of_urls(self.graphql_url, *([self.token_url] if self.token_url else []))


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
        allowed=config.allow_list,
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
    said = f"{error.error}: {error.description}" if error.description else str(error.error)
    # The token endpoint's own words; the connector says which credential it refused.
    return Failure(Outcome.AUTHENTICATION, Cause.HTTP, said, None, error.status_code)


# --- GraphQL errors ---------------------------------------------------------------------------

AUTH_MESSAGE = "bad format for api token"  # compared lower-cased: Xledger writes "API Token"
AUTH_CODES = {"UNAUTHENTICATED"}
RATE_CODES = {"BAD_REQUEST.BURST_RATE_LIMIT_REACHED", "BAD_REQUEST.CONCURRENCY_LIMIT_REACHED"}
CREDITS_CODE = "BAD_REQUEST.INSUFFICIENT_CREDITS"
TIMED_OUT = "timed out"  # "Your query timed out." comes without a code


def _error_code(error: dict[str, Any]) -> str:
    extensions = error.get("extensions")
    extensions = extensions if isinstance(extensions, dict) else {}
    return str(error.get("code") or extensions.get("code") or "").upper()


def _message(error: dict[str, Any]) -> str:
    return str(error.get("message", ""))


def _is_credential_error(errors: list[dict[str, Any]]) -> bool:
    return any(_error_code(e) in AUTH_CODES or AUTH_MESSAGE in _message(e).lower() for e in errors)


def _reset_wait(errors: list[dict[str, Any]], default: float, now: datetime | None = None) -> float:
    """Seconds until `extensions.resetAt` (ISO 8601) of these errors, else `default`."""
    waits = []
    for error in errors:
        extensions = error.get("extensions")
        reset_at = extensions.get("resetAt") if isinstance(extensions, dict) else None
        try:
            when = datetime.fromisoformat(str(reset_at).replace("Z", "+00:00"))
        except ValueError:
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        waits.append(max(0.0, (when - (now or datetime.now(UTC))).total_seconds()))
    return max(waits) if waits else default


def _no_credits(wait: float) -> Note:
    return note(NoteCode.XL_NO_CREDITS, minutes=max(1, round(wait / 60)))


def _server_failed(errors: list[dict[str, Any]]) -> bool:
    return any(
        TIMED_OUT in _message(e).lower()
        or "INTERNAL" in _error_code(e)
        or "TIMEOUT" in _error_code(e)
        for e in errors
    )


def graphql_failure(errors: list[dict[str, Any]], *, write: bool) -> Failure:
    """What GraphQL errors that name no input mean for the whole request.

    Recognised: a refused token (AUTHENTICATION); the burst, concurrency and credit
    limits (RATE_LIMITED: the request was refused before anything was done; credits
    wait until `extensions.resetAt`, else about 20 minutes as Xledger's sample does);
    a timeout or server failure. Anything else on a write is UNCERTAIN: it may have
    come after the write was done, and an error the connector cannot read must never
    turn postings into permanent failures. On a read it is PERMANENT (the same query
    fails the same way), which reaches the admin as a ConnectorError.
    """
    codes = {_error_code(e) for e in errors}
    messages = "; ".join(_message(e) for e in errors)
    body = truncate(json.dumps({"errors": errors}, ensure_ascii=False))

    def failure(
        outcome: Outcome, retry_after: float | None = None, said: Note | None = None
    ) -> Failure:
        return Failure(outcome, Cause.HTTP, messages, retry_after, 200, body, note=said)

    if _is_credential_error(errors):
        return failure(Outcome.AUTHENTICATION)
    if CREDITS_CODE in codes:
        wait = _reset_wait(errors, CREDITS_WAIT_S)
        return failure(Outcome.RATE_LIMITED, wait, _no_credits(wait))
    if codes & RATE_CODES:
        return failure(Outcome.RATE_LIMITED, _reset_wait(errors, DEFAULT_RATE_LIMIT_WAIT_S))
    if write:
        return failure(Outcome.UNCERTAIN)
    return failure(Outcome.TRANSIENT if _server_failed(errors) else Outcome.PERMANENT)


def _input_index(error: dict[str, Any], client_ids: list[str]) -> int | None:
    """Which input of the mutation an error is about, or None when it names none.

    UNCONFIRMED: how (and whether) Xledger names the input an error belongs to. Read
    here: a `path` with "inputs" followed by the input's index (["addGLImportItems",
    "inputs", 3]), `extensions.index` / `extensions.inputIndex`, or an
    `extensions.clientId` we sent. Any other shape names no input, and an error that
    names no input never makes a posting PERMANENT.
    """

    def index(value: Any) -> int | None:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return value if ok and 0 <= value < len(client_ids) else None

    path = error.get("path")
    if isinstance(path, list):
        for before, after in pairwise(path):
            if before == "inputs" and index(after) is not None:
                return after
    extensions = error.get("extensions")
    if not isinstance(extensions, dict):
        return None
    for key in ("index", "inputIndex"):
        if index(extensions.get(key)) is not None:
            return extensions[key]
    client_id = extensions.get("clientId")
    return client_ids.index(client_id) if client_id in client_ids else None


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


def _line(posting: Posting, config: XledgerConfig, account: str, amount: Decimal) -> dict[str, Any]:
    """One GL import item, every field as in Xledger's own addGLImportItems example."""
    day = posting.posting_date.isoformat()
    text_amount = format_amount(amount)
    return {
        "trRegNumber": posting.number,  # shared by the voucher's lines; the same on a resend
        "account": {"code": account},
        "amount": text_amount,
        "invoiceAmount": text_amount,
        "currency": {"code": posting.currency},
        "postedDate": day,
        "invoiceDate": day,
        # An approved expense is owed at once: no payment terms to add.
        "dueDate": day,
        "text": posting.description,
        "transactionSource": {"code": config.transaction_source},
        "jobLevel": {"dbSubId": JOB_LEVEL_SUB_ID},
        "extIdentifier": posting.reference,
        "invoiceNumber": posting.reference,
    }


def voucher_inputs(posting: Posting, config: XledgerConfig) -> list[dict[str, Any]]:
    """The two balanced AddGLImportItemsInput of one posting: debit expense, credit payable.

    Every value is derived from the posting and the config alone, so a resend is the
    same voucher.
    """
    debit = _line(posting, config, posting.expense_account, posting.amount)
    if posting.claimant_reference:
        debit["yourReference"] = posting.claimant_reference
    if posting.cost_center:
        debit[f"glObject{config.cost_center_object}"] = {"code": posting.cost_center}
    credit = _line(posting, config, posting.payable_account, -posting.amount)
    if config.claimant_subledger and posting.claimant_reference:
        # Only on request: the code must name an existing employee or supplier in Xledger.
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

# Reads select only pageInfo { hasNextPage } and take the cursor from the last edge, as
# public clients do (endCursor is unconfirmed); ids travel as Int64String (Queries.cs).
ACCOUNTS = """
query Accounts($first: Int, $after: String) {
  accounts(first: $first, after: $after) {
    edges { cursor node { dbId code description } }
    pageInfo { hasNextPage }
  }
}
"""

OBJECT_KINDS = """
query ObjectKinds($first: Int, $after: String) {
  objectKinds(first: $first, after: $after) {
    edges { cursor node { dbId name } }
    pageInfo { hasNextPage }
  }
}
"""

OBJECT_VALUES = """
query ObjectValues($first: Int, $after: String, $kind: Int64String) {
  objectValues(first: $first, after: $after, filter: {objectKindDbId: $kind}) {
    edges { cursor node { dbId code description } }
    pageInfo { hasNextPage }
  }
}
"""

GL_IMPORT_ITEMS_BY_REFERENCE = """
query GLImportItemsByReference($first: Int, $after: String, $refs: [String!]) {
  glImportItems(first: $first, after: $after, filter: {extIdentifier_in: $refs}) {
    edges { cursor node { dbId extIdentifier } }
    pageInfo { hasNextPage }
  }
}
"""

TRANSACTIONS_BY_REFERENCE = """
query TransactionsByReference($first: Int, $after: String, $refs: [String!]) {
  transactions(first: $first, after: $after, filter: {extIdentifier_in: $refs}) {
    edges { cursor node { dbId extIdentifier } }
    pageInfo { hasNextPage }
  }
}
"""

GL_IMPORT_ITEM_ERRORS = """
query GLImportItemErrors($first: Int, $after: String, $ids: [Int64String!]) {
  glImportItemErrors(first: $first, after: $after, filter: {transactionDbId_in: $ids}) {
    edges { cursor node { transactionDbId errorLevel message } }
    pageInfo { hasNextPage }
  }
}
"""


@dataclass
class _Answer:
    """One mutation answer, read per input: what it echoed and which errors name which input."""

    echoed: dict[str, dict[str, Any]]  # clientId -> edge
    named: dict[str, list[dict[str, Any]]]  # clientId -> the errors naming that input
    unnamed: list[dict[str, Any]]  # errors that name no input

    @classmethod
    def read(cls, body: dict[str, Any], batch: list[dict[str, Any]]) -> _Answer:
        client_ids = [node["clientId"] for node in batch]
        try:
            edges = body["data"]["addGLImportItems"]["edges"]
            echoed = {e["clientId"]: e for e in edges if e["clientId"] in client_ids}
        except (KeyError, TypeError):
            echoed = {}
        named: dict[str, list[dict[str, Any]]] = {}
        unnamed: list[dict[str, Any]] = []
        for error in body.get("errors") or []:
            if not isinstance(error, dict):
                unnamed.append({"message": str(error)})
                continue
            index = _input_index(error, client_ids)
            if index is None:
                unnamed.append(error)
            else:
                named.setdefault(client_ids[index], []).append(error)
        return cls(echoed, named, unnamed)


class XledgerConnector:
    batch_size = MAX_NODES_PER_CALL // NODES_PER_POSTING  # 250
    # An answer with ids is not yet a posted voucher: the import job may refuse it later.
    settles_later = True

    def __init__(self, config: XledgerConfig) -> None:
        self.config = config
        self._session = make_session(
            config.ca_bundle,
            allowed=config.allow_list,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            pacer=config.pacer,
        )
        self._host = host_of(config.graphql_url)
        # Whether Xledger took the posted-date filter (None: not asked yet); see _period_nodes.
        self._date_filter: bool | None = None

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
            details=self._detail(accounts, kinds),
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
            if posting.existing_id:
                results[index] = _half_voucher_held(posting)
            elif problem:
                results[index] = PostResult(posting.reference, Outcome.PERMANENT, note=problem)
            else:
                inputs[index] = voucher_inputs(posting, self.config)
        pending = list(inputs)
        while pending:
            pending = self._send(postings, pending, inputs, results, started)
        return [results[index] for index in range(len(postings))]

    def lookup(self, references: list[str]) -> dict[str, Found]:
        with admin_errors(self):
            return self._find(references)

    def entries(self, start: date, end: date, prefix: str) -> Iterator[list[ErpEntry]]:
        """Posted vouchers (transactions), then vouchers still waiting for the import job
        (GL import items), one entry per voucher from its expense (debit) line.

        Xledger documents no prefix operator for `extIdentifier`, so the period is read by
        posted date and the prefix is kept on our side (docs/erp/xledger.md, "Reading
        entries"). Items the import job refused are left out: Xledger does not hold them.
        """
        if start > end:
            raise ValueError("the period ends before it starts")
        posted: set[str] = set()
        with admin_errors(self):
            nodes = (_ours(page, prefix) for page in self._period_nodes("transactions", start, end))
            for page in folded_pages(
                nodes, _voucher, self._voucher_entry(EntrySource.LEDGER_ENTRY)
            ):
                kept = [
                    e for e in page if in_period(e.reference, e.posting_date, start, end, prefix)
                ]
                posted.update(e.reference for e in kept)
                if kept:
                    yield kept
            items = (
                self._not_refused(_ours(page, prefix))
                for page in self._period_nodes("glImportItems", start, end)
            )
            waiting = self._voucher_entry(EntrySource.IMPORT_ITEM)
            for page in folded_pages(items, _voucher, waiting):
                # Under xledger_imported_items "kept" a posted voucher's items stay listed.
                kept = [
                    e
                    for e in page
                    if e.reference not in posted
                    and in_period(e.reference, e.posting_date, start, end, prefix)
                ]
                if kept:
                    yield kept

    def settle(self, held: dict[str, str]) -> dict[str, Settled]:
        """What the import made of each voucher, asked in chunks of as many references as
        one page of transactions holds (two lines a voucher): one request per chunk when
        the import has posted them all, as it mostly has by the time the run asks.

        Each request is metered, and counts against the burst limit that paces a busy
        night (bench/night_bench.py): at 250 references a request, as lookups ask, the
        import checks were half of every sync's requests; at 500, a third. UNCONFIRMED
        for the real Xledger, as for 250: how long a list `extIdentifier_in` takes.
        """
        settled: dict[str, Settled] = {}
        with admin_errors(self):
            for chunk in _chunks(list(held), self.settle_chunk):
                settled.update(self._settle_chunk(chunk, held))
        return settled

    @property
    def settle_chunk(self) -> int:
        return max(1, self.config.page_size // NODES_PER_POSTING)

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

        A posting is PERMANENT only when an error names one of its inputs; one the
        answer echoes whole is SUCCEEDED; anything else is UNCERTAIN, except postings of
        a call refused for others' inputs, which go again once a lookup shows that
        Xledger holds nothing of them.
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
        answer = _Answer.read(body, batch)
        if answer.unnamed and not answer.named and not answer.echoed:
            # Nothing in the answer is about one posting: it is about the request.
            failure = graphql_failure(answer.unnamed, write=True)
            for index in pending:
                results[index] = self._result(postings[index], inputs[index], failure, started)
            return []
        unresolved = []
        for index in pending:
            result = self._own_result(postings[index], inputs[index], answer, status, started)
            if result is None:
                unresolved.append(index)
            else:
                results[index] = result
        if not unresolved:
            return []
        if answer.named and not answer.echoed and not answer.unnamed:
            return self._resend_if_absent(postings, unresolved, inputs, results, started)
        failure = (
            graphql_failure(answer.unnamed, write=True)
            if answer.unnamed
            else _unconfirmed(status, body)
        )
        for index in unresolved:
            results[index] = self._result(postings[index], inputs[index], failure, started)
        return []

    def _own_result(
        self,
        posting: Posting,
        inputs: list[dict[str, Any]],
        answer: _Answer,
        status: int,
        started: float,
    ) -> PostResult | None:
        """What the answer says about this posting's own lines; None when it says nothing."""
        client_ids = [node["clientId"] for node in inputs]
        errors = [e for cid in client_ids for e in answer.named.get(cid, [])]
        stored = [answer.echoed[cid] for cid in client_ids if cid in answer.echoed]
        if errors:
            return self._refused(posting, inputs, errors, bool(stored), status, started)
        if len(stored) == len(client_ids):
            return PostResult(
                reference=posting.reference,
                outcome=Outcome.SUCCEEDED,
                erp_id=str(stored[0]["node"]["dbId"]),
                payload={"inputs": inputs},
                response_status=status,
                response_body=truncate(json.dumps({"edges": stored}, ensure_ascii=False)),
                duration_ms=ms_since(started),
            )
        if stored:
            # Part of the voucher is in Xledger: it must be looked up, never simply resent.
            failure = Failure(
                Outcome.UNCERTAIN,
                Cause.OTHER,
                "",
                None,
                status,
                truncate(json.dumps({"edges": stored}, ensure_ascii=False)),
                note=note(NoteCode.XL_PART_CONFIRMED, reference=posting.reference),
            )
            return self._result(posting, inputs, failure, started, partial=True)
        return None

    def _refused(
        self,
        posting: Posting,
        inputs: list[dict[str, Any]],
        errors: list[dict[str, Any]],
        partly_stored: bool,
        status: int,
        started: float,
    ) -> PostResult:
        message = "; ".join(dict.fromkeys(_message(e) for e in errors))
        failure = Failure(
            Outcome.PERMANENT,
            Cause.HTTP,
            message,
            None,
            status,
            truncate(json.dumps({"errors": errors}, ensure_ascii=False)),
            note=_half_voucher(posting.reference) if partly_stored else None,
        )
        return self._result(posting, inputs, failure, started, partial=partly_stored)

    def _resend_if_absent(
        self,
        postings: list[Posting],
        unresolved: list[int],
        inputs: dict[int, list[dict[str, Any]]],
        results: dict[int, PostResult],
        started: float,
    ) -> list[int]:
        """Postings of a call refused for other postings' inputs: the ones to send again.

        A refusal that names some inputs and echoes none reads as "nothing was stored"
        (all or nothing), but that is unconfirmed: an Xledger that kept the valid inputs
        without echoing them would get duplicates from a blind resend. One lookup settles
        it; when the lookup cannot answer, they are UNCERTAIN.
        """
        try:
            found = self._find([postings[index].reference for index in unresolved])
        except CallFailed as error:
            why = error.failure.said
            failure = Failure(
                Outcome.UNCERTAIN,
                error.failure.cause,
                error.failure.message,
                None,
                error.failure.status,
                error.failure.body,
                note=note(
                    NoteCode.XL_OTHERS_REFUSED_UNCHECKED,
                    reason=why.stored() if why else error.failure.message,
                ),
            )
            for index in unresolved:
                results[index] = self._result(postings[index], inputs[index], failure, started)
            return []
        resend = []
        for index in unresolved:
            posting = postings[index]
            hit = found.get(posting.reference)
            if hit is None:
                resend.append(index)
            elif hit.complete:
                results[index] = PostResult(
                    reference=posting.reference,
                    outcome=Outcome.SUCCEEDED,
                    erp_id=hit.erp_id,
                    note=note(NoteCode.XL_KEPT_UNSAID),
                    payload={"inputs": inputs[index]},
                    duration_ms=ms_since(started),
                )
            else:
                failure = Failure(
                    Outcome.UNCERTAIN, Cause.OTHER, "", note=_half_voucher(posting.reference)
                )
                results[index] = self._result(
                    posting, inputs[index], failure, started, partial=True
                )
        return resend

    def _result(
        self,
        posting: Posting,
        inputs: list[dict[str, Any]],
        failure: Failure,
        started: float,
        *,
        partial: bool = False,
    ) -> PostResult:
        payload = {"inputs": inputs}
        result = failed_result(posting.reference, payload, failure, started, self.config.secrets())
        return replace(result, partial=True) if partial else result

    # --- finding vouchers again -----------------------------------------------------------

    def _find(self, references: list[str]) -> dict[str, Found]:
        """The vouchers Xledger holds under these references, whole or in part.

        GL import items first (waiting for, or refused by, the import job); only the
        references not found whole there are looked for among posted transactions, since
        the import job may take its items out of glImportItems.
        """
        wanted = list(dict.fromkeys(references))
        found: dict[str, Found] = {}
        for chunk in _chunks(wanted, LOOKUP_CHUNK):
            importing = _by_reference(self._import_items_by_reference(chunk), chunk)
            rest = [r for r in chunk if len(importing.get(r, [])) < NODES_PER_POSTING]
            posted = _by_reference(self._transactions_by_reference(rest), rest) if rest else {}
            for reference in chunk:
                hit = _found(posted.get(reference, []), importing.get(reference, []))
                if hit is not None:
                    found[reference] = hit
        return found

    def _settle_chunk(self, references: list[str], held: dict[str, str]) -> dict[str, Settled]:
        posted = _by_reference(self._transactions_by_reference(references), references)
        settled = {
            reference: Settled(
                Settlement.POSTED,
                erp_id=_first_id(posted[reference]),
                response_body=truncate(json.dumps(posted[reference], ensure_ascii=False)),
            )
            for reference in references
            if posted.get(reference)
        }
        rest = [r for r in references if r not in settled]
        if not rest:
            return settled
        # Every line's id, not only the one the mutation answered with: the import job
        # may name any line of a voucher it refuses.
        # An id that is not an Int64String would make Xledger refuse the whole query.
        owner = {str(held[r]): r for r in rest if str(held[r]).isdigit()}
        reference: str | None
        for reference, lines in _by_reference(self._import_items_by_reference(rest), rest).items():
            # Lines older than the voucher held belong to an earlier send of the same
            # record, e.g. one the import refused before a person sent it again: their
            # errors say nothing about this one.
            owner.update(
                {
                    str(line["dbId"]): reference
                    for line in lines
                    if _not_older(line, held[reference])
                }
            )
        refusals: dict[str, list[dict[str, Any]]] = {}
        for error in self._import_item_errors(list(owner)):
            reference = owner.get(str(error.get("transactionDbId")))
            if reference and not _is_warning(error):
                refusals.setdefault(reference, []).append(error)
        for reference in rest:
            errors = refusals.get(reference)
            settled[reference] = (
                Settled(
                    Settlement.REJECTED,
                    message="; ".join(dict.fromkeys(_message(e) for e in errors)),
                    erp_id=held[reference],
                    response_body=truncate(json.dumps(errors, ensure_ascii=False)),
                )
                if errors
                else Settled(Settlement.WAITING)
            )
        return settled

    def _import_items_by_reference(self, references: list[str]) -> list[dict[str, Any]]:
        """GL import items whose extIdentifier is one of `references`.

        UNCONFIRMED for the real Xledger: that `glImportItems` accepts the filter
        `extIdentifier_in`. If it does not, Xledger answers a GraphQL error, this raises
        (CallFailed), and nothing is claimed found or resent.
        """
        return list(
            self._paged("glImportItems", GL_IMPORT_ITEMS_BY_REFERENCE, {"refs": references})
        )

    def _transactions_by_reference(self, references: list[str]) -> list[dict[str, Any]]:
        """Posted transactions whose extIdentifier is one of `references`.

        UNCONFIRMED for the real Xledger: that the import job carries `extIdentifier`
        onto the transactions it posts, and that `transactions` accepts the filter
        `extIdentifier_in`. If not, this raises (CallFailed) and nothing is claimed posted.
        """
        return list(self._paged("transactions", TRANSACTIONS_BY_REFERENCE, {"refs": references}))

    def _period_nodes(self, field_name: str, start: date, end: date) -> Iterator[list[dict]]:
        """Every node of `glImportItems` or `transactions` posted in the period, a page
        (one query) at a time.

        UNCONFIRMED for the real Xledger: that these take `postedDate_gte`/`postedDate_lte`
        (the documented suffix style; assumption xledger_posted_date_filter). If the first
        query is refused for naming them, every node is read instead (no filter) and the
        period is kept on our side: slower, never wrong. The connector remembers it.
        """
        fields = self._entry_fields()
        if self._date_filter is not False:
            query = _period_query(field_name, fields, filtered=True)
            variables = {"from": start.isoformat(), "to": end.isoformat()}
            first = True
            try:
                for nodes in self._pages(field_name, query, variables, ENTRIES_PAGE_SIZE):
                    first, self._date_filter = False, True
                    yield nodes
                return
            except CallFailed as error:
                if not (first and _filter_refused(error.failure, DATE_FILTER_FIELDS)):
                    raise
                logger.warning(
                    "%s refused the posted-date filter: reading all of %s", ERP, field_name
                )
                self._date_filter = False
        query = _period_query(field_name, fields, filtered=False)
        yield from self._pages(field_name, query, {}, ENTRIES_PAGE_SIZE)

    def _entry_fields(self) -> str:
        """What an entry needs of a line; the cost center from the configured glObjectN."""
        return (
            "dbId trRegNumber extIdentifier account { code } amount currency postedDate "
            f"glObject{self.config.cost_center_object} {{ code }}"
        )

    def _not_refused(self, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """GL import items without an error from the import job: the import refused the
        others (a late rejection), so Xledger does not hold those postings."""
        ids = [str(node.get("dbId")) for node in nodes if str(node.get("dbId", "")).isdigit()]
        refused = {
            str(error.get("transactionDbId"))
            for error in self._import_item_errors(ids)
            if not _is_warning(error)
        }
        return [node for node in nodes if str(node.get("dbId")) not in refused]

    def _voucher_entry(
        self, source: EntrySource
    ) -> Callable[[list[dict[str, Any]]], ErpEntry | None]:
        glob = f"glObject{self.config.cost_center_object}"

        def fold(lines: list[dict[str, Any]]) -> ErpEntry | None:
            """One voucher (its lines share extIdentifier and trRegNumber): the expense
            side is the first debit line; its amount is the net of the lines on its account."""
            try:
                debits = [line for line in lines if amount_of(line["amount"]) > 0]
                expense = (debits or lines)[0]
                account = _code(expense.get("account"))
                return ErpEntry(
                    reference=str(expense["extIdentifier"]),
                    erp_id=str(expense["dbId"]),
                    source=source,
                    posting_date=day_of(expense["postedDate"]),
                    amount=sum(
                        (
                            amount_of(line["amount"])
                            for line in lines
                            if _code(line.get("account")) == account
                        ),
                        Decimal(0),
                    ),
                    account=account,
                    cost_center=_code(expense.get(glob)),
                    currency=str(expense.get("currency") or ""),
                    payable_account=next(
                        (c for line in lines if (c := _code(line.get("account"))) != account), ""
                    ),
                )
            except (KeyError, ValueError):
                raise CallFailed(_unexpected_answer(write=False, body=json.dumps(lines))) from None

        return fold

    def _import_item_errors(self, db_ids: list[str]) -> list[dict[str, Any]]:
        """What the import job wrote into glImportItemErrors about these GL import items.

        UNCONFIRMED for the real Xledger: that a refused item's errors carry its dbId in
        `transactionDbId` and can be filtered by `transactionDbId_in`, and that
        `errorLevel` tells warnings (which do not stop a voucher) from errors.
        """
        errors: list[dict[str, Any]] = []
        for chunk in _chunks(db_ids, ID_CHUNK):
            errors += self._paged("glImportItemErrors", GL_IMPORT_ITEM_ERRORS, {"ids": chunk})
        return errors

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
            for node in self._paged("objectValues", OBJECT_VALUES, {"kind": str(kind)})
        ]

    def _paged(
        self, field_name: str, query: str, variables: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        """Every node of a Relay connection (see `_pages`)."""
        for nodes in self._pages(field_name, query, variables):
            yield from nodes

    def _pages(
        self,
        field_name: str,
        query: str,
        variables: dict[str, Any],
        page_size: int | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """A Relay connection one page (one query) at a time, `after` the last edge's
        cursor while hasNextPage.

        A page that promises more but gives no usable cursor raises: a lookup that read
        only part of the answer could call a voucher absent and have it sent twice.
        """
        after: str | None = None
        while True:
            page = {**variables, "first": page_size or self.config.page_size, "after": after}
            body, _status = self._graphql(query, page, field_name, 1, False)
            if body.get("errors"):
                raise CallFailed(graphql_failure(body["errors"], write=False))
            try:
                connection = body["data"][field_name]
                edges = connection["edges"]
                has_next = bool(connection["pageInfo"]["hasNextPage"])
                nodes = [edge["node"] for edge in edges]
                cursor = edges[-1].get("cursor") if edges else None
            except (KeyError, TypeError, AttributeError):
                raise CallFailed(_unexpected_answer(write=False)) from None
            yield nodes
            if not has_next:
                return
            if not cursor or cursor == after:
                raise CallFailed(_unexpected_answer(write=False))
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
        return bool(errors and _is_credential_error(errors))

    def _authorization(self) -> str:
        if self.config.auth == "token":
            return f"token {self.config.api_token}"
        return f"Bearer {_access_token(self.config)}"

    def _log(self, operation: str, count: int, status: str, started: float) -> None:
        log_call(logger, erp=ERP, operation=operation, count=count, status=status, started=started)

    # --- admin messages -----------------------------------------------------------------

    def admin_message(self, failure: Failure) -> Note:
        if failure.status == 403 or failure.note is not None:
            return describe_failure(
                failure, erp=ERP, host=self._host, credential=self.config.credential_name
            )
        if failure.outcome is Outcome.AUTHENTICATION and self.config.auth == "token":
            return note(NoteCode.XL_API_TOKEN_REFUSED)
        if failure.outcome is Outcome.AUTHENTICATION:
            return note(NoteCode.XL_CLIENT_REFUSED)
        if failure.outcome is Outcome.PERMANENT and failure.status == 200:
            return note(NoteCode.XL_REQUEST_REFUSED)  # its words travel as the ERP's
        return describe_failure(
            failure, erp=ERP, host=self._host, credential=self.config.credential_name
        )

    def _detail(self, accounts: list[Account], kinds: list[Dimension]) -> list[Note]:
        kind_id = self.config.cost_center_kind_db_id
        found = note(NoteCode.XL_FOUND_ACCOUNTS, host=self._host, count=len(accounts))
        if kind_id is None:
            return [found, note(NoteCode.CHOOSE_OBJECT_KIND)]
        names = {kind.id: kind.name for kind in kinds}
        if str(kind_id) not in names:
            return [found, note(NoteCode.OBJECT_KIND_NOT_FOUND, kind=kind_id)]
        return [found, note(NoteCode.COST_CENTERS_FROM, kind=kind_id, name=names[str(kind_id)])]


# --- small helpers ----------------------------------------------------------------------------


DATE_FILTER_FIELDS = ("postedDate_gte", "postedDate_lte")


def _period_query(field_name: str, fields: str, *, filtered: bool) -> str:
    """The query reading `field_name` for reconciliation, with or without the period filter."""
    declared = ", $from: String, $to: String" if filtered else ""
    argument = ", filter: {postedDate_gte: $from, postedDate_lte: $to}" if filtered else ""
    return (
        f"query Period($first: Int, $after: String{declared}) {{\n"
        f"  {field_name}(first: $first, after: $after{argument}) {{\n"
        f"    edges {{ cursor node {{ {fields} }} }}\n"
        "    pageInfo { hasNextPage }\n"
        "  }\n"
        "}\n"
    )


def _filter_refused(failure: Failure, names: tuple[str, ...]) -> bool:
    """Whether a read was refused for naming a filter field the schema lacks (a validation
    error quoting it), as opposed to any other failure, which must still raise."""
    return failure.outcome is Outcome.PERMANENT and any(name in failure.message for name in names)


def _ours(nodes: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The lines whose extIdentifier carries our prefix (the rest of the ledger is not ours)."""
    return [n for n in nodes if str(n.get("extIdentifier") or "").startswith(prefix)]


def _voucher(node: dict[str, Any]) -> tuple[str, str]:
    """What makes consecutive lines one voucher: reference and voucher number."""
    return (str(node.get("extIdentifier") or ""), str(node.get("trRegNumber")))


def _code(value: Any) -> str:
    """`{code}` of an account or object value, "" when absent."""
    return str(value.get("code") or "") if isinstance(value, dict) else ""


def _local_problem(posting: Posting, seen: set[str]) -> Note | None:
    """Why a posting cannot be sent at all, or None."""
    if posting.reference in seen:
        return note(NoteCode.XL_DUPLICATE_REFERENCE, reference=posting.reference)
    if not 1 <= posting.number <= MAX_TR_REG_NUMBER:
        # trRegNumber groups the voucher's lines and makes a resend recognisable.
        return note(NoteCode.XL_NO_VOUCHER_NUMBER, number=posting.number, limit=MAX_TR_REG_NUMBER)
    try:
        format_amount(posting.amount)
    except (TypeError, ValueError) as error:
        return note(NoteCode.XL_AMOUNT_INVALID, reason=str(error))
    return None


def _half_voucher(reference: str) -> Note:
    return note(NoteCode.XL_HALF_VOUCHER, reference=reference)


def _half_voucher_held(posting: Posting) -> PostResult:
    """A posting a lookup found in part: never sent, since Xledger cannot complete a voucher."""
    return PostResult(
        reference=posting.reference,
        outcome=Outcome.PERMANENT,
        note=note(
            NoteCode.XL_HALF_VOUCHER_ITEM, reference=posting.reference, item=posting.existing_id
        ),
        partial=True,
    )


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _by_reference(nodes: Iterable[dict[str, Any]], wanted: list[str]) -> dict[str, list[dict]]:
    wanted_set = set(wanted)
    grouped: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        reference = node.get("extIdentifier")
        if reference in wanted_set:
            grouped.setdefault(reference, []).append(node)
    return grouped


def _id_order(db_id: Any) -> tuple[int, str]:
    """Int64String ids compared as numbers without parsing: shorter is smaller."""
    text = str(db_id)
    return (len(text), text)


def _not_older(line: dict[str, Any], held_id: str) -> bool:
    """Whether a GL import item was stored with or after the one held (ids only grow)."""
    db_id = str(line.get("dbId", ""))
    if not (db_id.isdigit() and str(held_id).isdigit()):
        return True  # cannot tell: keep it, as before
    return _id_order(db_id) >= _id_order(held_id)


def _newest_voucher(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lines of the latest send of a reference: after a refused import and a resend,
    the refused voucher's lines are still listed with the same reference."""
    return sorted(lines, key=lambda line: _id_order(line["dbId"]))[-NODES_PER_POSTING:]


def _first_id(lines: list[dict[str, Any]]) -> str:
    """The lowest dbId of a voucher's lines: its debit line, the id `post` answered with."""
    return str(min((line["dbId"] for line in lines), key=_id_order))


def _found(posted: list[dict[str, Any]], importing: list[dict[str, Any]]) -> Found | None:
    """A voucher is whole when posted or waiting with both its lines; else in part, or absent."""
    for lines in (posted, importing):
        if len(lines) >= NODES_PER_POSTING:
            return Found(_first_id(_newest_voucher(lines)))
    lines = posted or importing
    return Found(_first_id(lines), complete=False) if lines else None


def _is_warning(error: dict[str, Any]) -> bool:
    return str(error.get("errorLevel") or "").strip().lower() in ("warning", "info", "information")


def _unconfirmed(status: int, body: dict[str, Any]) -> Failure:
    # Answered without echoing our lines or naming them: it may or may not be stored.
    return Failure(
        Outcome.UNCERTAIN,
        Cause.OTHER,
        "",
        None,
        status,
        truncate(json.dumps(body, ensure_ascii=False)),
        note=note(NoteCode.XL_UNCONFIRMED),
    )


def _unexpected_answer(*, write: bool, body: str = "") -> Failure:
    # A write answered with something unreadable may still have been stored.
    outcome = Outcome.UNCERTAIN if write else Outcome.TRANSIENT
    return Failure(
        outcome,
        Cause.OTHER,
        "",
        None,
        200,
        truncate(body),
        note=note(NoteCode.XL_UNREADABLE),
    )
