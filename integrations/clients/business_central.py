"""Dynamics 365 Business Central: OData API v2.0 (see docs/erp/business-central.md).

A posting becomes one general journal line in the configured journal (expense
account against the payable account as balancing account) and, on that line, its
cost-center dimension set line. Business Central documents no way to refer, inside
a `$batch`, to an entity created earlier in the same batch, so the two go in two
steps: every line in one `$batch` with `Isolation: snapshot`, then each created
line's dimension on the id its 201 returned, in a second `$batch` whose operations
each stand alone. A posting is SUCCEEDED only when both exist; a line whose
dimension could not be added is reported `partial`, and completed later through
`Posting.existing_id` rather than sent again.

The reference goes into `externalDocumentNumber` and `documentNumber`, which is how
`lookup` finds it again: among unposted journal lines (with or without their
dimension), then among posted general ledger entries. Business Central stores both
upper-cased (they are Code fields), so references are looked up upper-cased.
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
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import msal
import requests
from msal.exceptions import MsalError

from integrations.notes import Note, NoteCode, note

from .base import (
    Account,
    ConnectionReport,
    CostCenter,
    Dimension,
    EntrySource,
    ErpEntry,
    Found,
    Journal,
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
    describe_failure,
    erp_message_from,
    failed_result,
    host_of,
    json_or_none,
    log_call,
    make_session,
    ms_since,
    port_of,
)
from .limits import Pacer
from .reading import amount_of, day_of, folded_pages, in_period

logger = logging.getLogger(__name__)

ERP = "Business Central"
CREDENTIAL = "client_secret"  # a code notes.py words

# At most 100 operations per $batch ("too many parts" beyond, code Unknown).
MAX_BATCH_OPERATIONS = 100
# A lookup asks two things per reference in one batch: unposted lines, posted entries.
LOOKUP_REFERENCES_PER_BATCH = MAX_BATCH_OPERATIONS // 2

# Entries per page when reading for reconciliation (`entries`). Business Central serves up
# to 20,000 per page; 5,000 keeps a page (each entry with its dimension set lines expanded)
# to a few megabytes, answered well inside the read timeout and far from the 8-minute
# operation limit, while 100,000 records (200,000 G/L entries once posted) still take
# about 40 requests of the 6,000 a credential may send per 5 minutes.
ENTRIES_PAGE_SIZE = 5000
# The navigation property the API v2.0 reference lists for journalLine and
# generalLedgerEntry; `$expand` brings a page's cost centers in the same request.
DIMENSIONS = "dimensionSetLines"

# The only accountType that takes journal lines (not Heading, Total, Begin-/End-Total).
POSTING_ACCOUNT = "Posting"

# Business Central's page for service-to-service apps (formerly "Azure Active Directory
# Applications"); automation-apis-using-s2s-authentication.md.
ENTRA_APPLICATIONS_PAGE = "Microsoft Entra Applications"


# Field limits of a journal line.
DOCUMENT_NUMBER_MAX = 20
DESCRIPTION_MAX = 100
COMMENT_MAX = 250

# A float holds any decimal of up to 15 significant digits exactly (IEEE 754 double).
FLOAT_EXACT_DIGITS = 15

TWO_PLACES = Decimal("0.01")

# The shapes of what goes into the API's and the sign-in's URL paths. Checked when an
# integration is saved (integrations/validators.py uses these) and again before any
# call, so a value saved earlier, or set elsewhere, can never change a request's path.
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# A tenant is its GUID or one of its domain names (contoso.onmicrosoft.com).
TENANT_DOMAIN = re.compile(
    r"(?=.{4,253}\Z)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,63}"
)
# Business Central environment names: letters, digits, '-' and '_', at most 30.
ENVIRONMENT = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]{0,29}")


def is_tenant(value: str) -> bool:
    return bool(GUID.fullmatch(value) or TENANT_DOMAIN.fullmatch(value))


def is_environment(value: str) -> bool:
    return bool(ENVIRONMENT.fullmatch(value))


def is_company_id(value: str) -> bool:
    return bool(GUID.fullmatch(value))


def _segment(value: str) -> str:
    """A value as one URL path segment: even a shape check missed cannot add a '/' or '..'."""
    return quote(value, safe="")


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
    # ERP_ALLOWED_HOSTS entries (see http.AllowList). None: exactly the configured
    # addresses' origins, so a connector built without a list still goes nowhere else.
    allowed_hosts: tuple[str, ...] | None = None
    # Paces the API's requests in a window shared by every worker (limits.py); None
    # sends unpaced (unit tests, verify_erp's single calls).
    pacer: Pacer | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= 20_000:
            raise ValueError("page_size must be between 1 and 20000 (Business Central's limit)")

    @property
    def authority(self) -> str:
        return f"{self.authority_host.rstrip('/')}/{_segment(self.tenant_id)}"

    @property
    def api_root(self) -> str:
        base = self.api_base_url.rstrip("/")
        return f"{base}/v2.0/{_segment(self.tenant_id)}/{_segment(self.environment)}/api/v2.0"

    @property
    def company_path(self) -> str:
        return f"companies({_segment(self.company_id)})"

    def secrets(self) -> tuple[str, ...]:
        return (self.client_secret,) if self.client_secret else ()

    @property
    def allow_list(self) -> AllowList:
        if self.allowed_hosts is not None:
            return AllowList.parse(self.allowed_hosts)
        return AllowList.of_urls(self.api_base_url, self.authority_host)

    def path_problem(self) -> Note | None:
        """Why tenant, environment or company cannot go into a URL path; or None."""
        if not is_tenant(self.tenant_id):
            return note(NoteCode.BC_TENANT_INVALID, tenant=repr(self.tenant_id))
        if not is_environment(self.environment):
            return note(NoteCode.BC_ENVIRONMENT_INVALID, environment=repr(self.environment))
        if not is_company_id(self.company_id):
            return note(NoteCode.BC_COMPANY_ID_INVALID, company=repr(self.company_id))
        return None


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
        # Our pooled session: it trusts the configured CA bundle, has timeouts, and its
        # gate checks every address MSAL asks for (discovery, token) against the
        # allow-list and refuses redirects.
        http_client=make_session(
            config.ca_bundle,
            allowed=config.allow_list,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
        ),
        # The authority host is checked against our allow-list (at save, and by the
        # session's gate on every call); instance discovery would instead ask
        # Microsoft's public endpoint whether the host is known (a call to the
        # internet we do not need, and one that fails for any authority Microsoft
        # does not list).
        instance_discovery=False,
    )
    # Building the app read the discovery document; nothing has been sent with the
    # secret yet. Where that document says to send it is checked before anything is.
    _check_token_endpoint(str(getattr(app.authority, "token_endpoint", "")), config)
    with _apps_lock:
        return _apps.setdefault(key, app)


def _check_token_endpoint(endpoint: str, config: BusinessCentralConfig) -> None:
    """The client secret goes only to the sign-in host itself, over https.

    MSAL posts the secret to whatever `token_endpoint` the tenant's discovery
    document names. Entra ID names its own host; a document that names another
    (a tampered answer, a wrong sign-in address) must not receive the secret, even
    when that host is on the allow-list for another purpose.
    """
    target, authority = urlsplit(endpoint), urlsplit(config.authority_host)
    same_origin = (target.scheme, target.hostname, port_of(endpoint)) == (
        "https",
        authority.hostname,
        port_of(config.authority_host),
    )
    if same_origin and config.allow_list.problem(endpoint) is None:
        return
    said = note(
        NoteCode.BC_TOKEN_ENDPOINT_ELSEWHERE,
        tenant=config.tenant_id,
        endpoint=host_of(endpoint) or "?",
        authority=host_of(config.authority_host),
    )
    raise CallFailed(Failure(Outcome.AUTHENTICATION, Cause.NOT_ALLOWED, "", note=said))


def _forget_access_tokens(app: msal.ConfidentialClientApplication) -> None:
    """Drop cached access tokens after the API refused one (revoked, or forgotten by the server)."""
    cache = app.token_cache
    for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
        cache.remove_at(item)


# What Entra ID's AADSTS codes mean, in words an admin can act on (notes.py).
AADSTS_NOTES = {
    "7000215": NoteCode.ENTRA_SECRET_WRONG,
    "7000222": NoteCode.ENTRA_SECRET_EXPIRED,
    "700016": NoteCode.ENTRA_NO_APPLICATION,
    "90002": NoteCode.ENTRA_TENANT_NOT_FOUND,
    "900023": NoteCode.ENTRA_TENANT_INVALID,
    "70011": NoteCode.ENTRA_SCOPE_REFUSED,
    "7000229": NoteCode.ENTRA_NO_SERVICE_PRINCIPAL,
}


def entra_failure(error: str, description: str, codes: list[Any] | None = None) -> Failure:
    """A refused token request, as a Failure with a note; Entra's code is its own words
    (never the description: it may echo secrets)."""
    code = next((str(c) for c in codes or []), "")
    if not code:
        match = re.search(r"AADSTS(\d+)", description or "")
        code = match.group(1) if match else ""
    if error in ("temporarily_unavailable", "server_error"):
        return Failure(Outcome.TRANSIENT, Cause.HTTP, error, note=note(NoteCode.ENTRA_UNAVAILABLE))
    said = note(AADSTS_NOTES.get(code, NoteCode.ENTRA_REFUSED))
    code_said = f"AADSTS{code}" if code else error
    return Failure(Outcome.AUTHENTICATION, Cause.HTTP, code_said, note=said)


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


def operation_id(index: int) -> str:
    """A posting's operation id in every batch of one `post()` call: its position, from 1.

    Each batch holds at most one operation per posting, so the id maps an answer back
    to its posting, and it stays the same when a batch is sent again without a refused one.
    """
    return str(index + 1)


def line_operation(
    posting: Posting, index: int, company_path: str, journal_id: str
) -> dict[str, Any]:
    return {
        "method": "POST",
        "id": operation_id(index),
        "url": f"{company_path}/journals({journal_id})/journalLines",
        "headers": {"Content-Type": "application/json"},
        "body": journal_line_body(posting),
    }


def dimension_operation(
    posting: Posting, index: int, company_path: str, line_id: str, dimension: str
) -> dict[str, Any]:
    """The cost center on an existing line (api-reference dynamics_dimensionsetline_create)."""
    return {
        "method": "POST",
        "id": operation_id(index),
        "url": f"{company_path}/journalLines({line_id})/dimensionSetLines",
        "headers": {"Content-Type": "application/json"},
        "body": {"code": dimension, "valueCode": posting.cost_center},
    }


def delete_operation(
    index: int, company_path: str, journal_id: str, line_id: str
) -> dict[str, Any]:
    """Remove a line again (api-reference dynamics_journalline_delete).

    If-Match is required there; "*" matches whatever version the line has, which is
    right for a line this call created a moment ago.
    """
    return {
        "method": "DELETE",
        "id": operation_id(index),
        "url": f"{company_path}/journals({journal_id})/journalLines({line_id})",
        "headers": {"If-Match": "*"},
    }


@dataclass
class _InFlight:
    """One posting during a `post()` call: what was sent for it, and its line once known."""

    index: int
    posting: Posting
    operations: list[dict[str, Any]] = field(default_factory=list)
    line_id: str = ""

    @property
    def payload(self) -> dict[str, Any]:
        return {"requests": self.operations} if self.operations else {}


class BusinessCentralConnector:
    #: A `$batch` takes at most 100 operations; each batch of a `post()` call holds one
    #: operation per posting (the line, then its dimension), so 100 postings fit.
    batch_size = MAX_BATCH_OPERATIONS

    #: A journal line Business Central accepted is there for good (nothing rejects it later).
    settles_later = False
    settle_chunk = MAX_BATCH_OPERATIONS  # never asked: nothing settles later

    def __init__(self, config: BusinessCentralConfig) -> None:
        self.config = config
        self._session = make_session(
            config.ca_bundle,
            allowed=config.allow_list,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            pacer=config.pacer,
        )
        self._api = config.api_root
        self._company_path = config.company_path
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
            details=self._detail(company, dimensions, journals),
        )

    def list_accounts(self) -> list[Account]:
        with admin_errors(self):
            return self._accounts()

    def list_cost_centers(self) -> list[CostCenter]:
        with admin_errors(self):
            return self._cost_centers(self._dimensions())

    def list_journals(self) -> list[Journal]:
        with admin_errors(self):
            return self._journals()

    def post(self, postings: list[Posting]) -> list[PostResult]:
        if len(postings) > self.batch_size:
            raise ValueError(f"at most {self.batch_size} postings per call")
        started = time.monotonic()
        results: dict[int, PostResult] = {}
        pending = self._sendable(postings, results)
        journal_id = ""
        if pending:
            try:
                journal_id = self._journal()
            except CallFailed as error:
                for index in pending:
                    results[index] = self._failed(
                        _InFlight(index, postings[index]), error.failure, started
                    )
                pending = []
        flights = {index: _InFlight(index, postings[index]) for index in pending}
        new = [flights[i] for i in pending if not postings[i].existing_id]
        held = [flights[i] for i in pending if postings[i].existing_id]
        with_lines = self._create_lines(new, journal_id, results, started)
        for flight in held:
            flight.line_id = flight.posting.existing_id
        held = self._lacking_dimension(held, results, started)
        self._complete(with_lines + held, journal_id, results, started)
        return [results[index] for index in range(len(postings))]

    def lookup(self, references: list[str]) -> dict[str, Found]:
        """Reference → the unposted journal line (whole or without its dimension) or
        the posted G/L entry number (always whole)."""
        wanted = list(dict.fromkeys(references))
        found: dict[str, Found] = {}
        if not wanted:
            return found
        with admin_errors(self):
            journal_id = self._journal()
            lines: dict[str, str] = {}
            for start in range(0, len(wanted), LOOKUP_REFERENCES_PER_BATCH):
                chunk = wanted[start : start + LOOKUP_REFERENCES_PER_BATCH]
                entries, chunk_lines = self._lookup_chunk(chunk, journal_id)
                found.update(entries)
                lines.update(chunk_lines)
            found.update(self._lines_found(lines))
        return found

    def entries(self, start: date, end: date, prefix: str) -> Iterator[list[ErpEntry]]:
        """Unposted lines of the configured journal, then posted G/L entries, by document
        number prefix and posting date, a page of up to ENTRIES_PAGE_SIZE per request.

        The prefix is upper-cased: document numbers are Code fields, stored so.
        """
        if start > end:
            raise ValueError("the period ends before it starts")
        wanted = prefix.upper()
        with admin_errors(self):
            query = self._period_query(start, end, wanted)
            lines = self._pages(
                f"{self._company_path}/journals({self._journal()})/journalLines",
                query,
                ENTRIES_PAGE_SIZE,
            )
            for rows in lines:
                page = [
                    entry
                    for row in rows
                    if (entry := self._line_entry(row)) is not None
                    and in_period(entry.reference, entry.posting_date, start, end, wanted)
                ]
                if page:
                    yield page
            posted = self._pages(
                f"{self._company_path}/generalLedgerEntries", query, ENTRIES_PAGE_SIZE
            )
            for page in folded_pages(posted, _document, self._ledger_entry):
                kept = [
                    e for e in page if in_period(e.reference, e.posting_date, start, end, wanted)
                ]
                if kept:
                    yield kept

    def settle(self, held: dict[str, str]) -> dict[str, Settled]:
        """A journal line Business Central accepted is never refused later: all POSTED."""
        return {
            reference: Settled(Settlement.POSTED, erp_id=erp_id)
            for reference, erp_id in held.items()
        }

    # --- posting: checks before anything is sent -----------------------------------------

    def _sendable(self, postings: list[Posting], results: dict[int, PostResult]) -> list[int]:
        """The postings that may be sent; the others get their PERMANENT result here."""
        pending: list[int] = []
        seen: set[str] = set()
        for index, posting in enumerate(postings):
            problem = self._local_problem(posting, seen)
            seen.add(posting.reference.upper())
            if problem:
                results[index] = PostResult(posting.reference, Outcome.PERMANENT, note=problem)
            else:
                pending.append(index)
        return pending

    def _local_problem(self, posting: Posting, seen: set[str]) -> Note | None:
        """Why a posting cannot be sent at all, or None."""
        if posting.reference.upper() in seen:
            # Business Central upper-cases the reference: two that differ in case collide.
            return note(NoteCode.BC_DUPLICATE_REFERENCE, reference=posting.reference)
        if len(posting.reference) > DOCUMENT_NUMBER_MAX:
            # The reference must fit documentNumber: posted G/L entries are found by it.
            return note(
                NoteCode.BC_REFERENCE_TOO_LONG,
                reference=posting.reference,
                limit=DOCUMENT_NUMBER_MAX,
            )
        if posting.currency.upper() != self.config.local_currency.upper():
            return note(
                NoteCode.BC_CURRENCY,
                currency=posting.currency,
                local=self.config.local_currency,
            )
        try:
            amount_number(posting.amount)
        except (TypeError, ValueError) as error:
            return note(NoteCode.BC_AMOUNT_INVALID, reason=str(error))
        return None

    def _wants_dimension(self, posting: Posting) -> bool:
        return bool(posting.cost_center and self.config.cost_center_dimension)

    # --- posting: step 1, the journal lines -----------------------------------------------

    def _create_lines(
        self,
        flights: list[_InFlight],
        journal_id: str,
        results: dict[int, PostResult],
        started: float,
    ) -> list[_InFlight]:
        """Create the lines in snapshot batches; returns the postings whose line exists now."""
        for flight in flights:
            flight.operations = [
                line_operation(flight.posting, flight.index, self._company_path, journal_id)
            ]
        created: list[_InFlight] = []
        while flights:
            flights = self._send_lines(flights, created, results, started)
        return created

    def _send_lines(
        self,
        flights: list[_InFlight],
        created: list[_InFlight],
        results: dict[int, PostResult],
        started: float,
    ) -> list[_InFlight]:
        """One `Isolation: snapshot` batch of lines; returns the postings to send again at once.

        The batch is one transaction: when an operation fails, nothing of it is stored,
        although the operations before the failure keep their 2xx answers and the ones
        after it are left out (webservices use-odata-batch.md; Kauffmann, "Batch calls
        with Business Central (2)"). A posting refused as invalid is PERMANENT; the others
        go again at once without it.
        """
        try:
            response, answer = self._call(
                "POST",
                f"{self._api}/$batch",
                json_body={"requests": [f.operations[0] for f in flights]},
                headers={"Isolation": "snapshot"},
                operation="$batch journalLines",
                count=len(flights),
                write=True,
            )
        except CallFailed as error:
            for flight in flights:
                results[flight.index] = self._failed(flight, error.failure, started)
            return []
        items = _responses_by_id(answer)
        if items is None:
            failure = _unreadable(write=True, body=response.text, status=response.status_code)
            return self._fail_all(flights, failure, results, started)
        failures = {
            flight.index: _item_failure(item, write=True)
            for flight in flights
            if (item := items.get(operation_id(flight.index))) is not None and not _ok(item)
        }
        if failures:
            return self._after_rollback(flights, failures, items, results, started)
        if any(operation_id(f.index) not in items for f in flights):
            # Nothing failed, yet not every line was answered: whether the transaction
            # was committed cannot be told, so every posting is looked up before a resend.
            return self._fail_all(flights, _incomplete_answer(items), results, started)
        for flight in flights:
            item = items[operation_id(flight.index)]
            flight.line_id = str((item.get("body") or {}).get("id") or "")
            if flight.line_id:
                created.append(flight)
            else:
                failure = _unreadable(write=True, body=json.dumps(item), status=200)
                results[flight.index] = self._failed(flight, failure, started)
        return []

    def _after_rollback(
        self,
        flights: list[_InFlight],
        failures: dict[int, Failure],
        items: dict[str, dict[str, Any]],
        results: dict[int, PostResult],
        started: float,
    ) -> list[_InFlight]:
        """A failed snapshot batch stored nothing: refuse the invalid, resend or fail the rest."""
        refused = {i: f for i, f in failures.items() if f.outcome is Outcome.PERMANENT}
        for flight in flights:
            if flight.index in refused:
                results[flight.index] = self._failed(flight, refused[flight.index], started)
        others = [f for f in flights if f.index not in refused]
        blocking = [f for i, f in failures.items() if i not in refused]
        if not blocking:
            return others
        # Something other than validation failed (a rate limit, a timeout inside). The
        # batch answered, so it was rolled back: nothing of it is in the journal.
        failure = blocking[0]
        if failure.outcome is Outcome.UNCERTAIN:
            failure = replace(failure, outcome=Outcome.TRANSIENT)
        return self._fail_all(others, failure, results, started)

    def _fail_all(
        self,
        flights: list[_InFlight],
        failure: Failure,
        results: dict[int, PostResult],
        started: float,
    ) -> list[_InFlight]:
        for flight in flights:
            results[flight.index] = self._failed(flight, failure, started)
        return []

    # --- posting: step 2, the cost center on each line -------------------------------------

    def _lacking_dimension(
        self, flights: list[_InFlight], results: dict[int, PostResult], started: float
    ) -> list[_InFlight]:
        """Of the lines the ERP already holds (`existing_id`), those still without their
        cost center; the others are SUCCEEDED (or failed to be read) here."""
        to_read = [f for f in flights if self._wants_dimension(f.posting)]
        for flight in flights:
            if flight not in to_read:
                results[flight.index] = self._succeeded(flight, None, started)
        if not to_read:
            return []
        operations = [
            {
                "method": "GET",
                "id": operation_id(f.index),
                "url": f"{self._company_path}/journalLines({f.line_id})/dimensionSetLines",
            }
            for f in to_read
        ]
        try:
            items = self._batch_items(operations, "$batch dimensionSetLines read", write=False)
        except CallFailed as error:
            for flight in to_read:
                results[flight.index] = self._partial(flight, error.failure, started)
            return []
        lacking: list[_InFlight] = []
        for flight in to_read:
            item = items.get(operation_id(flight.index))
            if _ok(item) and self._has_dimension(item):
                results[flight.index] = self._succeeded(flight, item, started)
            elif _ok(item):
                lacking.append(flight)
            elif item is not None and int(item.get("status", 0)) == 404:
                results[flight.index] = self._line_gone(flight, item, started)
            else:
                failure = _item_failure(item, write=False) if item else _incomplete_answer(items)
                results[flight.index] = self._partial(flight, failure, started)
        return lacking

    def _complete(
        self,
        flights: list[_InFlight],
        journal_id: str,
        results: dict[int, PostResult],
        started: float,
    ) -> None:
        """Add each line's cost center; a line whose cost center is refused is removed."""
        needed = [f for f in flights if self._wants_dimension(f.posting)]
        for flight in flights:
            if flight not in needed:
                results[flight.index] = self._succeeded(flight, None, started)
        if not needed:
            return
        operations = {
            f.index: dimension_operation(
                f.posting, f.index, self._company_path, f.line_id, self.config.cost_center_dimension
            )
            for f in needed
        }
        for flight in needed:
            flight.operations.append(operations[flight.index])
        try:
            items = self._batch_items(
                list(operations.values()), "$batch dimensionSetLines", write=True
            )
        except CallFailed as error:
            for flight in needed:
                results[flight.index] = self._partial(flight, error.failure, started)
            return
        refused: dict[int, tuple[_InFlight, Failure]] = {}
        any_failed = any(not _ok(item) for item in items.values())
        for flight in needed:
            item = items.get(operation_id(flight.index))
            if _ok(item):
                results[flight.index] = self._succeeded(flight, item, started)
                continue
            if item is None:
                # Left out of the answer: not run if another operation failed, else unknown.
                failure = _not_run(items) if any_failed else _incomplete_answer(items)
                results[flight.index] = self._partial(flight, failure, started)
                continue
            failure = _item_failure(item, write=True)
            if failure.outcome is Outcome.PERMANENT:
                refused[flight.index] = (flight, failure)
            else:
                results[flight.index] = self._partial(flight, failure, started)
        if refused:
            self._remove_lines(list(refused.values()), journal_id, results, started)

    def _remove_lines(
        self,
        refused: list[tuple[_InFlight, Failure]],
        journal_id: str,
        results: dict[int, PostResult],
        started: float,
    ) -> None:
        """Delete the lines whose cost center was refused, so nothing half-written remains."""
        operations = {
            flight.index: delete_operation(
                flight.index, self._company_path, journal_id, flight.line_id
            )
            for flight, _failure in refused
        }
        for flight, _failure in refused:
            flight.operations.append(operations[flight.index])
        try:
            items = self._batch_items(
                list(operations.values()), "$batch journalLines delete", write=True
            )
        except CallFailed as error:
            for flight, failure in refused:
                results[flight.index] = self._not_removed(flight, failure, error.failure, started)
            return
        for flight, failure in refused:
            item = items.get(operation_id(flight.index))
            # A 404: the line is not there (anymore); either way nothing half-written remains.
            if _ok(item) or (item is not None and int(item.get("status", 0)) == 404):
                results[flight.index] = self._failed(flight, failure, started)
            else:
                problem = _item_failure(item, write=True) if item else _incomplete_answer(items)
                results[flight.index] = self._not_removed(flight, failure, problem, started)

    def _batch_items(
        self, operations: list[dict[str, Any]], operation: str, *, write: bool
    ) -> dict[str, dict[str, Any]]:
        """A `$batch` whose operations stand alone: no isolation, each answered on its own.

        Without `Prefer: odata.continue-on-error` Business Central stops at the first
        failed operation and leaves the later ones out of the answer.
        """
        response, answer = self._call(
            "POST",
            f"{self._api}/$batch",
            json_body={"requests": operations},
            headers={"Prefer": "odata.continue-on-error"},
            operation=operation,
            count=len(operations),
            write=write,
        )
        items = _responses_by_id(answer)
        if items is None:
            raise CallFailed(
                _unreadable(write=write, body=response.text, status=response.status_code)
            )
        return items

    def _has_dimension(self, item: dict[str, Any] | None) -> bool:
        rows = (item or {}).get("body", {}).get("value") if item else None
        wanted = self.config.cost_center_dimension.upper()
        return any(
            str(row.get("code", "")).upper() == wanted
            for row in rows or []
            if isinstance(row, dict)
        )

    # --- posting: results -----------------------------------------------------------------

    def _succeeded(
        self, flight: _InFlight, item: dict[str, Any] | None, started: float
    ) -> PostResult:
        answer = item if item is not None else {}
        return PostResult(
            reference=flight.posting.reference,
            outcome=Outcome.SUCCEEDED,
            erp_id=flight.line_id,
            payload=flight.payload,
            response_status=int(answer.get("status", 0)) or None,
            response_body=truncate(json.dumps(answer, ensure_ascii=False)) if answer else "",
            duration_ms=ms_since(started),
        )

    def _failed(self, flight: _InFlight, failure: Failure, started: float) -> PostResult:
        return failed_result(
            flight.posting.reference, flight.payload, failure, started, self.config.secrets()
        )

    def _partial(self, flight: _InFlight, failure: Failure, started: float) -> PostResult:
        """The line exists, its cost center does not (yet): say so, and have it looked up."""
        said = note(
            NoteCode.BC_PARTIAL_LINE, line=flight.line_id, cost_center=flight.posting.cost_center
        )
        return replace(self._failed(flight, replace(failure, note=said), started), partial=True)

    def _not_removed(
        self, flight: _InFlight, refusal: Failure, problem: Failure, started: float
    ) -> PostResult:
        """The cost center was refused and the line could not be removed again."""
        why = problem.said
        said = note(
            NoteCode.BC_LINE_NOT_REMOVED,
            cost_center=flight.posting.cost_center,
            said=refusal.message,
            line=flight.line_id,
            problem=problem.message or (why.stored() if why else ""),
        )
        return replace(self._failed(flight, replace(problem, note=said), started), partial=True)

    def _line_gone(self, flight: _InFlight, item: dict[str, Any], started: float) -> PostResult:
        """The line found earlier is no longer in the journal (posted or deleted since)."""
        failure = Failure(
            Outcome.UNCERTAIN,
            Cause.HTTP,
            "HTTP 404",
            None,
            404,
            truncate(json.dumps(item, ensure_ascii=False)),
            note=note(NoteCode.BC_LINE_GONE, line=flight.line_id),
        )
        return self._failed(flight, failure, started)

    # --- lookup -------------------------------------------------------------------------

    def _lookup_chunk(
        self, references: list[str], journal_id: str
    ) -> tuple[dict[str, Found], dict[str, str]]:
        """One $batch of GETs (no isolation: reads), two per reference.

        Returns the posted ones (G/L entry number, whole) and the unposted ones (line id,
        whose dimension is checked next). Literals are upper-cased: Business Central
        stores Code fields so, and whether its `$filter` matches another case is not
        documented (sandbox assumption `bc_filter_case`).
        """
        requests_: list[dict[str, Any]] = []
        for n, reference in enumerate(references):
            literal = odata_string(reference.upper())
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
        items = self._batch_items(requests_, "$batch lookup", write=False)
        posted: dict[str, Found] = {}
        unposted: dict[str, str] = {}
        for n, reference in enumerate(references):
            wanted = reference.upper()
            lines = [
                row
                for row in self._lookup_values(items.get(f"{2 * n + 1}"))
                if str(row.get("externalDocumentNumber", "")).upper() == wanted
            ]
            entries = [
                row
                for row in self._lookup_values(items.get(f"{2 * n + 2}"))
                if str(row.get("documentNumber", "")).upper() == wanted
            ]
            if entries:
                posted[reference] = Found(str(entries[0].get("entryNumber", "")))
            elif lines:
                unposted[reference] = str(lines[0].get("id", ""))
        return posted, unposted

    def _lines_found(self, lines: dict[str, str]) -> dict[str, Found]:
        """Unposted lines as found: whole only when their cost-center dimension is there.

        Without a configured dimension there is nothing to check. A posting without a
        cost center is reported incomplete too; `post` with its `existing_id` then
        answers SUCCEEDED without a call.
        """
        if not self.config.cost_center_dimension:
            return {reference: Found(line_id) for reference, line_id in lines.items()}
        found: dict[str, Found] = {}
        references = list(lines)
        for start in range(0, len(references), MAX_BATCH_OPERATIONS):
            chunk = references[start : start + MAX_BATCH_OPERATIONS]
            operations = [
                {
                    "method": "GET",
                    "id": str(n + 1),
                    "url": f"{self._company_path}/journalLines({lines[reference]})"
                    "/dimensionSetLines",
                }
                for n, reference in enumerate(chunk)
            ]
            items = self._batch_items(operations, "$batch lookup dimensions", write=False)
            for n, reference in enumerate(chunk):
                item = items.get(str(n + 1))
                self._lookup_values(item)  # raises when the item failed or is missing
                found[reference] = Found(lines[reference], complete=self._has_dimension(item))
        return found

    def _lookup_values(self, item: dict[str, Any] | None) -> list[dict[str, Any]]:
        if item is None:
            raise CallFailed(_unreadable(write=False))
        if not _ok(item):
            raise CallFailed(_item_failure(item, write=False))
        value = (item.get("body") or {}).get("value")
        return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []

    # --- reading entries (reconciliation) -------------------------------------------------

    @staticmethod
    def _period_query(start: date, end: date, prefix: str) -> str:
        """`$filter` on the document number's prefix and the posting date (webservices
        use-filter-expressions-in-odata-uris.md: startswith, ge, le), `$expand` of the
        dimension set lines. Dates are Edm.Date literals, written unquoted."""
        expression = (
            f"startswith(documentNumber,{odata_string(prefix)})"
            f" and postingDate ge {start.isoformat()} and postingDate le {end.isoformat()}"
        )
        return odata_filter_query(expression) + f"&$expand={DIMENSIONS}"

    def _cost_center(self, row: dict[str, Any]) -> str:
        wanted = self.config.cost_center_dimension.upper()
        if not wanted:
            return ""
        for line in row.get(DIMENSIONS) or []:
            if isinstance(line, dict) and str(line.get("code", "")).upper() == wanted:
                return str(line.get("valueCode") or "")
        return ""

    def _line_entry(self, row: dict[str, Any]) -> ErpEntry | None:
        """An unposted journal line: it is the posting's expense side itself (its account
        debited with `amount`, the balancing account credited)."""
        try:
            return ErpEntry(
                reference=str(row["documentNumber"]).upper(),
                erp_id=str(row["id"]),
                source=EntrySource.JOURNAL_LINE,
                posting_date=day_of(row["postingDate"]),
                amount=amount_of(row["amount"]),
                account=str(row.get("accountNumber") or ""),
                cost_center=self._cost_center(row),
                currency=self.config.local_currency,
                payable_account=str(row.get("balancingAccountNumber") or ""),
            )
        except (KeyError, ValueError):
            raise CallFailed(_unreadable(write=False, body=json.dumps(row))) from None

    def _ledger_entry(self, rows: list[dict[str, Any]]) -> ErpEntry | None:
        """One posted document from its G/L entries: a journal line with a balancing account
        posts two (expense debit, payable credit). The expense side is the first entry with
        a debit; its amount is the net of every entry on that account in the document."""
        try:
            debits = [r for r in rows if amount_of(r.get("debitAmount") or 0) > 0]
            expense = (debits or rows)[0]
            account = str(expense["accountNumber"])
            amount = sum(
                (
                    amount_of(r.get("debitAmount") or 0) - amount_of(r.get("creditAmount") or 0)
                    for r in rows
                    if str(r.get("accountNumber")) == account
                ),
                Decimal(0),
            )
            return ErpEntry(
                reference=str(expense["documentNumber"]).upper(),
                erp_id=str(expense["entryNumber"]),
                source=EntrySource.LEDGER_ENTRY,
                posting_date=day_of(expense["postingDate"]),
                amount=amount,
                account=account,
                cost_center=self._cost_center(expense),
                currency=self.config.local_currency,
                payable_account=next(
                    (str(r["accountNumber"]) for r in rows if str(r["accountNumber"]) != account),
                    "",
                ),
            )
        except (KeyError, ValueError):
            raise CallFailed(_unreadable(write=False, body=json.dumps(rows))) from None

    # --- master data --------------------------------------------------------------------

    def _company(self) -> dict[str, Any]:
        for company in self._collection("companies"):
            if str(company.get("id", "")).lower() == self.config.company_id.lower():
                return company
        said = note(
            NoteCode.BC_COMPANY_NOT_FOUND,
            company=self.config.company_id,
            environment=self.config.environment,
        )
        raise CallFailed(Failure(Outcome.PERMANENT, Cause.OTHER, "", note=said))

    def _accounts(self) -> list[Account]:
        """The accounts a posting may use: posting accounts, not blocked, open to direct posting.

        Business Central refuses journal lines on headings and totals (only `accountType`
        Posting takes them, api-reference dynamics_account.md), on a blocked account,
        and on an account without Direct Posting (a control account), so none of
        those is offered as a mapping choice.
        """
        return [
            Account(code=str(row["number"]), name=str(row.get("displayName") or ""))
            for row in self._collection(f"{self._company_path}/accounts")
            if row.get("accountType") == POSTING_ACCOUNT
            and not row.get("blocked")
            and row.get("directPosting", True) is not False
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
        """The id of the configured journal, found by its code once per connector.

        The code is a Code field (stored upper-cased), so it is asked for upper-cased.
        """
        if self._journal_id is None:
            literal = odata_string(self.config.journal_code.upper())
            rows = list(
                self._collection(
                    f"{self._company_path}/journals", odata_filter_query(f"code eq {literal}")
                )
            )
            if not rows:
                said = _journal_missing(self.config.journal_code)
                raise CallFailed(Failure(Outcome.PERMANENT, Cause.OTHER, "", note=said))
            self._journal_id = str(rows[0]["id"])
        return self._journal_id

    def _collection(self, path: str, query: str = "") -> Iterator[dict[str, Any]]:
        """Every row of a collection, following @odata.nextLink."""
        for rows in self._pages(path, query):
            yield from rows

    def _pages(
        self, path: str, query: str = "", page_size: int | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """A collection one page (one request) at a time, following @odata.nextLink."""
        url: str | None = f"{self._api}/{path}" + (f"?{query}" if query else "")
        headers = {"Prefer": f"odata.maxpagesize={page_size or self.config.page_size}"}
        operation = "GET " + path.rsplit("/", 1)[-1].split("(")[0]
        while url:
            _response, body = self._call(
                "GET", url, headers=headers, operation=operation, count=1, write=False
            )
            try:
                rows = body["value"]
                next_link = body.get("@odata.nextLink")
                if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                    raise TypeError
            except (KeyError, TypeError):
                raise CallFailed(_unreadable(write=False)) from None
            yield rows
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

        A 401 or 403 means the request was not carried out, so repeating it (a write
        too) is safe; it happens when a cached token was revoked before it expired.
        When the fresh token is refused as well, the application is not (or no longer)
        let into Business Central: the failure says what to set up, in plain words.
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
            if response.status_code in (401, 403) and attempt == 1:
                _forget_access_tokens(msal_app(self.config))
                continue
            if not 200 <= response.status_code < 300:
                failure = classify_failure(
                    status=response.status_code,
                    headers=response.headers,
                    erp_message=erp_message_from(body),
                    body=response.text,
                    write=write,
                )
                if response.status_code in (401, 403):
                    # A fresh token was issued and refused too: Entra knows the app,
                    # Business Central does not let it in.
                    said = _unregistered_app(self.config.client_id, response.status_code)
                    failure = replace(failure, note=said)
                raise CallFailed(failure)
            if response.status_code == 204:
                return response, {}  # Microsoft.NAV.post and other actions answer no content
            if body is None:
                raise CallFailed(
                    _unreadable(write=write, body=response.text, status=response.status_code)
                )
            return response, body
        raise AssertionError("unreachable")  # pragma: no cover

    def _token(self) -> str:
        # Every call starts here: a tenant, environment or company that could change a
        # request's path (saved before it was checked, or set elsewhere) stops it first.
        if problem := self.config.path_problem():
            raise CallFailed(Failure(Outcome.AUTHENTICATION, Cause.BAD_ADDRESS, "", note=problem))
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
            said = note(NoteCode.ENTRA_UNREACHABLE)
            self._log("token", 1, "sign-in service error", started)
            raise CallFailed(Failure(Outcome.TRANSIENT, Cause.HTTP, "", note=said)) from None
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

    def admin_message(self, failure: Failure) -> Note:
        if failure.status == 404 and failure.note is None:
            return note(
                NoteCode.BC_NOT_FOUND,
                environment=self.config.environment,
                company=self.config.company_id,
            )
        return describe_failure(
            failure, erp=ERP, host=host_of(self.config.api_base_url), credential=CREDENTIAL
        )

    def _detail(
        self, company: dict[str, Any], dimensions: list[Dimension], journals: list[Journal]
    ) -> list[Note]:
        name = company.get("name") or company.get("displayName") or self.config.company_id
        details = [
            note(NoteCode.BC_FOUND_COMPANY, company=name, environment=self.config.environment)
        ]
        if _find_dimension(dimensions, self.config.cost_center_dimension) is None:
            details.append(note(NoteCode.CHOOSE_DIMENSION))
        if not any(j.code.upper() == self.config.journal_code.upper() for j in journals):
            details.append(_journal_missing(self.config.journal_code))
        return details


# --- small helpers ----------------------------------------------------------------------------


def _document(row: dict[str, Any]) -> tuple[str, str]:
    """What makes consecutive G/L entries one posted document: number and posting date."""
    return (str(row.get("documentNumber", "")).upper(), str(row.get("postingDate", "")))


def _journal_missing(code: str) -> Note:
    # Page 30016 "APIV2 - Journals" lists only the default general journal template's
    # batches: a batch under any other template is invisible, not merely misnamed.
    return note(NoteCode.BC_JOURNAL_MISSING, journal=code)


def _unregistered_app(client_id: str, status: int) -> Note:
    """A token Entra issued, refused by Business Central itself (401/403 on the API)."""
    code = NoteCode.BC_APP_FORBIDDEN if status == 403 else NoteCode.BC_APP_NOT_REGISTERED
    return note(code, page=ENTRA_APPLICATIONS_PAGE, client_id=client_id)


def _find_dimension(dimensions: list[Dimension], code: str) -> Dimension | None:
    if not code:
        return None
    return next((d for d in dimensions if d.code.upper() == code.upper()), None)


def _discovery_failure(error: ValueError, config: BusinessCentralConfig) -> Failure:
    text = " ".join(str(e) for e in _exception_chain(error))
    match = re.search(r"AADSTS(\d+)", text)
    if match:
        return entra_failure("invalid_tenant", "", [match.group(1)])
    said = note(
        NoteCode.BC_DISCOVERY_FAILED,
        tenant=config.tenant_id,
        authority=host_of(config.authority_host),
    )
    return Failure(Outcome.AUTHENTICATION, Cause.OTHER, "", note=said)


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


def _item_failure(item: dict[str, Any], *, write: bool) -> Failure:
    """What one failed operation of a batch means, classified like a single call."""
    body = item.get("body")
    return classify_failure(
        status=int(item.get("status", 0)),
        headers=item.get("headers") or {},
        erp_message=erp_message_from(body),
        body=json.dumps(body, ensure_ascii=False),
        write=write,
    )


def _incomplete_answer(items: dict[str, dict[str, Any]]) -> Failure:
    """An answer that leaves operations out and names no failure: nothing certain."""
    body = truncate(json.dumps({"responses": list(items.values())}, ensure_ascii=False))
    said = note(NoteCode.BC_INCOMPLETE_ANSWER)
    return Failure(Outcome.UNCERTAIN, Cause.OTHER, "", None, 200, body, note=said)


def _not_run(items: dict[str, dict[str, Any]]) -> Failure:
    """Left out after another operation failed: Business Central stopped before it."""
    body = truncate(json.dumps({"responses": list(items.values())}, ensure_ascii=False))
    said = note(NoteCode.BC_NOT_RUN)
    return Failure(Outcome.TRANSIENT, Cause.HTTP, "", None, 200, body, note=said)


def _unreadable(*, write: bool, body: str = "", status: int | None = None) -> Failure:
    # A write answered with something unreadable may still have been committed.
    outcome = Outcome.UNCERTAIN if write else Outcome.TRANSIENT
    said = note(NoteCode.BC_UNREADABLE)
    return Failure(outcome, Cause.OTHER, "", None, status, truncate(body), note=said)
