"""Dynamics 365 Business Central: OData API v2.0 (see reference/erp-contracts.md).

A posting becomes one general journal line in the configured journal (expense
account against the payable account as balancing account) plus its cost-center
dimension set line, both in one `$batch` with `Isolation: snapshot`, so a line
never exists without its cost center. The reference goes into
`externalDocumentNumber` and `documentNumber`, which is how `lookup` finds it
again after an uncertain send: among unposted journal lines, then among posted
general ledger entries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import msal
import requests
from msal.exceptions import MsalError

from .base import (
    Account,
    ConnectionReport,
    CostCenter,
    Dimension,
    Journal,
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

ERP = "Business Central"
CREDENTIAL = "client secret"

# At most 100 operations per $batch; a posting is two (line + dimension set line).
MAX_BATCH_OPERATIONS = 100
OPERATIONS_PER_POSTING = 2

# Field limits of a journal line.
DOCUMENT_NUMBER_MAX = 20
DESCRIPTION_MAX = 100
COMMENT_MAX = 250

# A float holds any decimal of up to 15 significant digits exactly (IEEE 754 double).
FLOAT_EXACT_DIGITS = 15

TWO_PLACES = Decimal("0.01")


@dataclass(frozen=True)
class BusinessCentralConfig:
    tenant_id: str
    environment: str
    company_id: str
    client_id: str
    client_secret: str = field(repr=False)
    journal_code: str
    cost_center_dimension: str = ""
    api_base_url: str = "https://api.businesscentral.dynamics.com"
    authority_host: str = "https://login.microsoftonline.com"
    local_currency: str = "NOK"
    scope: str = "https://api.businesscentral.dynamics.com/.default"
    ca_bundle: str | bool = True
    connect_timeout: float = 5
    read_timeout: float = 60
    page_size: int = 1000

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= 20_000:
            raise ValueError("page_size must be between 1 and 20000 (Business Central's limit)")

    @property
    def authority(self) -> str:
        return f"{self.authority_host.rstrip('/')}/{self.tenant_id}"

    @property
    def api_root(self) -> str:
        base = self.api_base_url.rstrip("/")
        return f"{base}/v2.0/{self.tenant_id}/{self.environment}/api/v2.0"

    def secrets(self) -> tuple[str, ...]:
        return (self.client_secret,) if self.client_secret else ()


# --- MSAL: one application object per credential set ------------------------------------------

_apps: dict[tuple[str, str, str, str], msal.ConfidentialClientApplication] = {}
_apps_lock = threading.Lock()


def _app_key(config: BusinessCentralConfig) -> tuple[str, str, str, str]:
    # A digest of the secret, never the secret itself, in a key that outlives the call.
    # The CA bundle is part of the key because the app's session trusts exactly it.
    digest = hashlib.sha256(config.client_secret.encode()).hexdigest()
    return (config.authority, config.client_id, digest, str(config.ca_bundle))


def msal_app(config: BusinessCentralConfig) -> msal.ConfidentialClientApplication:
    """The application object for these credentials, made once per process.

    MSAL keeps its token cache inside the application object, so a new object per
    call would fetch a new token per call (and meet Entra's throttling).
    Building it reads the tenant's OpenID configuration, which can fail: then
    nothing is cached and the next call tries again.
    """
    key = _app_key(config)
    with _apps_lock:
        app = _apps.get(key)
    if app is not None:
        return app
    app = msal.ConfidentialClientApplication(
        config.client_id,
        client_credential=config.client_secret,
        authority=config.authority,
        # Our pooled session: it trusts the configured CA bundle and has timeouts.
        http_client=make_session(
            config.ca_bundle,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
        ),
        # The authority host is already checked against our allow-list when the
        # integration is saved; instance discovery would instead ask Microsoft's
        # public endpoint whether the host is known (a call to the internet we do
        # not need, and one that fails for any authority Microsoft does not list).
        instance_discovery=False,
    )
    with _apps_lock:
        return _apps.setdefault(key, app)


def forget_app(config: BusinessCentralConfig) -> None:
    with _apps_lock:
        _apps.pop(_app_key(config), None)


def _forget_access_tokens(app: msal.ConfidentialClientApplication) -> None:
    """Drop cached access tokens after the API refused one (revoked, or forgotten by the server)."""
    cache = app.token_cache
    for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
        cache.remove_at(item)


# What Entra ID's AADSTS codes mean, in words an admin can act on.
AADSTS_WORDS = {
    "7000215": (
        "The client secret is wrong. Check that you copied the secret's value, "
        "not its ID, from the app registration in Microsoft Entra ID."
    ),
    "7000222": (
        "The client secret has expired. Create a new client secret for the app "
        "registration in Microsoft Entra ID and save it here."
    ),
    "700016": (
        "No application with this client ID exists in the tenant. Check the client ID "
        "and the tenant ID."
    ),
    "90002": "The tenant was not found. Check the tenant ID.",
    "900023": "The tenant ID is not valid. Check the tenant ID.",
    "70011": "The requested scope was refused. Check the scope setting.",
    "7000229": (
        "The application has no service principal in the tenant. An administrator must "
        "consent to the application in this tenant."
    ),
}


def entra_failure(error: str, description: str, codes: list[Any] | None = None) -> Failure:
    """A refused token request, as a Failure with plain words (never the description's secrets)."""
    code = next((str(c) for c in codes or []), "")
    if not code:
        match = re.search(r"AADSTS(\d+)", description or "")
        code = match.group(1) if match else ""
    if error in ("temporarily_unavailable", "server_error"):
        words = "Microsoft Entra ID is temporarily unavailable. Try again later."
        return Failure(Outcome.TRANSIENT, Cause.HTTP, words, admin=words)
    words = AADSTS_WORDS.get(code) or (
        "Microsoft Entra ID refused the sign-in. Check the tenant ID, client ID and client secret."
    )
    reference = f" (AADSTS{code})" if code else f" ({error})" if error else ""
    words += reference
    return Failure(Outcome.AUTHENTICATION, Cause.HTTP, words, admin=words)


# --- amounts and OData text -------------------------------------------------------------------


def amount_number(amount: Decimal) -> float:
    """A Decimal amount as the JSON number Business Central takes.

    A float is exact for decimals of up to 15 significant digits; this checks
    that the float converts back to the same Decimal, so no amount is ever
    silently rounded on its way to the ledger.
    """
    if not isinstance(amount, Decimal):
        raise TypeError("amounts are Decimal, never float")
    if not amount.is_finite() or amount.quantize(TWO_PLACES) != amount:
        raise ValueError(f"amount {amount} has more than two decimals")
    if len(amount.normalize().as_tuple().digits) > FLOAT_EXACT_DIGITS:
        raise ValueError(f"amount {amount} has more than {FLOAT_EXACT_DIGITS} digits")
    number = float(amount)
    if Decimal(repr(number)) != amount:
        raise ValueError(f"amount {amount} cannot be sent exactly")
    return number


def odata_string(value: str) -> str:
    """An OData string literal: quoted, with single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def odata_filter_query(expression: str) -> str:
    """`$filter=<expression>` percent-encoded (spaces as %20, not '+', which OData may keep)."""
    return "$filter=" + quote(expression, safe="'()")


def journal_line_body(posting: Posting) -> dict[str, Any]:
    comment = posting.claimant_name.strip()
    if posting.claimant_reference:
        comment = f"{comment} ({posting.claimant_reference})".strip()
    return {
        "accountType": "G/L Account",
        "accountNumber": posting.expense_account,
        "postingDate": posting.posting_date.isoformat(),
        "documentNumber": posting.reference,
        "externalDocumentNumber": posting.reference,
        "amount": amount_number(posting.amount),
        "description": posting.description[:DESCRIPTION_MAX],
        "comment": comment[:COMMENT_MAX],
        "balanceAccountType": "G/L Account",
        "balancingAccountNumber": posting.payable_account,
    }


def batch_operations(
    posting: Posting, index: int, company_path: str, journal_id: str, dimension: str
) -> list[dict[str, Any]]:
    """A posting's operations in a $batch: the journal line, then its cost center.

    Ids derive from the posting's position in the `post()` call, so they stay the
    same when the batch is sent again without a refused posting.
    """
    line_id = str(index * OPERATIONS_PER_POSTING + 1)
    operations: list[dict[str, Any]] = [
        {
            "method": "POST",
            "id": line_id,
            "url": f"{company_path}/journals({journal_id})/journalLines",
            "headers": {"Content-Type": "application/json"},
            "body": journal_line_body(posting),
        }
    ]
    if posting.cost_center and dimension:
        operations.append(
            {
                "method": "POST",
                "id": str(index * OPERATIONS_PER_POSTING + 2),
                "url": f"${line_id}/dimensionSetLines",
                "headers": {"Content-Type": "application/json"},
                "body": {"code": dimension, "valueCode": posting.cost_center},
                "dependsOn": [line_id],
            }
        )
    return operations


class BusinessCentralConnector:
    batch_size = MAX_BATCH_OPERATIONS // OPERATIONS_PER_POSTING  # 50

    def __init__(self, config: BusinessCentralConfig) -> None:
        self.config = config
        self._session = make_session(
            config.ca_bundle,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
        )
        self._api = config.api_root
        self._company_path = f"companies({config.company_id})"
        self._journal_id: str | None = None

    def close(self) -> None:
        self._session.close()

    # --- the Connector protocol ---------------------------------------------------------

    def test_connection(self) -> ConnectionReport:
        with admin_errors(self):
            company = self._company()
            accounts = self._accounts()
            dimensions = self._dimensions()
            cost_centers = self._cost_centers(dimensions)
            journals = self._journals()
        return ConnectionReport(
            accounts=accounts,
            cost_centers=cost_centers,
            journals=journals,
            dimensions=dimensions,
            detail=self._detail(company, dimensions, journals),
        )

    def list_accounts(self) -> list[Account]:
        with admin_errors(self):
            return self._accounts()

    def list_cost_centers(self) -> list[CostCenter]:
        with admin_errors(self):
            return self._cost_centers(self._dimensions())

    def list_dimensions(self) -> list[Dimension]:
        with admin_errors(self):
            return self._dimensions()

    def list_journals(self) -> list[Journal]:
        with admin_errors(self):
            return self._journals()

    def post(self, postings: list[Posting]) -> list[PostResult]:
        if len(postings) > self.batch_size:
            raise ValueError(f"at most {self.batch_size} postings per call")
        started = time.monotonic()
        results: dict[int, PostResult] = {}
        pending: list[int] = []
        seen: set[str] = set()
        for index, posting in enumerate(postings):
            problem = self._local_problem(posting, seen)
            seen.add(posting.reference)
            if problem:
                results[index] = PostResult(posting.reference, Outcome.PERMANENT, message=problem)
            else:
                pending.append(index)
        journal_id = ""
        if pending:
            try:
                journal_id = self._journal()
            except CallFailed as error:
                for index in pending:
                    results[index] = self._result(postings[index], [], error.failure, started)
                pending = []
        operations = {
            index: batch_operations(
                postings[index],
                index,
                self._company_path,
                journal_id,
                self.config.cost_center_dimension,
            )
            for index in pending
        }
        while pending:
            pending = self._send(postings, pending, operations, results, started)
        return [results[index] for index in range(len(postings))]

    def lookup(self, references: list[str]) -> dict[str, str]:
        """Reference → journal line id (not yet posted) or G/L entry number (posted)."""
        wanted = list(dict.fromkeys(references))
        found: dict[str, str] = {}
        if not wanted:
            return found
        per_batch = MAX_BATCH_OPERATIONS // 2  # two GETs per reference
        with admin_errors(self):
            journal_id = self._journal()
            for start in range(0, len(wanted), per_batch):
                chunk = wanted[start : start + per_batch]
                found.update(self._lookup_chunk(chunk, journal_id))
        return found

    # --- posting ------------------------------------------------------------------------

    def _local_problem(self, posting: Posting, seen: set[str]) -> str:
        """Why a posting cannot be sent at all, or ""."""
        if posting.reference in seen:
            return f"The reference {posting.reference} appears twice in the same batch."
        if len(posting.reference) > DOCUMENT_NUMBER_MAX:
            # The reference must fit documentNumber: posted G/L entries are found by it.
            return (
                f"The reference {posting.reference} is longer than the {DOCUMENT_NUMBER_MAX} "
                "characters Business Central allows in a document number."
            )
        if posting.currency.upper() != self.config.local_currency.upper():
            return (
                f"The amount is in {posting.currency}, but journal lines through the API are "
                f"in the company's local currency ({self.config.local_currency})."
            )
        try:
            amount_number(posting.amount)
        except (TypeError, ValueError) as error:
            return f"The amount cannot be sent to Business Central: {error}."
        return ""

    def _send(
        self,
        postings: list[Posting],
        pending: list[int],
        operations: dict[int, list[dict[str, Any]]],
        results: dict[int, PostResult],
        started: float,
    ) -> list[int]:
        """Send one snapshot $batch for `pending`; returns the postings to send again at once.

        With `Isolation: snapshot` the batch is one transaction: when an operation
        fails nothing is committed. Postings whose own operation was refused as
        invalid are PERMANENT; the others go again right away without them.
        """
        body = {"requests": [op for index in pending for op in operations[index]]}
        try:
            response, answer = self._call(
                "POST",
                f"{self._api}/$batch",
                json_body=body,
                headers={"Isolation": "snapshot"},
                operation="$batch journalLines",
                count=len(pending),
                write=True,
            )
        except CallFailed as error:
            for index in pending:
                results[index] = self._result(
                    postings[index], operations[index], error.failure, started
                )
            return []
        items = _responses_by_id(answer)
        if items is None:
            failure = _unreadable(write=True, body=response.text, status=response.status_code)
            for index in pending:
                results[index] = self._result(postings[index], operations[index], failure, started)
            return []
        own_failures = {
            index: failure
            for index in pending
            if (failure := _own_failure(operations[index], items)) is not None
        }
        if not own_failures and all(
            _ok(items.get(op["id"])) for index in pending for op in operations[index]
        ):
            for index in pending:
                results[index] = self._success(postings[index], operations[index], items, started)
            return []
        return self._after_rollback(
            postings, pending, operations, results, own_failures, items, started
        )

    def _after_rollback(
        self,
        postings: list[Posting],
        pending: list[int],
        operations: dict[int, list[dict[str, Any]]],
        results: dict[int, PostResult],
        own_failures: dict[int, Failure],
        items: dict[str, dict[str, Any]],
        started: float,
    ) -> list[int]:
        """Decide after a batch that was rolled back: refuse the invalid, resend the rest."""
        refused = {i: f for i, f in own_failures.items() if f.outcome is Outcome.PERMANENT}
        for index, failure in refused.items():
            results[index] = self._result(postings[index], operations[index], failure, started)
        others = [index for index in pending if index not in refused]
        blocking = [f for i, f in own_failures.items() if i not in refused]
        if refused and not blocking:
            return others
        if blocking:
            # Something other than validation failed (a rate limit, a timeout inside):
            # the batch answered, so it was rolled back and nothing is in the ledger.
            failure = blocking[0]
            if failure.outcome is Outcome.UNCERTAIN:
                failure = replace(failure, outcome=Outcome.TRANSIENT)
        else:
            failure = _rolled_back_without_reason(items)
        for index in others:
            results[index] = self._result(postings[index], operations[index], failure, started)
        return []

    def _success(
        self,
        posting: Posting,
        operations: list[dict[str, Any]],
        items: dict[str, dict[str, Any]],
        started: float,
    ) -> PostResult:
        own = [items[op["id"]] for op in operations]
        line = own[0].get("body") or {}
        return PostResult(
            reference=posting.reference,
            outcome=Outcome.SUCCEEDED,
            erp_id=str(line.get("id", "")),
            payload={"requests": operations},
            response_status=int(own[0].get("status", 0)),
            response_body=truncate(json.dumps({"responses": own}, ensure_ascii=False)),
            duration_ms=ms_since(started),
        )

    def _result(
        self,
        posting: Posting,
        operations: list[dict[str, Any]],
        failure: Failure,
        started: float,
    ) -> PostResult:
        payload = {"requests": operations} if operations else {}
        return failed_result(posting.reference, payload, failure, started, self.config.secrets())

    # --- lookup -------------------------------------------------------------------------

    def _lookup_chunk(self, references: list[str], journal_id: str) -> dict[str, str]:
        """One $batch of GETs (no isolation: reads), two per reference."""
        requests_: list[dict[str, Any]] = []
        for n, reference in enumerate(references):
            literal = odata_string(reference)
            requests_.append(
                {
                    "method": "GET",
                    "id": f"{2 * n + 1}",
                    "url": f"{self._company_path}/journals({journal_id})/journalLines?"
                    + odata_filter_query(f"externalDocumentNumber eq {literal}"),
                }
            )
            requests_.append(
                {
                    "method": "GET",
                    "id": f"{2 * n + 2}",
                    "url": f"{self._company_path}/generalLedgerEntries?"
                    + odata_filter_query(f"documentNumber eq {literal}"),
                }
            )
        # Never `Data-Access-Intent: ReadOnly` here: read replicas lag behind, and
        # this read decides whether a posting is sent again.
        _response, answer = self._call(
            "POST",
            f"{self._api}/$batch",
            json_body={"requests": requests_},
            operation="$batch lookup",
            count=len(references),
            write=False,
        )
        items = _responses_by_id(answer)
        if items is None:
            raise CallFailed(_unreadable(write=False))
        found: dict[str, str] = {}
        for n, reference in enumerate(references):
            lines = self._lookup_values(items.get(f"{2 * n + 1}"))
            entries = self._lookup_values(items.get(f"{2 * n + 2}"))
            if lines:
                found[reference] = str(lines[0].get("id", ""))
            elif entries:
                found[reference] = str(entries[0].get("entryNumber", ""))
        return found

    def _lookup_values(self, item: dict[str, Any] | None) -> list[dict[str, Any]]:
        if item is None:
            raise CallFailed(_unreadable(write=False))
        if not _ok(item):
            body = item.get("body")
            raise CallFailed(
                classify_failure(
                    status=int(item.get("status", 0)),
                    headers=item.get("headers") or {},
                    erp_message=erp_message_from(body),
                    body=json.dumps(body, ensure_ascii=False),
                    write=False,
                )
            )
        value = (item.get("body") or {}).get("value")
        return value if isinstance(value, list) else []

    # --- master data --------------------------------------------------------------------

    def _company(self) -> dict[str, Any]:
        for company in self._collection("companies"):
            if str(company.get("id", "")).lower() == self.config.company_id.lower():
                return company
        words = (
            f"The company {self.config.company_id} was not found in environment "
            f"{self.config.environment}. Check the company ID."
        )
        raise CallFailed(Failure(Outcome.PERMANENT, Cause.OTHER, words, admin=words))

    def _accounts(self) -> list[Account]:
        """The accounts a posting may use: not blocked, and open to direct posting.

        Business Central refuses journal lines on a blocked account, and on an
        account without Direct Posting (a control account), so neither is offered
        as a mapping choice.
        """
        return [
            Account(code=str(row["number"]), name=str(row.get("displayName") or ""))
            for row in self._collection(f"{self._company_path}/accounts")
            if not row.get("blocked") and row.get("directPosting", True) is not False
        ]

    def _dimensions(self) -> list[Dimension]:
        return [
            Dimension(
                code=str(row["code"]),
                name=str(row.get("displayName") or ""),
                id=str(row.get("id", "")),
            )
            for row in self._collection(f"{self._company_path}/dimensions")
        ]

    def _cost_centers(self, dimensions: list[Dimension]) -> list[CostCenter]:
        dimension = _find_dimension(dimensions, self.config.cost_center_dimension)
        if dimension is None:
            # Not chosen, or not found: the admin picks one from ConnectionReport.dimensions.
            return []
        path = f"{self._company_path}/dimensions({dimension.id})/dimensionValues"
        return [
            CostCenter(
                code=str(row["code"]),
                name=str(row.get("displayName") or ""),
                dimension=dimension.code,
            )
            for row in self._collection(path)
        ]

    def _journals(self) -> list[Journal]:
        return [
            Journal(
                code=str(row["code"]),
                name=str(row.get("displayName") or ""),
                id=str(row.get("id", "")),
            )
            for row in self._collection(f"{self._company_path}/journals")
        ]

    def _journal(self) -> str:
        """The id of the configured journal, found by its code once per connector."""
        if self._journal_id is None:
            literal = odata_string(self.config.journal_code)
            rows = list(
                self._collection(
                    f"{self._company_path}/journals", odata_filter_query(f"code eq {literal}")
                )
            )
            if not rows:
                words = (
                    f"The journal {self.config.journal_code} does not exist in the company. "
                    "Check the journal code in the integration settings."
                )
                raise CallFailed(Failure(Outcome.PERMANENT, Cause.OTHER, words, admin=words))
            self._journal_id = str(rows[0]["id"])
        return self._journal_id

    def _collection(self, path: str, query: str = "") -> Iterator[dict[str, Any]]:
        """Every row of a collection, following @odata.nextLink."""
        url: str | None = f"{self._api}/{path}" + (f"?{query}" if query else "")
        headers = {"Prefer": f"odata.maxpagesize={self.config.page_size}"}
        operation = "GET " + path.rsplit("/", 1)[-1].split("(")[0]
        while url:
            _response, body = self._call(
                "GET", url, headers=headers, operation=operation, count=1, write=False
            )
            try:
                rows = body["value"]
                next_link = body.get("@odata.nextLink")
            except (KeyError, TypeError):
                raise CallFailed(_unreadable(write=False)) from None
            yield from rows
            url = self._checked_next_link(next_link) if next_link else None

    def _checked_next_link(self, link: str) -> str:
        """A next link must stay on the API's own origin: it is sent our bearer token."""
        api, target = urlsplit(self._api), urlsplit(link)
        if (target.scheme, target.netloc) != (api.scheme, api.netloc):
            raise CallFailed(_unreadable(write=False))
        return link

    # --- one HTTP call ------------------------------------------------------------------

    def _call(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        operation: str,
        count: int,
        write: bool,
    ) -> tuple[requests.Response, Any]:
        """One API call with a bearer token; a refused token is renewed once.

        A 401 means the request was not carried out, so repeating it (a write too)
        is safe; it happens when a cached token was revoked before it expired.
        """
        for attempt in (1, 2):
            token = self._token()
            started = time.monotonic()
            try:
                response = self._session.request(
                    method,
                    url,
                    json=json_body,
                    headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                    timeout=(self.config.connect_timeout, self.config.read_timeout),
                )
            except requests.RequestException as error:
                failure = classify_failure(error, write=write)
                self._log(operation, count, failure.cause.value, started)
                raise CallFailed(failure) from None
            self._log(operation, count, str(response.status_code), started)
            body = json_or_none(response)
            if response.status_code == 401 and attempt == 1:
                _forget_access_tokens(msal_app(self.config))
                continue
            if not 200 <= response.status_code < 300:
                raise CallFailed(
                    classify_failure(
                        status=response.status_code,
                        headers=response.headers,
                        erp_message=erp_message_from(body),
                        body=response.text,
                        write=write,
                    )
                )
            if response.status_code == 204:
                return response, {}  # Microsoft.NAV.post and other actions answer no content
            if body is None:
                raise CallFailed(
                    _unreadable(write=write, body=response.text, status=response.status_code)
                )
            return response, body
        raise AssertionError("unreachable")  # pragma: no cover

    def _token(self) -> str:
        started = time.monotonic()
        try:
            app = msal_app(self.config)
            result = app.acquire_token_for_client(scopes=[self.config.scope])
        except requests.RequestException as error:
            failure = classify_failure(error, write=False)
            self._log("token", 1, failure.cause.value, started)
            raise CallFailed(failure) from None
        except ValueError as error:
            # MSAL could not read the tenant's OpenID configuration (unknown tenant).
            failure = _discovery_failure(error, self.config)
            self._log("token", 1, "discovery failed", started)
            raise CallFailed(failure) from None
        except (MsalError, RuntimeError):
            # MSAL's own HTTP error for a 5xx from the sign-in service (its responses
            # are not requests' responses, so raise_for_status raises this instead).
            words = "Microsoft Entra ID could not be reached properly. Try again later."
            self._log("token", 1, "sign-in service error", started)
            raise CallFailed(Failure(Outcome.TRANSIENT, Cause.HTTP, words, admin=words)) from None
        if "access_token" in result:
            if result.get("token_source") != "cache":
                self._log("token", 1, "ok", started)
            return str(result["access_token"])
        failure = entra_failure(
            str(result.get("error", "")),
            str(result.get("error_description", "")),
            result.get("error_codes"),
        )
        self._log("token", 1, f"refused {result.get('error', '')}", started)
        raise CallFailed(failure)

    def _log(self, operation: str, count: int, status: str, started: float) -> None:
        log_call(logger, erp=ERP, operation=operation, count=count, status=status, started=started)

    # --- admin messages -----------------------------------------------------------------

    def admin_message(self, failure: Failure) -> str:
        if failure.status == 404 and not failure.admin:
            return (
                f"Business Central did not find environment {self.config.environment} or "
                f"company {self.config.company_id} for this tenant. Check both settings."
            )
        return describe_failure(
            failure, erp=ERP, host=host_of(self.config.api_base_url), credential=CREDENTIAL
        )

    def _detail(
        self, company: dict[str, Any], dimensions: list[Dimension], journals: list[Journal]
    ) -> str:
        name = company.get("name") or company.get("displayName") or self.config.company_id
        detail = f"company {name}, environment {self.config.environment}"
        if _find_dimension(dimensions, self.config.cost_center_dimension) is None:
            detail += "; choose the dimension that holds the cost centers"
        if not any(j.code.upper() == self.config.journal_code.upper() for j in journals):
            detail += f"; journal {self.config.journal_code} was not found, choose another"
        return detail


# --- small helpers ----------------------------------------------------------------------------


def _find_dimension(dimensions: list[Dimension], code: str) -> Dimension | None:
    if not code:
        return None
    return next((d for d in dimensions if d.code.upper() == code.upper()), None)


def _discovery_failure(error: ValueError, config: BusinessCentralConfig) -> Failure:
    text = " ".join(str(e) for e in _exception_chain(error))
    match = re.search(r"AADSTS(\d+)", text)
    if match:
        return entra_failure("invalid_tenant", "", [match.group(1)])
    words = (
        f"The sign-in configuration of tenant {config.tenant_id} could not be read from "
        f"{host_of(config.authority_host)}. Check the tenant ID and the sign-in address."
    )
    return Failure(Outcome.AUTHENTICATION, Cause.OTHER, words, admin=words)


def _exception_chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _responses_by_id(answer: Any) -> dict[str, dict[str, Any]] | None:
    try:
        return {str(item["id"]): item for item in answer["responses"]}
    except (KeyError, TypeError):
        return None


def _ok(item: dict[str, Any] | None) -> bool:
    return item is not None and 200 <= int(item.get("status", 0)) < 300


def _own_failure(
    operations: list[dict[str, Any]], items: dict[str, dict[str, Any]]
) -> Failure | None:
    """The failure of this posting's own operation (not a 424 caused by another's)."""
    for op in operations:
        item = items.get(op["id"])
        if item is None or _ok(item):
            continue
        status = int(item.get("status", 0))
        if status == 424:
            continue
        body = item.get("body")
        return classify_failure(
            status=status,
            headers=item.get("headers") or {},
            erp_message=erp_message_from(body),
            body=json.dumps(body, ensure_ascii=False),
            write=True,
        )
    return None


def _rolled_back_without_reason(items: dict[str, dict[str, Any]]) -> Failure:
    """No operation of ours failed, yet not all succeeded.

    424s say the batch was rolled back (send again); operations missing from the
    answer say nothing certain, so the postings are looked up before a resend.
    """
    body = truncate(json.dumps({"responses": list(items.values())}, ensure_ascii=False))
    if any(int(item.get("status", 0)) == 424 for item in items.values()):
        words = "Business Central rolled the batch back without naming a failed operation."
        return Failure(Outcome.TRANSIENT, Cause.HTTP, words, None, 200, body)
    words = "Business Central's answer did not account for every operation of the batch."
    return Failure(Outcome.UNCERTAIN, Cause.OTHER, words, None, 200, body)


def _unreadable(*, write: bool, body: str = "", status: int | None = None) -> Failure:
    # A write answered with something unreadable may still have been committed.
    outcome = Outcome.UNCERTAIN if write else Outcome.TRANSIENT
    words = "Business Central gave an answer that could not be read."
    return Failure(outcome, Cause.OTHER, words, None, status, truncate(body))
