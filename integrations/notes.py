"""Our own words about a failure: stored as a code with parameters, worded when read.

A connector or the sync engine says what happened as a `Note` (a `NoteCode` and its
parameters). Records, attempts, connection tests and alerts store it as
{"code": ..., "params": {...}}; pages, exports and e-mails word it with `words()` in the
reader's language, so a Norwegian page never shows an English sentence stored months
ago. The ERP's own words are never a Note: they are kept verbatim beside it
(`FinancialRecord.last_error`, `SyncLog.error_message`, `ConnectionTest.message`),
because they are evidence.

A parameter is shown as given (host names, references, the ERP's words), except the
few whose values are themselves codes (`credential`, `refusal`): those are worded too.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

# A parameter: shown as it is, or a stored note worded in its place.
Param = str | int | Mapping[str, Any]


class NoteCode(enum.StrEnum):
    # --- what went wrong on the way to the ERP: one per http.Cause, with its value, since
    # `Failure.said` turns a cause into its note by value (notes.py sits below the clients).
    UNKNOWN_HOST = "unknown_host"
    REFUSED = "refused"
    CONNECT_TIMEOUT = "connect_timeout"
    CERTIFICATE = "certificate"
    TLS = "tls"
    READ_TIMEOUT = "read_timeout"
    DROPPED = "dropped"
    BAD_ADDRESS = "bad_address"
    NOT_ALLOWED = "not_allowed"
    PACED = "paced"
    REDIRECT = "redirect"
    OTHER = "other"
    HTTP = "http"
    # --- the same, said to an admin who can act on it (Test Connection, master data) -------
    ADMIN_UNKNOWN_HOST = "admin_unknown_host"
    ADMIN_REFUSED = "admin_refused"
    ADMIN_CONNECT_TIMEOUT = "admin_connect_timeout"
    ADMIN_CERTIFICATE = "admin_certificate"
    ADMIN_TLS = "admin_tls"
    ADMIN_BAD_ADDRESS = "admin_bad_address"
    ADMIN_READ_TIMEOUT = "admin_read_timeout"
    ADMIN_DROPPED = "admin_dropped"
    ADMIN_FORBIDDEN = "admin_forbidden"
    ADMIN_CREDENTIAL_REFUSED = "admin_credential_refused"
    ADMIN_RATE_LIMITED = "admin_rate_limited"
    ADMIN_RATE_LIMITED_FOR = "admin_rate_limited_for"
    ADMIN_NOT_FOUND = "admin_not_found"
    ADMIN_ERP_PROBLEM = "admin_erp_problem"
    ADMIN_REQUEST_REFUSED = "admin_request_refused"
    ADMIN_NOT_UNDERSTOOD = "admin_not_understood"
    ADDRESS_NOT_ALLOWED = "address_not_allowed"
    REDIRECTED_TO = "redirected_to"
    REDIRECTED = "redirected"
    # --- Business Central and Microsoft Entra ID ------------------------------------------
    BC_TENANT_INVALID = "bc_tenant_invalid"
    BC_ENVIRONMENT_INVALID = "bc_environment_invalid"
    BC_COMPANY_ID_INVALID = "bc_company_id_invalid"
    BC_TOKEN_ENDPOINT_ELSEWHERE = "bc_token_endpoint_elsewhere"
    BC_DISCOVERY_FAILED = "bc_discovery_failed"
    ENTRA_SECRET_WRONG = "entra_secret_wrong"
    ENTRA_SECRET_EXPIRED = "entra_secret_expired"
    ENTRA_NO_APPLICATION = "entra_no_application"
    ENTRA_TENANT_NOT_FOUND = "entra_tenant_not_found"
    ENTRA_TENANT_INVALID = "entra_tenant_invalid"
    ENTRA_SCOPE_REFUSED = "entra_scope_refused"
    ENTRA_NO_SERVICE_PRINCIPAL = "entra_no_service_principal"
    ENTRA_REFUSED = "entra_refused"
    ENTRA_UNAVAILABLE = "entra_unavailable"
    ENTRA_UNREACHABLE = "entra_unreachable"
    BC_APP_FORBIDDEN = "bc_app_forbidden"
    BC_APP_NOT_REGISTERED = "bc_app_not_registered"
    BC_NOT_FOUND = "bc_not_found"
    BC_COMPANY_NOT_FOUND = "bc_company_not_found"
    BC_JOURNAL_MISSING = "bc_journal_missing"
    BC_DUPLICATE_REFERENCE = "bc_duplicate_reference"
    BC_REFERENCE_TOO_LONG = "bc_reference_too_long"
    BC_CURRENCY = "bc_currency"
    BC_AMOUNT_INVALID = "bc_amount_invalid"
    BC_PARTIAL_LINE = "bc_partial_line"
    BC_LINE_NOT_REMOVED = "bc_line_not_removed"
    BC_LINE_GONE = "bc_line_gone"
    BC_INCOMPLETE_ANSWER = "bc_incomplete_answer"
    BC_NOT_RUN = "bc_not_run"
    BC_UNREADABLE = "bc_unreadable"
    BC_FOUND_COMPANY = "bc_found_company"
    CHOOSE_DIMENSION = "choose_dimension"
    # --- Xledger ---------------------------------------------------------------------------
    XL_NO_CREDITS = "xl_no_credits"
    XL_API_TOKEN_REFUSED = "xl_api_token_refused"
    XL_CLIENT_REFUSED = "xl_client_refused"
    XL_REQUEST_REFUSED = "xl_request_refused"
    XL_DUPLICATE_REFERENCE = "xl_duplicate_reference"
    XL_NO_VOUCHER_NUMBER = "xl_no_voucher_number"
    XL_AMOUNT_INVALID = "xl_amount_invalid"
    XL_HALF_VOUCHER = "xl_half_voucher"
    XL_HALF_VOUCHER_ITEM = "xl_half_voucher_item"
    XL_KEPT_UNSAID = "xl_kept_unsaid"
    XL_UNCONFIRMED = "xl_unconfirmed"
    XL_PART_CONFIRMED = "xl_part_confirmed"
    XL_UNREADABLE = "xl_unreadable"
    XL_OTHERS_REFUSED_UNCHECKED = "xl_others_refused_unchecked"
    XL_FOUND_ACCOUNTS = "xl_found_accounts"
    CHOOSE_OBJECT_KIND = "choose_object_kind"
    OBJECT_KIND_NOT_FOUND = "object_kind_not_found"
    COST_CENTERS_FROM = "cost_centers_from"
    CREDENTIALS_UNREADABLE = "credentials_unreadable"
    TEST_UNEXPECTED_ERROR = "test_unexpected_error"
    # --- the sync engine ------------------------------------------------------------------
    FOUND_BY_REFERENCE = "found_by_reference"
    INTERRUPTED_WHILE_SENDING = "interrupted_while_sending"
    INTERRUPTED_BEFORE_SENDING = "interrupted_before_sending"
    LOOKUP_FAILED = "lookup_failed"
    NOT_CHECKED = "not_checked"
    NOT_IN_ERP = "not_in_erp"
    IMPORT_POSTED = "import_posted"
    RUN_ABANDONED = "run_abandoned"
    # --- reconciliation ---------------------------------------------------------------------
    RECONCILIATION_LOOKUP = "reconciliation_lookup"
    RECONCILIATION_UNEXPECTED_ERROR = "reconciliation_unexpected_error"


_WORDS: dict[NoteCode, Promise] = {
    NoteCode.UNKNOWN_HOST: _("The host name could not be resolved."),
    NoteCode.REFUSED: _("The connection was refused."),
    NoteCode.CONNECT_TIMEOUT: _("No connection could be made in time."),
    NoteCode.CERTIFICATE: _("The server's certificate could not be verified."),
    NoteCode.TLS: _("A secure (TLS) connection could not be established."),
    NoteCode.READ_TIMEOUT: _("No answer came in time after the request was sent."),
    NoteCode.DROPPED: _("The connection was closed after the request was sent, without an answer."),
    NoteCode.BAD_ADDRESS: _("The address is not a valid URL."),
    NoteCode.NOT_ALLOWED: _("The address is not one this server may contact."),
    NoteCode.PACED: _(
        "Held back: the credential's request limit is reached for %(seconds)s more seconds."
    ),
    NoteCode.REDIRECT: _("The address answered with a redirect."),
    NoteCode.OTHER: _("The request could not be completed."),
    NoteCode.HTTP: _("The server refused the request."),
    NoteCode.ADMIN_UNKNOWN_HOST: _("Could not find the host %(host)s. Check the address."),
    NoteCode.ADMIN_REFUSED: _(
        "%(host)s refused the connection. Check the address, or try again later if %(erp)s is down."
    ),
    NoteCode.ADMIN_CONNECT_TIMEOUT: _(
        "Could not connect to %(host)s in time. Check the address and that this server may "
        "reach it, or try again later."
    ),
    NoteCode.ADMIN_CERTIFICATE: _(
        "The certificate of %(host)s could not be verified, so no data was sent. Check the "
        "address; if it is right, the server's certificate is not trusted."
    ),
    NoteCode.ADMIN_TLS: _(
        "A secure connection to %(host)s could not be established. Try again later."
    ),
    NoteCode.ADMIN_BAD_ADDRESS: _(
        "The %(erp)s address is not a valid https URL. Check the address."
    ),
    NoteCode.ADMIN_READ_TIMEOUT: _("%(erp)s did not answer in time. Try again later."),
    NoteCode.ADMIN_DROPPED: _(
        "The connection to %(erp)s was closed before an answer came. Try again later."
    ),
    NoteCode.ADMIN_FORBIDDEN: _(
        "%(erp)s accepted the %(credential)s but does not allow this operation. An %(erp)s "
        "administrator must grant the permission."
    ),
    NoteCode.ADMIN_CREDENTIAL_REFUSED: _(
        "The %(credential)s was refused. Check that it is correct and not revoked or expired."
    ),
    NoteCode.ADMIN_RATE_LIMITED: _("%(erp)s is limiting the number of requests. Try again later."),
    NoteCode.ADMIN_RATE_LIMITED_FOR: _(
        "%(erp)s is limiting the number of requests. Try again in %(seconds)s seconds."
    ),
    NoteCode.ADMIN_NOT_FOUND: _(
        "%(erp)s answered that the address was not found at %(host)s. Check the settings."
    ),
    NoteCode.ADMIN_ERP_PROBLEM: _("%(erp)s had a problem (HTTP %(status)s). Try again later."),
    NoteCode.ADMIN_REQUEST_REFUSED: _("%(erp)s refused the request."),
    NoteCode.ADMIN_NOT_UNDERSTOOD: _(
        "%(erp)s gave an answer that could not be understood. Try again later."
    ),
    NoteCode.ADDRESS_NOT_ALLOWED: _(
        "The ERP address %(origin)s is not one this server may contact (%(refusal)s). "
        "Nothing was sent. Check the address."
    ),
    NoteCode.REDIRECTED_TO: _(
        "The ERP address redirected to %(origin)s; check the address. The redirect was not "
        "followed."
    ),
    NoteCode.REDIRECTED: _(
        "The ERP address answered with a redirect (HTTP %(status)s); check the address. The "
        "redirect was not followed."
    ),
    NoteCode.BC_TENANT_INVALID: _(
        "The tenant ID %(tenant)s is neither a GUID nor a domain name such as "
        "contoso.onmicrosoft.com. Check the tenant ID."
    ),
    NoteCode.BC_ENVIRONMENT_INVALID: _(
        "The environment %(environment)s is not an environment name (letters, digits, '-' "
        "and '_', at most 30). Check the environment."
    ),
    NoteCode.BC_COMPANY_ID_INVALID: _(
        "The company ID %(company)s is not a GUID. Check the company ID."
    ),
    NoteCode.BC_TOKEN_ENDPOINT_ELSEWHERE: _(
        "The sign-in configuration of tenant %(tenant)s names a token endpoint at "
        "%(endpoint)s, not on the sign-in host %(authority)s over https. The client secret "
        "was not sent. Check the sign-in address."
    ),
    NoteCode.BC_DISCOVERY_FAILED: _(
        "The sign-in configuration of tenant %(tenant)s could not be read from "
        "%(authority)s. Check the tenant ID and the sign-in address."
    ),
    NoteCode.ENTRA_SECRET_WRONG: _(
        "The client secret is wrong. Check that you copied the secret's value, not its ID, "
        "from the app registration in Microsoft Entra ID."
    ),
    NoteCode.ENTRA_SECRET_EXPIRED: _(
        "The client secret has expired. Create a new client secret for the app registration "
        "in Microsoft Entra ID and save it here."
    ),
    NoteCode.ENTRA_NO_APPLICATION: _(
        "No application with this client ID exists in the tenant. Check the client ID and "
        "the tenant ID."
    ),
    NoteCode.ENTRA_TENANT_NOT_FOUND: _("The tenant was not found. Check the tenant ID."),
    NoteCode.ENTRA_TENANT_INVALID: _("The tenant ID is not valid. Check the tenant ID."),
    NoteCode.ENTRA_SCOPE_REFUSED: _("The requested scope was refused. Check the scope setting."),
    NoteCode.ENTRA_NO_SERVICE_PRINCIPAL: _(
        "The application has no service principal in the tenant. An administrator must "
        "consent to the application in this tenant."
    ),
    NoteCode.ENTRA_REFUSED: _(
        "Microsoft Entra ID refused the sign-in. Check the tenant ID, client ID and client secret."
    ),
    NoteCode.ENTRA_UNAVAILABLE: _(
        "Microsoft Entra ID is temporarily unavailable. Try again later."
    ),
    NoteCode.ENTRA_UNREACHABLE: _(
        "Microsoft Entra ID could not be reached properly. Try again later."
    ),
    NoteCode.BC_APP_FORBIDDEN: _(
        "Business Central accepted the application but does not allow this operation. In "
        'Business Central, open the page "%(page)s", select the application with client ID '
        "%(client_id)s and assign it permission sets that let it read accounts, dimensions "
        "and journals and write general journal lines."
    ),
    NoteCode.BC_APP_NOT_REGISTERED: _(
        "Microsoft Entra ID issued a token, but Business Central refused it. In Business "
        'Central, open the page "%(page)s", add the application with client ID '
        "%(client_id)s, set its State to Enabled and assign it permission sets (reading "
        "accounts, dimensions and journals, writing general journal lines)."
    ),
    NoteCode.BC_NOT_FOUND: _(
        "Business Central did not find environment %(environment)s or company %(company)s "
        "for this tenant. Check both settings."
    ),
    NoteCode.BC_COMPANY_NOT_FOUND: _(
        "The company %(company)s was not found in environment %(environment)s. Check the "
        "company ID."
    ),
    NoteCode.BC_JOURNAL_MISSING: _(
        "The journal %(journal)s does not exist under the default general journal template, "
        "the only one Business Central's API shows. Create it in Business Central as a "
        "general journal batch under that template (GENERAL; GENERELT in Norwegian), or "
        "choose one of the journals listed here."
    ),
    NoteCode.BC_DUPLICATE_REFERENCE: _(
        "The reference %(reference)s appears twice in the same batch."
    ),
    NoteCode.BC_REFERENCE_TOO_LONG: _(
        "The reference %(reference)s is longer than the %(limit)s characters Business "
        "Central allows in a document number."
    ),
    NoteCode.BC_CURRENCY: _(
        "The amount is in %(currency)s, but journal lines through the API are in the "
        "company's local currency (%(local)s)."
    ),
    NoteCode.BC_AMOUNT_INVALID: _("The amount cannot be sent to Business Central: %(reason)s."),
    NoteCode.BC_PARTIAL_LINE: _(
        "The journal line %(line)s exists in Business Central, but its cost center "
        "%(cost_center)s could not be added. The cost center will be added to that line on "
        "the next attempt."
    ),
    NoteCode.BC_LINE_NOT_REMOVED: _(
        "Business Central refused the cost center %(cost_center)s: %(said)s The journal "
        "line %(line)s exists without it and could not be removed (%(problem)s); on the next "
        "attempt the cost center will be added to that line again, or the line removed."
    ),
    NoteCode.BC_LINE_GONE: _(
        "The journal line %(line)s is no longer in the journal (posted or deleted since it "
        "was found); the reference will be looked up again."
    ),
    NoteCode.BC_INCOMPLETE_ANSWER: _(
        "Business Central's answer did not account for every operation of the batch."
    ),
    NoteCode.BC_NOT_RUN: _(
        "Business Central stopped the batch at another operation's failure before this one."
    ),
    NoteCode.BC_UNREADABLE: _("Business Central gave an answer that could not be read."),
    NoteCode.BC_FOUND_COMPANY: _("company %(company)s, environment %(environment)s"),
    NoteCode.CHOOSE_DIMENSION: _("choose the dimension that holds the cost centers"),
    NoteCode.XL_NO_CREDITS: _(
        "Xledger's API credits for the current period are used up. Sending continues by "
        "itself when they are renewed, in about %(minutes)s minutes."
    ),
    NoteCode.XL_API_TOKEN_REFUSED: _(
        "The API token was refused. Check that it is correct and not revoked."
    ),
    NoteCode.XL_CLIENT_REFUSED: _(
        "The OAuth2 client ID or client secret was refused. Check that they are correct and "
        "that the client is not disabled or expired."
    ),
    NoteCode.XL_REQUEST_REFUSED: _("Xledger refused the request."),
    NoteCode.XL_DUPLICATE_REFERENCE: _(
        "The reference %(reference)s appears twice in the same batch."
    ),
    NoteCode.XL_NO_VOUCHER_NUMBER: _(
        "The record has no usable voucher number (%(number)s); Xledger needs one from 1 to "
        "%(limit)s."
    ),
    NoteCode.XL_AMOUNT_INVALID: _("The amount cannot be sent to Xledger: %(reason)s."),
    NoteCode.XL_HALF_VOUCHER: _(
        "Xledger holds part of voucher %(reference)s: finance must remove it in Xledger "
        "before it is sent again."
    ),
    NoteCode.XL_HALF_VOUCHER_ITEM: _(
        "Xledger holds part of voucher %(reference)s: finance must remove it in Xledger "
        "before it is sent again. (GL import item %(item)s)"
    ),
    NoteCode.XL_KEPT_UNSAID: _("Xledger kept this voucher although its answer did not say so."),
    NoteCode.XL_UNCONFIRMED: _("Xledger answered without confirming this voucher's lines."),
    NoteCode.XL_PART_CONFIRMED: _("Xledger confirmed only part of voucher %(reference)s."),
    NoteCode.XL_UNREADABLE: _("Xledger gave an answer that could not be read."),
    NoteCode.XL_OTHERS_REFUSED_UNCHECKED: _(
        "Xledger refused other postings of the same call, and whether it kept this one could "
        "not be checked: %(reason)s"
    ),
    NoteCode.XL_FOUND_ACCOUNTS: _("Xledger at %(host)s: %(count)s accounts"),
    NoteCode.CHOOSE_OBJECT_KIND: _("choose the object kind that holds the cost centers"),
    NoteCode.OBJECT_KIND_NOT_FOUND: _("object kind %(kind)s was not found, choose another"),
    NoteCode.COST_CENTERS_FROM: _("cost centers from object kind %(kind)s %(name)s"),
    NoteCode.CREDENTIALS_UNREADABLE: _(
        "The stored credentials cannot be decrypted with the configured keys."
    ),
    NoteCode.TEST_UNEXPECTED_ERROR: _(
        "The test stopped on an unexpected error. The technical details are in the worker's log."
    ),
    NoteCode.FOUND_BY_REFERENCE: _(
        "Found in the accounting system by its reference; not sent again."
    ),
    NoteCode.INTERRUPTED_WHILE_SENDING: _(
        "The sync was interrupted while sending it; checking the accounting system before "
        "it is sent again."
    ),
    NoteCode.INTERRUPTED_BEFORE_SENDING: _(
        "The sync was interrupted before sending it; it is sent shortly."
    ),
    NoteCode.LOOKUP_FAILED: _("Could not check the accounting system before resending: %(reason)s"),
    NoteCode.NOT_CHECKED: _(
        "Not checked in the accounting system yet: its lookups just before failed "
        "(%(reason)s). It is checked at the next attempt."
    ),
    NoteCode.NOT_IN_ERP: _(
        "Not in the accounting system: the last send did not arrive, and the automatic "
        "retries are used up. Retry sends it again."
    ),
    NoteCode.IMPORT_POSTED: _("The accounting system's import posted it."),
    NoteCode.RECONCILIATION_LOOKUP: _(
        "The reconciliation found it in the accounting system: it is looked up there and "
        "marked as sent, not sent again."
    ),
    NoteCode.RECONCILIATION_UNEXPECTED_ERROR: _(
        "The reconciliation stopped on an unexpected error. The technical details are in "
        "the worker's log."
    ),
    NoteCode.RUN_ABANDONED: _(
        "Sync %(run)s stopped when its worker died; %(looked_up)s records it was sending will "
        "be looked up in the accounting system before they are sent again, and %(returned)s "
        "it had not sent yet go back to the queue."
    ),
}

# Parameters whose values are codes of their own, worded like the note.
_PARAM_WORDS: dict[str, dict[str, Promise]] = {
    "credential": {
        "api_token": _("API token"),
        "client_secret": _("client secret"),
        "oauth2_client": _("OAuth2 client ID or secret"),
        "credentials": _("credentials"),
    },
    "refusal": {
        "scheme": _("only https is used"),
        "userinfo": _("an address must not hold a user name or password"),
        "host": _("the host is not on ERP_ALLOWED_HOSTS"),
        "port": _("only port 443, or a port ERP_ALLOWED_HOSTS names, is used"),
    },
}


@dataclass(frozen=True)
class Note:
    """One thing we say about a failure: a code and the parameters its words need."""

    code: NoteCode
    params: Mapping[str, Param] = field(default_factory=dict)

    def stored(self) -> dict[str, Any]:
        return {"code": str(self.code), "params": dict(self.params)}

    def __str__(self) -> str:
        """The words in the active language (for logs and the command line)."""
        return words(self.stored())


def note(code: NoteCode, **params: Param) -> Note:
    return Note(code, params)


def words(stored: Mapping[str, Any] | None) -> str:
    """A stored note in the reader's language; "" for none.

    A code this version does not know is shown as stored rather than hidden.
    """
    if not stored:
        return ""
    code = str(stored.get("code", ""))
    params = {key: _param_words(key, value) for key, value in (stored.get("params") or {}).items()}
    try:
        template = _WORDS[NoteCode(code)]
    except ValueError:
        return code
    try:
        return str(template) % params
    except (KeyError, TypeError, ValueError):
        # A translation that names a parameter the note lacks: the words without them.
        return str(template)


def _param_words(key: str, value: Any) -> Any:
    if isinstance(value, Mapping):  # a note inside a note (why a lookup failed, say)
        return words(value)
    table = _PARAM_WORDS.get(key)
    if table is not None and str(value) in table:
        return str(table[str(value)])
    return value


def joined(*parts: str) -> str:
    """Our words and the ERP's, one after the other, leaving out what is empty."""
    return " ".join(part for part in parts if part)
