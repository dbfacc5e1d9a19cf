"""Business Central: Entra ID discovery and token endpoint, the OData API v2.0 and `$batch`.

See README.md, "Business Central". Handlers below `dispatch` work on parsed values
(method, path, query, body) and return a `Result`, so a `$batch` sub-request runs
exactly the code a single request runs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, unquote_plus, urlencode

from .state import DEFAULT_JOURNAL_TEMPLATE, BcCompany, BcTenant, SandboxState
from .web import Request, Response, dumps, json_response

ERP = "business_central"
SCOPE = "https://api.businesscentral.dynamics.com/.default"
# Scopes MSAL may add on its own; they never change what is granted.
RESERVED_SCOPES = {"openid", "profile", "offline_access"}
TOKEN_LIFETIME_S = 3599
MAX_BATCH = 100
ODATA_JSON = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
GL_ACCOUNT = "G/L Account"
ACCOUNT_TYPES = {GL_ACCOUNT, "G_x002F_L_x0020_Account"}
# Business Central's other account types: valid there, unknown to the sandbox's chart.
OTHER_ACCOUNT_TYPES = {
    "Customer",
    "Vendor",
    "Bank Account",
    "Fixed Asset",
    "IC Partner",
    "Employee",
}
MAX_LENGTHS = {
    "accountNumber": 20,
    "balancingAccountNumber": 20,
    "documentNumber": 20,
    "externalDocumentNumber": 35,
    "description": 100,
    "comment": 250,
}
JOURNAL_LINE_FIELDS = (
    "id",
    "journalId",
    "journalDisplayName",
    "lineNumber",
    "accountType",
    "accountId",
    "accountNumber",
    "postingDate",
    "documentNumber",
    "externalDocumentNumber",
    "amount",
    "description",
    "comment",
    "balanceAccountType",
    "balancingAccountNumber",
    "lastModifiedDateTime",
)
# Read-only properties a client may echo back; they are ignored on insert.
JOURNAL_LINE_READ_ONLY = {"id", "journalId", "journalDisplayName", "lastModifiedDateTime"}
FIELDS = {
    "companies": ("id", "name", "displayName"),
    "accounts": (
        "id",
        "number",
        "displayName",
        "category",
        "accountType",
        "blocked",
        "directPosting",
    ),
    "dimensions": ("id", "code", "displayName"),
    "dimensionValues": ("id", "code", "dimensionId", "displayName"),
    "journals": ("id", "code", "displayName", "templateDisplayName"),
    "journalLines": JOURNAL_LINE_FIELDS,
    "dimensionSetLines": (
        "id",
        "code",
        "consolidationCode",
        "parentId",
        "parentType",
        "displayName",
        "valueId",
        "valueCode",
        "valueConsolidationCode",
        "valueDisplayName",
    ),
    "generalLedgerEntries": (
        "id",
        "entryNumber",
        "postingDate",
        "documentNumber",
        "accountId",
        "accountNumber",
        "description",
        "debitAmount",
        "creditAmount",
        "lastModifiedDateTime",
    ),
}
# Fields of AL type Code: Business Central stores them upper-cased. Whether a `$filter`
# literal in lower case still matches is the assumption `bc_filter_case`.
CODE_FIELDS = frozenset(
    {
        "number",
        "code",
        "valueCode",
        "documentNumber",
        "externalDocumentNumber",
        "accountNumber",
        "balancingAccountNumber",
    }
)
POSTING = "Posting"
CONTINUE_ON_ERROR = re.compile(r"odata\.continue-on-error(?!\s*=\s*false)", re.IGNORECASE)
SEGMENT = re.compile(r"^(?P<name>[A-Za-z$][\w.]*)(?:\((?P<key>[^()]*)\))?$")
GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAXPAGESIZE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_body(code: str, message: str, *, correlation: bool = True) -> dict[str, Any]:
    if correlation:
        message = f"{message}  CorrelationId: {uuid.uuid4()}."
    return {"error": {"code": code, "message": message}}


@dataclass
class Result:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # A journal-line POST: eligible for drop_after_commit_rate.
    write: bool = False


class BcError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.result = Result(status, error_body(code, message))


# The wording is assumed (README, "Assumptions"): the reference says only that the header
# is required.
MISSING_IF_MATCH = (
    "Could not validate the client concurrency token required by the service. "
    "Please provide a valid token in the client request."
)


def _bad_request(message: str) -> BcError:
    return BcError(400, "BadRequest", message)


def _not_found(message: str) -> BcError:
    return BcError(404, "BadRequest_NotFound", message)


# --- Entra ID: discovery and tokens --------------------------------------------------------


def _entra_error(status: int, error: str, description: str, code: int) -> Response:
    trace, correlation = uuid.uuid4(), uuid.uuid4()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return json_response(
        status,
        {
            "error": error,
            "error_description": (
                f"{description}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\n"
                f"Timestamp: {stamp}"
            ),
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": str(trace),
            "correlation_id": str(correlation),
        },
    )


def _unknown_tenant(tenant_id: str) -> Response:
    return _entra_error(
        400,
        "invalid_tenant",
        f"AADSTS90002: Tenant '{tenant_id}' not found. Check to make sure you have the correct "
        "tenant ID and are signing into the correct cloud.",
        90002,
    )


def discovery(state: SandboxState, request: Request, tenant_id: str) -> Response:
    if tenant_id.lower() not in state.bc_tenants:
        return _unknown_tenant(tenant_id)
    root = f"{request.base_url}/{tenant_id}"
    return json_response(
        200,
        {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{root}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{request.base_url}/oidc/userinfo",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "tid", "ver"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        },
    )


def token_endpoint(state: SandboxState, request: Request, tenant_id: str) -> Response:
    form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    client_id, secret = form.get("client_id", ""), form.get("client_secret")
    authorization = request.header("Authorization")
    if authorization[:6].lower() == "basic ":  # client_secret_basic, also advertised
        try:
            user, _, password = base64.b64decode(authorization[6:].strip()).decode().partition(":")
            client_id, secret = unquote_plus(user), unquote_plus(password)
        except (binascii.Error, UnicodeDecodeError):
            pass
    with state.lock:
        tenant = state.bc_tenants.get(tenant_id.lower())
        expired = state.injector.credentials_expired(ERP)
    if tenant is None:
        return _unknown_tenant(tenant_id)
    if form.get("grant_type") != "client_credentials":
        return _entra_error(
            400,
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type "
            f"'{form.get('grant_type', '')}'.",
            70003,
        )
    if client_id not in tenant.clients:
        return _entra_error(
            400,
            "unauthorized_client",
            f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
            f"directory '{tenant.id}'. This can happen if the application has not been installed "
            "by the administrator of the tenant or consented to by any user in the tenant. You "
            "may have sent your authentication request to the wrong tenant.",
            700016,
        )
    if expired:
        return _entra_error(
            401,
            "invalid_client",
            "AADSTS7000222: The provided client secret keys are expired. Visit the Azure portal "
            f"to create new keys for your app: '{client_id}'.",
            7000222,
        )
    if secret != tenant.clients[client_id]:
        return _entra_error(
            401,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the "
            "request is the client secret value, not the client secret ID, for a secret added "
            f"to app '{client_id}'.",
            7000215,
        )
    scopes = set(form.get("scope", "").split()) - RESERVED_SCOPES
    if scopes != {SCOPE}:
        return _entra_error(
            400,
            "invalid_scope",
            f"AADSTS1002012: The provided value for scope {form.get('scope', '')} is not valid. "
            "Client credential flows must have a scope value with /.default suffixed to the "
            f"resource identifier; this tenant grants only {SCOPE}.",
            1002012,
        )
    token = state.issue_token(state.bc_tokens, tenant.id.lower(), TOKEN_LIFETIME_S)
    return json_response(
        200,
        {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_S,
            "ext_expires_in": TOKEN_LIFETIME_S,
            "access_token": token,
        },
        {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
    )


# --- the API -------------------------------------------------------------------------------


@dataclass
class Context:
    state: SandboxState
    tenant: BcTenant
    companies: dict[str, BcCompany]
    base: str  # absolute URL of .../api/v2.0


def _answer(result: Result, outcome: str | None = None) -> Response:
    headers = {"OData-Version": "4.0", **result.headers}
    if result.body is None:
        return Response(result.status, b"", headers, outcome=outcome)
    headers["Content-Type"] = ODATA_JSON
    return Response(result.status, dumps(result.body), headers, outcome=outcome)


def api(
    state: SandboxState, request: Request, tenant_id: str, environment: str, rest: str
) -> Response:
    with state.lock:
        admission = state.injector.admit(ERP)
        retry_after = state.injector.retry_after()
    if admission == "error":
        return _answer(
            Result(
                503,
                error_body(
                    "Internal_ServiceUnavailable",
                    "The service is temporarily unavailable. Please try again later.",
                ),
                {"Retry-After": retry_after},
            ),
            "error",
        )
    if admission == "rate_limited":
        return _answer(
            Result(
                429,
                error_body(
                    "Application_TooManyRequests",
                    "The request was throttled: too many requests in the current time window.",
                ),
                {"Retry-After": retry_after},
            ),
            "rate_limited",
        )

    scheme, _, token = request.header("Authorization").strip().partition(" ")
    with state.lock:
        owner = state.token_owner(state.bc_tokens, token.strip())
        expired = state.injector.credentials_expired(ERP)
        tenant = state.bc_tenants.get(tenant_id.lower())
        # A token Entra issued is still refused when the application is not added and
        # enabled in Business Central's "Microsoft Entra Applications" page (README,
        # Assumptions: 401 here; public reports show 403 when permission sets are missing).
        registered = state.injector.faults.assumption("bc_app_registered")
    if (
        scheme.lower() != "bearer"
        or expired
        or not registered
        or tenant is None
        or owner != tenant_id.lower()
    ):
        return _answer(_invalid_credentials(request, tenant_id), "error")
    companies = tenant.environments.get(environment)
    if companies is None:
        return _answer(
            Result(
                404,
                error_body(
                    "BadRequest_NotFound",
                    f"The environment '{environment}' does not exist for this tenant.",
                ),
            ),
            "error",
        )
    ctx = Context(
        state=state,
        tenant=tenant,
        companies=companies,
        base=f"{request.base_url}/v2.0/{tenant_id}/{environment}/api/v2.0",
    )
    if unquote(rest) == "$batch":
        if request.method != "POST":
            result = _method_not_allowed(request.method)
        else:
            result = _batch(ctx, request)
    else:
        body: Any = None
        if request.body:
            try:
                body = json.loads(request.body, parse_float=Decimal)
            except ValueError:
                body = _INVALID_JSON
        result = dispatch(ctx, request.method, rest, request.query, body, request.headers)
    failed = result.status >= 400 or (
        isinstance(result.body, dict)
        and any(r["status"] >= 400 for r in result.body.get("responses", []))
    )
    response = _answer(result, "error" if failed else "ok")
    if result.write:
        with state.lock:
            response.drop = state.injector.drop_after_commit(ERP)
    return response


_INVALID_JSON = object()


def _invalid_credentials(request: Request, tenant_id: str) -> Result:
    return Result(
        401,
        error_body(
            "Authentication_InvalidCredentials",
            "The server has rejected the client credentials.",
        ),
        {
            "WWW-Authenticate": (
                f'Bearer authorization_uri="{request.base_url}/{tenant_id}'
                '/oauth2/authorize", '
                'resource_id="https://api.businesscentral.dynamics.com"'
            )
        },
    )


def _method_not_allowed_error(method: str) -> BcError:
    return BcError(
        405, "BadRequest_MethodNotAllowed", f"'{method}' is not allowed on this resource."
    )


def _method_not_allowed(method: str) -> Result:
    return _method_not_allowed_error(method).result


def dispatch(
    ctx: Context,
    method: str,
    path: str,
    query: dict[str, str],
    body: Any,
    headers: dict[str, str],
) -> Result:
    """One request against the resource tree; lock held for the whole of it."""
    if body is _INVALID_JSON:
        return BcError(400, "BadRequest", "The request body is not valid JSON.").result
    with ctx.state.lock:
        try:
            return _route(ctx, method.upper(), path, query, body, headers)
        except BcError as error:
            return error.result


@dataclass
class Segment:
    name: str
    key: str | None


def _segments(path: str) -> list[Segment]:
    segments = []
    for raw in unquote(path).strip("/").split("/"):
        match = SEGMENT.match(raw)
        if not match:
            raise _not_found(f"The request URI is not valid: '{path}'.")
        key = match["key"]
        if key is not None:
            key = key.strip()
            if key.lower().startswith("id="):
                key = key[3:].strip()
            key = key.strip("'")
        segments.append(Segment(match["name"], key))
    return segments


def _route(
    ctx: Context,
    method: str,
    path: str,
    query: dict[str, str],
    body: Any,
    headers: dict[str, str],
) -> Result:
    segs = _segments(path)
    clean_path = unquote(path).strip("/")
    invalid = _not_found(f"The request URI is not valid: '{path}'.")

    def listing(
        kind: str, items: list[dict[str, Any]], depth: int, owner: BcCompany | None = None
    ) -> Result:
        if len(segs) != depth:
            raise invalid
        if method != "GET":
            raise _method_not_allowed_error(method)
        return _collection(ctx, kind, items, clean_path, query, headers, owner)

    def entity(item: dict[str, Any] | None, label: str, key: str, context: str) -> Result:
        if item is None:
            raise _not_found(f"The {label} with id '{key}' does not exist.")
        if method != "GET":
            raise _method_not_allowed_error(method)
        return _entity(ctx, item, context)

    def by_id(items: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
        return next((i for i in items if i["id"].lower() == key.lower()), None)

    if not segs or segs[0].name != "companies":
        raise invalid
    if segs[0].key is None:
        return listing("companies", [c.entity() for c in ctx.companies.values()], 1)
    company = ctx.companies.get(segs[0].key.lower())
    if company is None:
        raise _not_found(f"The company with id '{segs[0].key}' does not exist.")
    if len(segs) == 1:
        return entity(company.entity(), "company", company.id, "companies/$entity")
    c = f"companies({company.id})"
    head, rest = segs[1], segs[2:]

    if head.name in ("accounts", "dimensionValues", "generalLedgerEntries") and head.key is None:
        items = {
            "accounts": [a for a in company.accounts if not _hidden(ctx, a["number"])],
            "dimensionValues": company.dimension_values,
            "generalLedgerEntries": company.gl_entries,
        }[head.name]
        return listing(head.name, items, 2, company)
    if head.name in ("accounts", "dimensionValues") and not rest:
        items = company.accounts if head.name == "accounts" else company.dimension_values
        found = by_id(items, head.key or "")
        if found is not None and head.name == "accounts" and _hidden(ctx, found["number"]):
            found = None
        label = "account" if head.name == "accounts" else "dimension value"
        return entity(found, label, head.key or "", f"{c}/{head.name}/$entity")

    if head.name == "dimensions":
        if head.key is None:
            return listing("dimensions", company.dimensions, 2)
        dimension = company.dimensions_by_id.get(head.key.lower())
        if not rest or dimension is None:
            return entity(dimension, "dimension", head.key, f"{c}/dimensions/$entity")
        if rest[0].name == "dimensionValues" and rest[0].key is None:
            values = [v for v in company.dimension_values if v["dimensionId"] == dimension["id"]]
            return listing("dimensionValues", values, 3)
        raise invalid

    if head.name == "journals":
        if head.key is None:
            return listing("journals", _api_journals(company), 2)
        journal = company.journals_by_id.get(head.key.lower())
        if journal is not None and journal not in _api_journals(company):
            journal = None
        if not rest or journal is None:
            return entity(journal, "journal", head.key, f"{c}/journals/$entity")
        if rest[0].name == "Microsoft.NAV.post" and len(rest) == 1:
            if method != "POST":
                raise _method_not_allowed_error(method)
            return _post_journal(ctx, company, journal)
        if rest[0].name == "journalLines":
            lines = [line for line in company.journal_lines if line["journalId"] == journal["id"]]
            if rest[0].key is not None:
                j = f"{c}/journals({journal['id']})"
                return _line_resource(
                    ctx, company, lines, rest, method, body, query, headers, j, deletable=True
                )
            if method == "POST" and len(rest) == 1:
                try:
                    return _create_line(ctx, company, journal, body)
                except BcError as error:
                    # A refused journal-line POST is still a write request for the
                    # drop fault: the client cannot tell it apart from a committed one.
                    error.result.write = True
                    raise
            return listing("journalLines", lines, 3, company)
        raise invalid

    if head.name == "journalLines":
        if head.key is None:
            return listing("journalLines", company.journal_lines, 2, company)
        return _line_resource(
            ctx, company, company.journal_lines, segs[1:], method, body, query, headers, c
        )

    if head.name == "generalLedgerEntries":
        entry = by_id(company.gl_entries, head.key or "")
        if not rest or entry is None:
            return entity(
                entry, "general ledger entry", head.key or "", f"{c}/generalLedgerEntries/$entity"
            )
        if rest[0].name == "dimensionSetLines" and rest[0].key is None and len(rest) == 1:
            if method != "GET":
                raise _method_not_allowed_error(method)
            lines = company.dimension_set_lines.get(entry["id"], [])
            return _collection(ctx, "dimensionSetLines", lines, clean_path, query, headers)
        raise invalid

    raise invalid


def _api_journals(company: BcCompany) -> list[dict[str, Any]]:
    """The batches page 30016 shows: those of the default general journal template."""
    return [j for j in company.journals if j["templateDisplayName"] == DEFAULT_JOURNAL_TEMPLATE]


def _line_resource(
    ctx: Context,
    company: BcCompany,
    lines: list[dict[str, Any]],
    segs: list[Segment],
    method: str,
    body: Any,
    query: dict[str, str],
    headers: dict[str, str],
    parent_path: str,
    *,
    deletable: bool = False,
) -> Result:
    """`journalLines({id})` and its `dimensionSetLines`, under a company or a journal.

    DELETE is documented only under a journal (`dynamics_journalline_delete.md`).
    """
    key = segs[0].key or ""
    line = next((item for item in lines if item["id"].lower() == key.lower()), None)
    if line is None:
        raise _not_found(f"The journal line with id '{key}' does not exist.")
    line_path = f"{parent_path}/journalLines({line['id']})"
    if len(segs) == 1:
        if method == "DELETE" and deletable:
            if not headers.get("if-match"):
                # If-Match is required (api-reference dynamics_journalline_delete).
                raise _bad_request(MISSING_IF_MATCH)
            return _delete_line(ctx, company, line)
        if method != "GET":
            return _method_not_allowed(method)
        return _entity(ctx, line, f"{parent_path}/journalLines/$entity")
    if len(segs) == 2 and segs[1].name == "dimensionSetLines" and segs[1].key is None:
        if method == "POST":
            if ctx.state.injector.dimension_error(ERP):
                return _service_unavailable(ctx)
            return _create_dimension_set_line(ctx, company, line, body)
        if method != "GET":
            return _method_not_allowed(method)
        return _collection(
            ctx,
            "dimensionSetLines",
            company.dimension_set_lines.get(line["id"], []),
            f"{line_path}/dimensionSetLines",
            query,
            headers,
        )
    raise _not_found("The request URI is not valid.")


def _service_unavailable(ctx: Context) -> Result:
    return Result(
        503,
        error_body(
            "Internal_ServiceUnavailable",
            "The service is temporarily unavailable. Please try again later.",
        ),
        {"Retry-After": ctx.state.injector.retry_after()},
    )


def _delete_line(ctx: Context, company: BcCompany, line: dict[str, Any]) -> Result:
    """Remove a journal line and the dimension set lines that belong to it."""
    position = company.journal_lines.index(line)
    dimensions = company.dimension_set_lines.pop(line["id"], None)
    company.journal_lines.remove(line)

    def undo() -> None:
        company.journal_lines.insert(position, line)
        if dimensions is not None:
            company.dimension_set_lines[line["id"]] = dimensions

    ctx.state.record_undo(undo)
    return Result(204)


def _hidden(ctx: Context, number: str | None) -> bool:
    return ctx.state.injector.account_hidden(ERP, number)


# --- reading: entities and collections with paging -----------------------------------------


def _etag(entity: dict[str, Any]) -> str:
    stamp = f"{entity.get('id')}:{entity.get('lastModifiedDateTime', '')}"
    return f'W/"{base64.b64encode(stamp.encode()).decode()}"'


def _annotated(entity: dict[str, Any], select: list[str] | None = None) -> dict[str, Any]:
    shown = entity if select is None else {k: entity.get(k) for k in select}
    return {"@odata.etag": _etag(entity), **shown}


def _entity(ctx: Context, entity: dict[str, Any], context: str) -> Result:
    return Result(200, {"@odata.context": f"{ctx.base}/$metadata#{context}", **_annotated(entity)})


# Entities whose dimension set lines `$expand=dimensionSetLines` brings along: the
# navigation property the API v2.0 reference lists for journalLine and generalLedgerEntry
# (resources dynamics_journalline.md, dynamics_generalledgerentry.md); Microsoft's own
# consolidation reads `generalLedgerEntries?$filter=...&$expand=dimensionSetLines`.
EXPANDABLE = {"journalLines", "generalLedgerEntries"}
EXPAND_PROPERTY = "dimensionSetLines"


def _collection(
    ctx: Context,
    kind: str,
    items: list[dict[str, Any]],
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    owner: BcCompany | None = None,
) -> Result:
    for option in query:
        if option.startswith("$") and option not in (
            "$filter",
            "$top",
            "$skip",
            "$select",
            "$skiptoken",
            "$expand",
        ):
            raise _bad_request(f"The query option '{option}' is not supported by the sandbox.")
    expand = _expansion(kind, query.get("$expand"), owner)
    fields_ = FIELDS[kind]
    insensitive = ctx.state.injector.faults.assumption("bc_filter_case") == "insensitive"
    rows = _apply_filter(
        items, query.get("$filter"), fields_, kind, CODE_FIELDS if insensitive else frozenset()
    )
    skip = _non_negative(query, "$skip")
    top = _non_negative(query, "$top")
    if skip:
        rows = rows[skip:]
    if top is not None:
        rows = rows[:top]
    select = None
    if query.get("$select"):
        select = [s.strip() for s in query["$select"].split(",") if s.strip()]
        for name in select:
            if name not in fields_:
                raise _bad_request(f"Could not find a property named '{name}' on type '{kind}'.")
    offset = 0
    if "$skiptoken" in query:
        try:
            offset = int(query["$skiptoken"])
            if offset < 0:
                raise ValueError
        except ValueError:
            raise _bad_request("The skip token is not valid.") from None
    page_size = ctx.state.page_size
    response_headers: dict[str, str] = {}
    prefer = MAXPAGESIZE.search(headers.get("prefer", ""))
    if prefer and 0 < int(prefer[1]) <= page_size:
        page_size = int(prefer[1])
        response_headers["Preference-Applied"] = f"odata.maxpagesize={page_size}"
    page = rows[offset : offset + page_size]
    body: dict[str, Any] = {
        "@odata.context": f"{ctx.base}/$metadata#{path}",
        "value": [{**_annotated(row, select), **expand(row)} for row in page],
    }
    if offset + page_size < len(rows):
        # The next link repeats the query so the next page sees the same filter and $top
        # (counted from the first row, so it stays right however the pages are cut).
        params = {k: v for k, v in query.items() if k != "$skiptoken"}
        params["$skiptoken"] = str(offset + page_size)
        body["@odata.nextLink"] = (
            f"{ctx.base}/{path}?{urlencode(params, quote_via=quote, safe='$,()')}"
        )
    return Result(200, body, response_headers)


def _expansion(
    kind: str, expand: str | None, owner: BcCompany | None
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """What `$expand` adds to each row: nothing, or its dimension set lines."""
    if expand is None:
        return lambda _row: {}
    wanted = [name.strip() for name in expand.split(",") if name.strip()]
    for name in wanted:
        if name != EXPAND_PROPERTY or kind not in EXPANDABLE or owner is None:
            raise _bad_request(
                f"Could not find a navigation property named '{name}' on type "
                f"'Microsoft.NAV.{kind}'."
            )
    sets = owner.dimension_set_lines if owner is not None else {}
    return lambda row: {EXPAND_PROPERTY: [_annotated(line) for line in sets.get(row["id"], [])]}


def _non_negative(query: dict[str, str], name: str) -> int | None:
    if name not in query:
        return None
    try:
        value = int(query[name])
    except ValueError:
        value = -1
    if value < 0:
        raise _bad_request(f"Invalid value for {name}: '{query[name]}'.")
    return value


def _split_and(text: str) -> list[str]:
    """Split a $filter on `and` outside quoted strings."""
    current: list[str]
    parts, current, quoted, i = [], [], False, 0
    while i < len(text):
        char = text[i]
        if char == "'":
            quoted = not quoted
        if not quoted and re.match(r"\s+and\s+", text[i:], re.IGNORECASE) and current:
            match = re.match(r"\s+and\s+", text[i:], re.IGNORECASE)
            assert match is not None
            parts.append("".join(current))
            current = []
            i += match.end()
            continue
        current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


CLAUSE = re.compile(r"^\s*([A-Za-z_]\w*)\s+(eq|ge|gt|le|lt)\s+(.+?)\s*$", re.DOTALL)
# `startswith(field, 'text')` (webservices use-filter-expressions-in-odata-uris.md), also
# written `startswith(field, 'text') eq true`.
STARTSWITH = re.compile(
    r"^\s*startswith\(\s*([A-Za-z_]\w*)\s*,\s*('.*')\s*\)(?:\s+eq\s+true)?\s*$",
    re.DOTALL | re.IGNORECASE,
)
ORDERED = {"ge": (1, 0), "gt": (1,), "le": (-1, 0), "lt": (-1,)}


def _literal(text: str) -> tuple[str, Any]:
    if len(text) >= 2 and text[0] == "'" and text[-1] == "'":
        inner = text[1:-1]
        if re.search(r"(?<!')'(?!')", inner.replace("''", "")):
            raise _bad_request(f"Syntax error in $filter at '{text}'.")
        return "string", inner.replace("''", "'")
    if GUID.match(text):
        return "guid", text.lower()
    if _valid_date(text):
        return "date", text  # an Edm.Date literal is written unquoted: 2025-03-14
    if text in ("true", "false"):
        return "boolean", text == "true"
    if text == "null":
        return "null", None
    try:
        return "number", Decimal(text)
    except InvalidOperation:
        raise _bad_request(f"Syntax error in $filter at '{text}'.") from None


def _apply_filter(
    items: list[dict[str, Any]],
    text: str | None,
    fields_: tuple[str, ...],
    kind: str,
    case_insensitive: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    if not text:
        return list(items)
    clauses = []
    for part in _split_and(text):
        starts = STARTSWITH.match(part)
        match = CLAUSE.match(part)
        if starts:
            name, operator, (literal_kind, value) = starts[1], "startswith", _literal(starts[2])
            if literal_kind != "string":
                raise _bad_request(f"startswith takes a string literal: '{part.strip()}'.")
        elif match:
            name, operator, (literal_kind, value) = match[1], match[2], _literal(match[3])
        else:
            raise _bad_request(
                f"The $filter '{text}' is not supported: use <field> eq|ge|gt|le|lt <value> "
                "or startswith(<field>, '<text>'), joined by and."
            )
        if name not in fields_:
            raise _bad_request(f"Could not find a property named '{name}' on type '{kind}'.")
        clauses.append((name, operator, literal_kind, value))

    def compare(name: str, operator: str, literal_kind: str, actual: Any, value: Any) -> bool:
        if literal_kind == "date":
            if not isinstance(actual, str) or not _valid_date(actual):
                raise _type_mismatch(name, "Edm.Date")
        elif literal_kind == "number":
            if isinstance(actual, bool) or not isinstance(actual, int | Decimal):
                raise _type_mismatch(name, "Edm.Decimal")
        elif literal_kind == "string":
            if not isinstance(actual, str):
                raise _type_mismatch(name, "Edm.String")
            if name in case_insensitive:
                actual, value = actual.upper(), value.upper()
        else:
            raise _bad_request(f"The operator '{operator}' cannot compare a {literal_kind}.")
        sign = (actual > value) - (actual < value)
        return sign in ORDERED[operator]

    def matches(item: dict[str, Any]) -> bool:
        for name, operator, literal_kind, value in clauses:
            actual = item.get(name)
            if operator == "startswith":
                if actual is not None and not isinstance(actual, str):
                    raise _type_mismatch(name, "Edm.String")
                text_ = actual or ""
                ok = (
                    text_.upper().startswith(value.upper())
                    if name in case_insensitive
                    else text_.startswith(value)
                )
                if not ok:
                    return False
                continue
            if operator != "eq":
                if actual is None or not compare(name, operator, literal_kind, actual, value):
                    return False
                continue
            if literal_kind == "null":
                ok = actual is None
            elif literal_kind == "guid":
                ok = isinstance(actual, str) and actual.lower() == value
            elif literal_kind == "date":
                ok = actual == value
            elif literal_kind == "string":
                if actual is not None and not isinstance(actual, str):
                    raise _type_mismatch(name, "Edm.String")
                if name in case_insensitive and actual is not None:
                    ok = actual.upper() == value.upper()
                else:
                    ok = actual == value
            elif literal_kind == "boolean":
                if not isinstance(actual, bool):
                    raise _type_mismatch(name, "Edm.Boolean")
                ok = actual is value
            else:
                if isinstance(actual, bool) or not isinstance(actual, int | Decimal):
                    raise _type_mismatch(name, "Edm.Decimal")
                ok = actual == value
            if not ok:
                return False
        return True

    return [item for item in items if matches(item)]


def _type_mismatch(name: str, literal_type: str) -> BcError:
    return _bad_request(
        f"A binary operator with incompatible types was detected for property '{name}' "
        f"and a literal of type '{literal_type}' for operator kind 'Equal'."
    )


# --- writing -------------------------------------------------------------------------------


def _require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _bad_request("The request body must be a JSON object.")
    return {k: v for k, v in body.items() if not k.startswith("@odata.")}


def _account_for(ctx: Context, company: BcCompany, number: str) -> dict[str, Any]:
    account = company.accounts_by_number.get(number)
    if account is None or _hidden(ctx, number):
        raise BcError(
            400,
            "Internal_RecordNotFound",
            f"The G/L Account does not exist. Identification fields and values: No.='{number}'",
        )
    if account["accountType"] != POSTING:
        # Only Posting accounts take journal lines (api-reference dynamics_account.md).
        raise BcError(
            400,
            "Application_DialogException",
            f"Account Type must be equal to 'Posting'  in G/L Account: No.={number}. "
            f"Current value is '{account['accountType']}'.",
        )
    if account["blocked"]:
        raise BcError(
            400,
            "Application_DialogException",
            f"Blocked must be equal to 'No'  in G/L Account: No.={number}. Current value is 'Yes'.",
        )
    return account


def _no_such_account(field_name: str) -> BcError:
    # Page 30049 "APIV2 - JournalLines" raises this for an account it cannot resolve.
    return BcError(
        400, "Application_DialogException", f'The "{field_name}" does not match to an Account.'
    )


def _account_type(body: dict[str, Any], name: str) -> str:
    value = body.get(name, GL_ACCOUNT)
    if value in ACCOUNT_TYPES or value in ("", None):
        return GL_ACCOUNT
    if value in OTHER_ACCOUNT_TYPES:
        raise _bad_request(
            f"{name} '{value}' is valid in Business Central, but the sandbox's chart holds only "
            "G/L accounts."
        )
    raise _bad_request(f"Cannot convert the literal '{value}' to the expected type for {name}.")


def _create_line(ctx: Context, company: BcCompany, journal: dict[str, Any], body: Any) -> Result:
    given = _require_object(body)
    for name in given:
        if name not in JOURNAL_LINE_FIELDS:
            raise _bad_request(
                f"Could not find a property named '{name}' on type 'Microsoft.NAV.journalLine'."
            )
    for name, maximum in MAX_LENGTHS.items():
        value = given.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise _bad_request(
                f"Cannot convert the literal '{value}' to the expected type 'Edm.String'."
            )
        if len(value) > maximum:
            raise _bad_request(
                f"The length of the string is {len(value)}, but it must be less than or equal "
                f"to {maximum} characters. Value: {value}"
            )
    amount = given.get("amount", 0)
    if isinstance(amount, bool) or not isinstance(amount, int | Decimal):
        raise _bad_request(
            f"Cannot convert the literal '{amount}' to the expected type 'Edm.Decimal'."
        )
    amount = Decimal(amount)
    if not amount.is_finite():
        raise _bad_request(
            f"Cannot convert the literal '{amount}' to the expected type 'Edm.Decimal'."
        )
    posting_date = given.get("postingDate") or date.today().isoformat()
    if not isinstance(posting_date, str) or not _valid_date(posting_date):
        raise _bad_request(
            f"Cannot convert the literal '{posting_date}' to the expected type 'Edm.Date'."
        )
    line_number = given.get("lineNumber")
    if line_number is not None and (
        isinstance(line_number, bool) or not isinstance(line_number, int)
    ):
        raise _bad_request(
            f"Cannot convert the literal '{line_number}' to the expected type 'Edm.Int32'."
        )
    account_type = _account_type(given, "accountType")
    balance_type = _account_type(given, "balanceAccountType")
    account_number = given.get("accountNumber") or ""
    account_id = given.get("accountId")
    account: dict[str, Any] | None = None
    if not account_number and account_id and account_id != "00000000-0000-0000-0000-000000000000":
        found = company.accounts_by_id.get(str(account_id).lower())
        if found is None or _hidden(ctx, found["number"]):
            raise _no_such_account("accountId")
        account_number = found["number"]
    if account_number:
        if account_number not in company.accounts_by_number or _hidden(ctx, account_number):
            raise _no_such_account("accountNumber")
        account = _account_for(ctx, company, account_number)
    balancing_number = given.get("balancingAccountNumber") or ""
    if balancing_number:
        _account_for(ctx, company, balancing_number)
    reference = given.get("externalDocumentNumber") or ""
    if ctx.state.injector.permanent_error(ERP, reference):
        raise BcError(
            400,
            "Application_DialogException",
            f"Period is closed for posting date {posting_date}",
        )
    existing = [
        line["lineNumber"] for line in company.journal_lines if line["journalId"] == journal["id"]
    ]
    if line_number is None:
        line_number = max(existing, default=0) + 10000
    elif line_number in existing:
        raise BcError(
            400,
            "Internal_EntityWithSameKeyExists",
            f"The record in table Gen. Journal Line already exists. Identification fields and "
            f"values: Journal Batch Name='{journal['code']}',Line No.='{line_number}'",
        )
    line = {
        "id": str(uuid.uuid4()),
        "journalId": journal["id"],
        "journalDisplayName": journal["code"],
        "lineNumber": line_number,
        "accountType": account_type,
        "accountId": account["id"] if account else "00000000-0000-0000-0000-000000000000",
        "accountNumber": account_number,
        "postingDate": posting_date,
        "documentNumber": (given.get("documentNumber") or "").upper(),
        "externalDocumentNumber": reference.upper(),
        "amount": amount,
        "description": given.get("description") or (account["displayName"] if account else ""),
        "comment": given.get("comment") or "",
        "balanceAccountType": balance_type,
        "balancingAccountNumber": balancing_number,
        "lastModifiedDateTime": _now(),
    }
    company.journal_lines.append(line)
    ctx.state.record_undo(lambda: company.journal_lines.remove(line))
    path = f"companies({company.id})/journalLines({line['id']})"
    return Result(
        201,
        {
            "@odata.context": (
                f"{ctx.base}/$metadata#companies({company.id})/journals({journal['id']})"
                "/journalLines/$entity"
            ),
            **_annotated(line),
        },
        {"Location": f"{ctx.base}/{path}"},
        write=True,
    )


def _valid_date(text: str) -> bool:
    if not DATE.match(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _create_dimension_set_line(
    ctx: Context, company: BcCompany, line: dict[str, Any], body: Any
) -> Result:
    given = _require_object(body)
    allowed = set(FIELDS["dimensionSetLines"])
    for name in given:
        if name not in allowed:
            raise _bad_request(
                f"Could not find a property named '{name}' on type "
                "'Microsoft.NAV.dimensionSetLine'."
            )
    dimension = None
    if given.get("code"):
        dimension = company.dimensions_by_code.get(str(given["code"]).upper())
    elif given.get("id"):
        dimension = company.dimensions_by_id.get(str(given["id"]).lower())
    code = str(given.get("code") or given.get("id") or "")
    value_code = str(given.get("valueCode") or given.get("valueId") or "")
    value = None
    if dimension is not None:
        for candidate in company.dimension_values:
            if candidate["dimensionId"] != dimension["id"]:
                continue
            if (
                given.get("valueCode") and candidate["code"] == str(given["valueCode"]).upper()
            ) or (
                not given.get("valueCode")
                and given.get("valueId")
                and candidate["id"].lower() == str(given["valueId"]).lower()
            ):
                value = candidate
                break
    if dimension is None or value is None:
        raise BcError(
            400,
            "Application_DialogException",
            f"The dimension value {value_code} for dimension {code} does not exist.",
        )
    lines = company.dimension_set_lines.setdefault(line["id"], [])
    if any(existing["code"] == dimension["code"] for existing in lines):
        raise BcError(
            400,
            "Internal_EntityWithSameKeyExists",
            "The record in table Dimension Set Entry already exists. Identification fields and "
            f"values: Dimension Code='{dimension['code']}'",
        )
    entry = {
        "id": dimension["id"],
        "code": dimension["code"],
        "consolidationCode": "",
        "parentId": line["id"],
        "parentType": "Journal Line",
        "displayName": dimension["displayName"],
        "valueId": value["id"],
        "valueCode": value["code"],
        "valueConsolidationCode": "",
        "valueDisplayName": value["displayName"],
    }
    lines.append(entry)

    def undo() -> None:
        lines.remove(entry)
        if not lines:  # leave no empty set behind: the ledger must look untouched
            company.dimension_set_lines.pop(line["id"], None)

    ctx.state.record_undo(undo)
    path = (
        f"companies({company.id})/journalLines({line['id']})/dimensionSetLines({dimension['id']})"
    )
    return Result(
        201,
        {
            "@odata.context": (
                f"{ctx.base}/$metadata#companies({company.id})/journalLines({line['id']})"
                "/dimensionSetLines/$entity"
            ),
            **_annotated(entry),
        },
        {"Location": f"{ctx.base}/{path}"},
    )


def _post_journal(ctx: Context, company: BcCompany, journal: dict[str, Any]) -> Result:
    lines = sorted(
        (line for line in company.journal_lines if line["journalId"] == journal["id"]),
        key=lambda line: line["lineNumber"],
    )
    unbalanced: dict[tuple[str, str], Decimal] = {}
    for line in lines:
        where = (
            f"Gen. Journal Line: Journal Template Name=GENERELT, "
            f"Journal Batch Name={journal['code']}, Line No.={line['lineNumber']}"
        )
        if not line["accountNumber"]:
            raise BcError(
                400,
                "Application_DialogException",
                f"Account No. must have a value in {where}. It cannot be zero or empty.",
            )
        # Accounts may have been blocked (or hidden by a fault) since the line was made.
        _account_for(ctx, company, line["accountNumber"])
        if line["balancingAccountNumber"]:
            _account_for(ctx, company, line["balancingAccountNumber"])
        else:
            key = (line["documentNumber"], line["postingDate"])
            unbalanced[key] = unbalanced.get(key, Decimal(0)) + line["amount"]
    for (document, posting_date), total in unbalanced.items():
        if total != 0:
            raise BcError(
                400,
                "Application_DialogException",
                f"Document No. {document} is out of balance by {total} on {posting_date}. "
                "Check the amount in the Amount field.",
            )

    saved_lines = list(company.journal_lines)
    saved_dimensions = dict(company.dimension_set_lines)
    saved_entries = len(company.gl_entries)
    saved_next = company.next_entry_number

    def undo() -> None:
        company.journal_lines[:] = saved_lines
        company.dimension_set_lines.clear()
        company.dimension_set_lines.update(saved_dimensions)
        del company.gl_entries[saved_entries:]
        company.next_entry_number = saved_next

    ctx.state.record_undo(undo)
    stamp = _now()
    for line in lines:
        dimensions = company.dimension_set_lines.pop(line["id"], [])
        post_line(company, line, dimensions, stamp)
        company.journal_lines.remove(line)
    return Result(204)


def post_line(
    company: BcCompany, line: dict[str, Any], dimensions: list[dict[str, Any]], stamp: str
) -> None:
    """One journal line into the general ledger: an entry for its account and, with a
    balancing account, one for that (the line's dimensions on both), in that order."""
    legs = [(line["accountNumber"], line["amount"])]
    if line["balancingAccountNumber"]:
        legs.append((line["balancingAccountNumber"], -line["amount"]))
    for number, amount in legs:
        account = company.accounts_by_number[number]
        entry = {
            "id": str(uuid.uuid4()),
            "entryNumber": company.next_entry_number,
            "postingDate": line["postingDate"],
            "documentNumber": line["documentNumber"],
            "accountId": account["id"],
            "accountNumber": number,
            "description": line["description"],
            "debitAmount": amount if amount > 0 else Decimal(0),
            "creditAmount": -amount if amount < 0 else Decimal(0),
            "lastModifiedDateTime": stamp,
        }
        company.next_entry_number += 1
        company.gl_entries.append(entry)
        if dimensions:
            company.dimension_set_lines[entry["id"]] = [
                {**d, "parentId": entry["id"], "parentType": "General Ledger Entry"}
                for d in dimensions
            ]


# --- $batch ----------------------------------------------------------------------------------


def _batch(ctx: Context, request: Request) -> Result:
    try:
        payload = json.loads(request.body or b"null", parse_float=Decimal)
    except ValueError:
        payload = None
    requests = payload.get("requests") if isinstance(payload, dict) else None
    if not isinstance(requests, list) or not all(isinstance(r, dict) for r in requests):
        return _bad_request('The batch body must be {"requests": [...]}.').result
    if len(requests) > MAX_BATCH:
        return BcError(
            400,
            "Unknown",
            "The current batch message contains too many parts. A maximum number of "
            f"'{MAX_BATCH}' query operations and change sets are allowed in a batch message.",
        ).result
    ids = [str(r.get("id", "")) for r in requests]
    if any(not i for i in ids) or len(set(ids)) != len(ids):
        return _bad_request("Every request in a batch needs an id, unique within the batch.").result
    for r in requests:
        if not isinstance(r.get("method"), str) or not isinstance(r.get("url"), str):
            return _bad_request(f"Request {r['id']} needs a method and a url.").result
    snapshot = request.header("Isolation").strip().lower() == "snapshot"
    keep_going = bool(CONTINUE_ON_ERROR.search(request.header("Prefer")))
    return Result(200, {"responses": _run_batch(ctx, requests, snapshot, keep_going)}, write=True)


def _run_batch(
    ctx: Context, requests: list[dict[str, Any]], snapshot: bool, keep_going: bool
) -> list[dict[str, Any]]:
    """Run the operations in order, as Business Central does (README, `$batch`).

    Processing stops at the first failed operation, and later operations are left out
    of the answer, unless `Prefer: odata.continue-on-error` was sent. With `Isolation:
    snapshot` a failure rolls back everything the batch wrote, yet the operations that
    ran before it keep their 2xx answers.
    """
    state = ctx.state
    answers: list[dict[str, Any]] = []
    # The whole batch runs under the lock: a snapshot batch is one transaction, and its
    # undo log must not interleave with anyone else's writes.
    with state.lock:
        if snapshot:
            state.undo_log = []
        try:
            failed = False
            for r in requests:
                result = _run_sub_request(ctx, r)
                answers.append(_sub_answer(str(r["id"]), result))
                if result.status >= 400:
                    failed = True
                    if not keep_going:
                        break
            if snapshot and failed:
                for undo in reversed(state.undo_log or []):
                    undo()
        finally:
            state.undo_log = None
    return answers


def _sub_answer(rid: str, result: Result) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in result.headers.items()}
    answer: dict[str, Any] = {"id": rid, "status": result.status, "headers": headers}
    if result.body is not None:
        headers["content-type"] = ODATA_JSON
        answer["body"] = result.body
    return answer


def _run_sub_request(ctx: Context, r: dict[str, Any]) -> Result:
    url: str = r["url"]
    if url.lower().startswith(ctx.base.lower() + "/"):
        url = url[len(ctx.base) + 1 :]
    elif "://" in url:
        return _bad_request(f"The URL '{url}' is not under this API's root {ctx.base}.").result
    url = url.lstrip("/")
    path, _, query_text = url.partition("?")
    if path.startswith("$"):
        # No public source shows Business Central resolving `$<id>` references to an
        # entity created earlier in the batch (README, `$batch`): the URL is invalid.
        segment = path.split("/", 1)[0]
        return _bad_request(
            f"The request URI is not valid. Since the segment '{segment}' refers to a "
            "collection, this must be the last segment in the request URI or it must be "
            "followed by an function or action that can be bound to it otherwise all "
            "intermediate segments must refer to a single resource."
        ).result
    headers = {str(k).lower(): str(v) for k, v in (r.get("headers") or {}).items()}
    body = r.get("body")
    if isinstance(body, str):
        try:
            body = json.loads(body, parse_float=Decimal)
        except ValueError:
            body = _INVALID_JSON
    return dispatch(
        ctx, r["method"], path, dict(parse_qsl(query_text, keep_blank_values=True)), body, headers
    )
