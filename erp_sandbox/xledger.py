"""Xledger: the OAuth2 token endpoint and the GraphQL API (see README.md, "Xledger").

What the public sources show is answered as they show it (the README names each source);
what they leave open is an assumption with a switch (faults.ASSUMPTIONS, "xledger_*"),
so the tests can show the connector stays safe whichever way the real service behaves.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from graphql import (
    GraphQLError,
    GraphQLScalarType,
    GraphQLSchema,
    IntValueNode,
    StringValueNode,
    ValueNode,
    build_schema,
    graphql_sync,
)

from .state import SandboxState, XledgerEntity
from .web import Request, Response, json_response, text_response

ERP = "xledger"
MAX_PAGE = 10_000
MAX_INPUTS = 500
TOKEN_LIFETIME_S = 3600
AMOUNT = re.compile(r"^-?\d+(\.\d{1,2})?$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
INT64 = re.compile(r"^-?\d{1,19}$")

# Xledger's own words for a malformed Authorization header (help centre; public clients).
BAD_FORMAT = 'Bad format for API Token. Expected header: "Authorization: token <your-token>"'
# A message-only error public client code retries on (grasp-labs ds-provider-xledger-py-lib).
TIMED_OUT = "Your query timed out."
# The code public sources show for a refused value.
INVALID_VALUE = "INVALID_VALUE"

# The filter fields whose existence is unconfirmed (assumption xledger_ext_identifier_filter).
EXT_FILTER = "extIdentifier: String, extIdentifier_in: [String!]"
# A posted-date range in the suffix style Xledger's filters use (`_gte`, `_lt`, ...); that
# these two exist on glImportItems and transactions is unconfirmed (assumption
# xledger_posted_date_filter).
DATE_FILTER = "postedDate_gte: String, postedDate_lte: String"

SDL = """
scalar Int64String
type Query {
  accounts(first: Int, after: String): AccountConnection!
  objectKinds(first: Int, after: String): ObjectKindConnection!
  objectValues(first: Int, after: String, filter: ObjectValueFilter): ObjectValueConnection!
  glImportItems(first: Int, after: String, filter: GLImportItemFilter): GLImportItemConnection!
  glImportItemErrors(
    first: Int, after: String, filter: GLImportItemErrorFilter
  ): GLImportItemErrorConnection!
  transactions(first: Int, after: String, filter: TransactionFilter): TransactionConnection!
}
type Mutation {
  addGLImportItems(inputs: [AddGLImportItemsInput!]!): AddGLImportItemsConnection!
}
input ObjectValueFilter {
  objectKindDbId: Int64String, objectKindDbId_in: [Int64String!], code: String, code_in: [String!]
}
input GLImportItemFilter { dbId: Int64String, dbId_in: [Int64String!] __EXT__ __DATE__ }
input GLImportItemErrorFilter { transactionDbId: Int64String, transactionDbId_in: [Int64String!] }
input TransactionFilter { dbId: Int64String, dbId_in: [Int64String!] __EXT__ __DATE__ }
input CodeInput { code: String! }
input JobLevelInput { dbSubId: Int }
input AddGLImportItemsInput { clientId: String!, node: GLImportItemInput! }
input GLImportItemInput {
  account: CodeInput!, amount: String!, invoiceAmount: String, currency: CodeInput,
  postedDate: String!, invoiceDate: String, dueDate: String, text: String,
  transactionSource: CodeInput, trRegNumber: Int, jobLevel: JobLevelInput,
  extIdentifier: String, invoiceNumber: String, yourReference: String, subledger: CodeInput,
  glObject1: CodeInput, glObject2: CodeInput, glObject3: CodeInput,
  glObject4: CodeInput, glObject5: CodeInput, project: CodeInput
}
type PageInfo { hasNextPage: Boolean!, hasPreviousPage: Boolean! }
type Account { dbId: Int64String!, code: String!, description: String }
type ObjectKind { dbId: Int64String!, name: String! }
type ObjectValue { dbId: Int64String!, code: String!, description: String }
type GLImportItem {
  dbId: Int64String!, trRegNumber: Int, extIdentifier: String, invoiceNumber: String,
  account: Account, amount: String, invoiceAmount: String, currency: String,
  postedDate: String, invoiceDate: String, dueDate: String, text: String,
  glObject1: ObjectValue, glObject2: ObjectValue, glObject3: ObjectValue,
  glObject4: ObjectValue, glObject5: ObjectValue, subledgerCode: String
}
type GLImportItemError {
  dbId: Int64String!, transactionDbId: Int64String!, errorLevel: String, message: String
}
type Transaction {
  dbId: Int64String!, trRegNumber: Int, extIdentifier: String, invoiceNumber: String,
  account: Account, amount: String, currency: String, postedDate: String, text: String,
  glObject1: ObjectValue, glObject2: ObjectValue, glObject3: ObjectValue,
  glObject4: ObjectValue, glObject5: ObjectValue
}
type AccountEdge { cursor: String!, node: Account! }
type AccountConnection { edges: [AccountEdge!]!, pageInfo: PageInfo! }
type ObjectKindEdge { cursor: String!, node: ObjectKind! }
type ObjectKindConnection { edges: [ObjectKindEdge!]!, pageInfo: PageInfo! }
type ObjectValueEdge { cursor: String!, node: ObjectValue! }
type ObjectValueConnection { edges: [ObjectValueEdge!]!, pageInfo: PageInfo! }
type GLImportItemEdge { cursor: String!, node: GLImportItem! }
type GLImportItemConnection { edges: [GLImportItemEdge!]!, pageInfo: PageInfo! }
type GLImportItemErrorEdge { cursor: String!, node: GLImportItemError! }
type GLImportItemErrorConnection { edges: [GLImportItemErrorEdge!]!, pageInfo: PageInfo! }
type TransactionEdge { cursor: String!, node: Transaction! }
type TransactionConnection { edges: [TransactionEdge!]!, pageInfo: PageInfo! }
type AddGLImportItemsConnection { edges: [AddGLImportItemsEdge!]! }
type AddGLImportItemsEdge { clientId: String!, node: GLImportItem! }
"""


# --- the Int64String scalar (xledger/graphql-samples Queries.cs: `$dbId: Int64String!`) -----


def _int64_out(value: Any) -> str:
    return str(int(value))


def _int64_in(value: Any) -> int:
    # A 64-bit id travels as a string (JSON numbers lose precision past 2^53); a plain
    # integer is taken too.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and INT64.match(value):
        return int(value)
    raise GraphQLError(f"Int64String cannot represent value: {json.dumps(value)}")


def _int64_literal(node: ValueNode, _variables: Any = None) -> int:
    if isinstance(node, StringValueNode | IntValueNode):
        return _int64_in(node.value if isinstance(node, StringValueNode) else int(node.value))
    raise GraphQLError("Int64String cannot represent a non-integer value")


def _build(ext_identifier_filter: bool, posted_date_filter: bool) -> GraphQLSchema:
    schema = build_schema(
        SDL.replace("__EXT__", ", " + EXT_FILTER if ext_identifier_filter else "").replace(
            "__DATE__", ", " + DATE_FILTER if posted_date_filter else ""
        )
    )
    scalar = schema.type_map["Int64String"]
    assert isinstance(scalar, GraphQLScalarType)
    # graphql-core 3.3 reads coerce_*; older versions serialize / parse_value.
    scalar.serialize = scalar.coerce_output_value = _int64_out  # type: ignore[method-assign]
    scalar.parse_value = scalar.coerce_input_value = _int64_in  # type: ignore[method-assign]
    scalar.parse_literal = _int64_literal  # type: ignore[method-assign, assignment]
    return schema


# One schema per answer to "does the extIdentifier filter exist?" and "does the posted-date
# filter exist?": without one, graphql-core refuses a query using it as Xledger would
# ("Field 'extIdentifier_in' is not defined by type ...").
SCHEMAS = {(ext, dates): _build(ext, dates) for ext in (True, False) for dates in (True, False)}
SCHEMA = SCHEMAS[(True, True)]
GL_OBJECTS = tuple(f"glObject{n}" for n in range(1, 6))


class XledgerError(Exception):
    """A business error a resolver raises; becomes one entry of `errors`."""

    def __init__(self, message: str, code: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.extensions = extensions


class InputsRefused(Exception):
    """addGLImportItems refused as a whole: the entries of `errors`, nothing stored."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(entries)} invalid inputs")
        self.entries = entries


def error_entry(message: str, code: str, **extensions: Any) -> dict[str, Any]:
    return {"message": message, "code": code, "extensions": {"code": code, **extensions}}


# --- the token endpoint ------------------------------------------------------------------


def token_endpoint(state: SandboxState, request: Request) -> Response:
    """RFC 6749 §4.4, client authentication by HTTP Basic (§2.3.1) or form fields."""
    form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    client_id, client_secret = form.get("client_id"), form.get("client_secret")
    authorization = request.header("Authorization")
    if authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        user, _, password = decoded.partition(":")
        # §2.3.1: the id and secret are form-urlencoded before base64.
        client_id, client_secret = unquote_plus(user), unquote_plus(password)

    def refuse(status: int, error: str, description: str) -> Response:
        return json_response(status, {"error": error, "error_description": description})

    if form.get("grant_type") != "client_credentials":
        return refuse(
            400, "unsupported_grant_type", "Only grant_type=client_credentials is supported."
        )
    with state.lock:
        expired = state.injector.credentials_expired(ERP)
        entity = next((e for e in state.xledger.values() if client_id in e.oauth_clients), None)
    client = entity.oauth_clients[client_id] if entity and client_id else None
    if client is None or client["clientSecret"] != client_secret:
        return refuse(401, "invalid_client", "Client authentication failed.")
    if expired:
        return refuse(401, "invalid_client", "The client credentials have expired.")
    scope = form.get("scope")
    if scope is not None and client["scope"] not in scope.split():
        return refuse(400, "invalid_scope", f"The scope '{scope}' is not granted to this client.")
    assert entity is not None  # the client was found on it
    token = state.issue_token(state.xledger_tokens, entity.name, TOKEN_LIFETIME_S)
    return json_response(
        200,
        {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_S},
        {"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


# --- the GraphQL endpoint ----------------------------------------------------------------


def _graphql_error(status: int, errors: list[dict[str, Any]], **headers: str) -> Response:
    return json_response(status, {"data": None, "errors": errors}, headers, outcome="error")


def _authenticate(state: SandboxState, request: Request) -> XledgerEntity | Response:
    scheme, _, credential = request.header("Authorization").strip().partition(" ")
    credential = credential.strip()
    with state.lock:
        expired = state.injector.credentials_expired(ERP)
        revoked_answer = state.injector.faults.assumption("xledger_revoked_token")
        if scheme.lower() == "bearer":
            owner = state.token_owner(state.xledger_tokens, credential)
            if owner is None or expired:
                return _graphql_error(
                    401,
                    [error_entry("invalid or expired access token", "UNAUTHENTICATED")],
                    **{"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            return state.xledger[owner]
        well_formed = scheme.lower() == "token" and credential and " " not in credential
        if well_formed and not expired:
            for entity in state.xledger.values():
                if credential in entity.api_tokens:
                    return entity
    if well_formed and revoked_answer == "unauthenticated_401":
        # Unconfirmed: how a well-formed token that is unknown, revoked or expired is refused.
        return _graphql_error(401, [error_entry("Unauthenticated", "UNAUTHENTICATED")])
    # Xledger answers a malformed Authorization header inside a 200, message only.
    return _graphql_error(200, [{"message": BAD_FORMAT}])


def _admission(state: SandboxState) -> Response | None:
    """The answer when a fault refuses the request before it is read, else None."""
    with state.lock:
        admission = state.injector.admit(ERP)
        no_credits = admission == "ok" and state.injector.insufficient_credits(ERP)
        reset_s = state.injector.faults.credits_reset_s
    if admission == "error":
        response = text_response(503, "Service Unavailable")
        response.outcome = "error"
        return response
    if admission == "rate_limited":
        code = "BAD_REQUEST.BURST_RATE_LIMIT_REACHED"
        return json_response(
            200, {"errors": [error_entry("Burst rate limit reached", code)]}, outcome="rate_limited"
        )
    if no_credits:
        reset_at = datetime.now(UTC) + timedelta(seconds=reset_s)
        entry = error_entry(
            "Insufficient credits",
            "BAD_REQUEST.INSUFFICIENT_CREDITS",
            resetAt=reset_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        )
        return json_response(200, {"errors": [entry]}, outcome="rate_limited")
    return None


def _read_payload(request: Request) -> dict[str, Any] | None:
    try:
        payload = json.loads(request.body or b"null")
    except ValueError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return None
    variables = payload.get("variables")
    if variables is not None and not isinstance(variables, dict):
        return None
    return payload


def graphql_endpoint(state: SandboxState, request: Request, verbose: bool = False) -> Response:
    refused = _admission(state)
    if refused is not None:
        return refused
    entity = _authenticate(state, request)
    if isinstance(entity, Response):
        return entity
    payload = _read_payload(request)
    if payload is None:
        message = 'The body must be JSON {"query": ..., "variables": ...}'
        return _graphql_error(400, [error_entry(message, "BAD_REQUEST")])
    with state.lock:
        faults = state.injector.faults
        schema = SCHEMAS[
            (
                bool(faults.assumption("xledger_ext_identifier_filter")),
                bool(faults.assumption("xledger_posted_date_filter")),
            )
        ]
    context: dict[str, Any] = {"state": state, "entity": entity, "wrote": False, "errors": []}
    result = graphql_sync(
        schema,
        payload["query"],
        root_value=Root(),
        context_value=context,
        variable_values=payload.get("variables") or None,
        operation_name=payload.get("operationName"),
    )
    errors = [e for error in result.errors or [] for e in _format_error(error, verbose)]
    errors += context["errors"]  # input errors beside partial data (per_item)
    body: dict[str, Any] = {"data": result.data}
    if errors:
        body["errors"] = errors
    if context["wrote"]:
        with state.lock:
            timed_out = state.injector.query_timeout(ERP)
            drop = not timed_out and state.injector.drop_after_commit(ERP)
        if timed_out:
            # The write is done; the answer says only this (grasp-labs utils/rules.py).
            return _graphql_error(200, [{"message": TIMED_OUT}])
        response = json_response(200, body, outcome="error" if errors else "ok")
        response.drop = drop
        return response
    return json_response(200, body, outcome="error" if errors else "ok")


def _format_error(error: GraphQLError, verbose: bool) -> list[dict[str, Any]]:
    original = error.original_error
    if isinstance(original, InputsRefused):
        return original.entries
    if isinstance(original, XledgerError):
        return [error_entry(original.message, original.code, **original.extensions)]
    if original is not None and not isinstance(original, GraphQLError):
        # A bug in a resolver, not a client mistake: say so, and show it when verbose.
        if verbose:
            print(f"resolver error: {original!r}", file=sys.stderr)
        return [error_entry("Internal server error", "INTERNAL_SERVER_ERROR")]
    # Syntax, validation against the schema, variable coercion.
    formatted = error_entry(_dotnet_wording(error.message), "BAD_REQUEST")
    if error.locations:
        formatted["locations"] = [loc.formatted for loc in error.locations]
    return [formatted]


UNKNOWN_INPUT_FIELD = re.compile(
    r"Expected value of type '(?P<type>\w+)' not to include unknown field '(?P<field>\w+)'"
)


def _dotnet_wording(message: str) -> str:
    """graphql-core's words for an unknown input field, as GraphQL servers on .NET put them."""
    match = UNKNOWN_INPUT_FIELD.search(message)
    if match:
        return f"Field '{match['field']}' is not defined by type '{match['type']}'."
    return message


# --- paging (public clients read only pageInfo { hasNextPage } and each edge's cursor) ----


def _cursor(index: int) -> str:
    return base64.b64encode(f"cursor:{index}".encode()).decode()


def _cursor_index(cursor: str) -> int:
    try:
        prefix, _, index = base64.b64decode(cursor, validate=True).decode().partition(":")
        if prefix != "cursor":
            raise ValueError
        return int(index)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise XledgerError(f"Invalid cursor '{cursor}'", "BAD_REQUEST") from None


def _connection(items: list[Any], first: int | None, after: str | None) -> dict[str, Any]:
    if first is not None and first < 0:
        raise XledgerError("first must not be negative", "BAD_REQUEST")
    if first is not None and first > MAX_PAGE:
        raise XledgerError(
            f"first must be at most {MAX_PAGE}, was {first}", "BAD_REQUEST.PAGE_SIZE"
        )
    start = _cursor_index(after) + 1 if after else 0
    limit = MAX_PAGE if first is None else first
    page = items[start : start + limit]
    edges = [{"cursor": _cursor(start + i), "node": node} for i, node in enumerate(page)]
    return {
        "edges": edges,
        "pageInfo": {"hasNextPage": start + len(page) < len(items), "hasPreviousPage": start > 0},
    }


def _filtered(rows: list[dict[str, Any]], filter_: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Rows matching every `field` / `field_in` condition of a filter."""
    for name, wanted in (filter_ or {}).items():
        if wanted is None:
            continue
        if name.endswith(("_gte", "_lte")):
            field_, _, bound = name.rpartition("_")
            rows = [
                r
                for r in rows
                if r.get(field_) is not None
                and (r[field_] >= wanted if bound == "gte" else r[field_] <= wanted)
            ]
        elif name.endswith("_in"):
            allowed = set(wanted)
            rows = [r for r in rows if r.get(name[:-3]) in allowed]
        else:
            rows = [r for r in rows if r.get(name) == wanted]
    return rows


# --- resolvers ---------------------------------------------------------------------------


def _value_node(entity: XledgerEntity, code: str | None) -> dict[str, Any] | None:
    found = entity.values_by_code.get(code) if code else None
    return {k: found[k] for k in ("dbId", "code", "description")} if found else None


def _item_node(entity: XledgerEntity, item: dict[str, Any]) -> dict[str, Any]:
    return {
        **{k: item[k] for k in ("dbId", "trRegNumber", "extIdentifier", "invoiceNumber")},
        "account": entity.accounts_by_code.get(item["account"]),
        **{k: item[k] for k in ("amount", "invoiceAmount", "currency", "postedDate")},
        **{k: item[k] for k in ("invoiceDate", "dueDate", "text")},
        **{name: _value_node(entity, item[name]) for name in GL_OBJECTS},
        "subledgerCode": item["subledger"],
    }


def _transaction_node(entity: XledgerEntity, row: dict[str, Any]) -> dict[str, Any]:
    return {
        **{k: row[k] for k in ("dbId", "trRegNumber", "extIdentifier", "invoiceNumber")},
        "account": entity.accounts_by_code.get(row["account"]),
        **{k: row[k] for k in ("amount", "postedDate", "text")},
        "currency": row.get("currency"),
        **{name: _value_node(entity, row.get(name)) for name in GL_OBJECTS},
    }


class Root:
    """Query and mutation fields; graphql-core calls each method with (info, **arguments)."""

    def accounts(self, info: Any, first: int | None = None, after: str | None = None) -> dict:
        state: SandboxState = info.context["state"]
        entity: XledgerEntity = info.context["entity"]
        with state.lock:
            injector = state.injector
            visible = [a for a in entity.accounts if not injector.account_hidden(ERP, a["code"])]
        return _connection(visible, first, after)

    def objectKinds(self, info: Any, first: int | None = None, after: str | None = None) -> dict:
        return _connection(info.context["entity"].object_kinds, first, after)

    def objectValues(
        self,
        info: Any,
        first: int | None = None,
        after: str | None = None,
        filter: dict[str, Any] | None = None,
    ) -> dict:
        return _connection(_filtered(info.context["entity"].object_values, filter), first, after)

    def glImportItems(
        self,
        info: Any,
        first: int | None = None,
        after: str | None = None,
        filter: dict[str, Any] | None = None,
    ) -> dict:
        state: SandboxState = info.context["state"]
        entity: XledgerEntity = info.context["entity"]
        with state.lock:
            keep_imported = state.injector.faults.assumption("xledger_imported_items") == "kept"
            items = [i for i in entity.items if keep_imported or i["status"] != "imported"]
        nodes = [_item_node(entity, i) for i in _filtered(items, filter)]
        return _connection(nodes, first, after)

    def glImportItemErrors(
        self,
        info: Any,
        first: int | None = None,
        after: str | None = None,
        filter: dict[str, Any] | None = None,
    ) -> dict:
        state: SandboxState = info.context["state"]
        with state.lock:
            rows = list(info.context["entity"].import_errors)
        return _connection(_filtered(rows, filter), first, after)

    def transactions(
        self,
        info: Any,
        first: int | None = None,
        after: str | None = None,
        filter: dict[str, Any] | None = None,
    ) -> dict:
        state: SandboxState = info.context["state"]
        entity: XledgerEntity = info.context["entity"]
        with state.lock:
            rows = list(entity.transactions)
        nodes = [_transaction_node(entity, r) for r in _filtered(rows, filter)]
        return _connection(nodes, first, after)

    def addGLImportItems(self, info: Any, inputs: list[dict[str, Any]]) -> dict:
        state: SandboxState = info.context["state"]
        entity: XledgerEntity = info.context["entity"]
        info.context["wrote"] = True
        if len(inputs) > MAX_INPUTS:
            raise XledgerError(
                f"addGLImportItems accepts at most {MAX_INPUTS} inputs, got {len(inputs)}",
                "BAD_REQUEST.TOO_MANY_ITEMS",
            )
        # Validation, storing (and an immediate import) under one lock hold: two
        # concurrent calls cannot interleave their items.
        with state.lock:
            faults = state.injector.faults
            problems = _validate_inputs(state, entity, inputs)
            entries = [
                _input_error(i, problems[i], faults.assumption("xledger_error_names_input"))
                for i in sorted(problems)
            ]
            if entries and faults.assumption("xledger_item_errors") == "all_or_nothing":
                raise InputsRefused(entries)
            edges = _store(entity, inputs, set(problems))
            if faults.assumption("xledger_import") == "immediate":
                run_import(state, entity)
        info.context["errors"].extend(entries)
        return {"edges": edges}


def _input_error(index: int, message: str, names_input: str) -> dict[str, Any]:
    entry = error_entry(message, INVALID_VALUE)
    # Unconfirmed how (and whether) Xledger says which input an error belongs to.
    entry["path"] = (
        ["addGLImportItems", "inputs", index] if names_input == "path" else ["addGLImportItems"]
    )
    return entry


def _store(
    entity: XledgerEntity, inputs: list[dict[str, Any]], refused: set[int]
) -> list[dict[str, Any]]:
    created = datetime.now(UTC).isoformat(timespec="milliseconds")
    call_id = entity.next_call_id
    entity.next_call_id += 1
    edges = []
    for index, given in enumerate(inputs):
        if index in refused:
            continue
        item = _stored_item(entity.next_item_db_id, given, created, call_id)
        entity.next_item_db_id += 1
        entity.items.append(item)
        edges.append({"clientId": given["clientId"], "node": _item_node(entity, item)})
    return edges


def _code(node: dict[str, Any], name: str) -> str | None:
    value = node.get(name)
    return value["code"] if value else None


def _stored_item(db_id: int, given: dict[str, Any], created: str, call_id: int) -> dict[str, Any]:
    node = given["node"]
    return {
        "dbId": db_id,
        "status": "pending",
        "callId": call_id,
        "clientId": given["clientId"],
        "trRegNumber": node.get("trRegNumber"),
        "extIdentifier": node.get("extIdentifier"),
        "invoiceNumber": node.get("invoiceNumber"),
        "account": node["account"]["code"],
        "amount": node["amount"],
        "invoiceAmount": node.get("invoiceAmount"),
        "currency": _code(node, "currency") or "NOK",
        "postedDate": node["postedDate"],
        "invoiceDate": node.get("invoiceDate"),
        "dueDate": node.get("dueDate"),
        "text": node.get("text"),
        "transactionSource": _code(node, "transactionSource"),
        "jobLevel": (node.get("jobLevel") or {}).get("dbSubId"),
        "yourReference": node.get("yourReference"),
        "subledger": _code(node, "subledger"),
        **{name: _code(node, name) for name in GL_OBJECTS},
        "project": _code(node, "project"),
        "createdAt": created,
    }


def _valid_date(text: str) -> bool:
    if not DATE.match(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _input_problem(state: SandboxState, entity: XledgerEntity, node: dict[str, Any]) -> str | None:
    """The first thing wrong with one input on its own, or None."""
    account = node["account"]["code"]
    if account not in entity.accounts_by_code or state.injector.account_hidden(ERP, account):
        return f"Account '{account}' does not exist"
    for name in GL_OBJECTS:
        code = _code(node, name)
        if code is not None and code not in entity.values_by_code:
            return f"Object value '{code}' does not exist"
    for name in ("amount", "invoiceAmount"):
        amount = node.get(name)
        if amount is not None and not AMOUNT.match(amount):
            return (
                f"{name} '{amount}' is not a valid amount: "
                "expected a decimal string with at most two decimals"
            )
    for name in ("postedDate", "invoiceDate", "dueDate"):
        value = node.get(name)
        if value is not None and not _valid_date(value):
            return f"{name} '{value}' is not a valid date: expected YYYY-MM-DD"
    if node.get("trRegNumber") is None:
        # Xledger's GL02 import makes the voucher number mandatory; public clients send it.
        return "trRegNumber is required: the voucher number groups the lines of a voucher"
    return None


def _vouchers(lines: list[tuple[int, dict[str, Any]]]) -> dict[Any, list[int]]:
    """Line indexes grouped by voucher: the lines sharing one trRegNumber."""
    vouchers: dict[Any, list[int]] = {}
    for index, node in lines:
        if node.get("trRegNumber") is not None:
            vouchers.setdefault(node["trRegNumber"], []).append(index)
    return vouchers


def _validate_inputs(
    state: SandboxState, entity: XledgerEntity, inputs: list[dict[str, Any]]
) -> dict[int, str]:
    """Input index -> the reason it is refused."""
    nodes = [given["node"] for given in inputs]
    problems: dict[int, str] = {}
    for index, node in enumerate(nodes):
        problem = _input_problem(state, entity, node)
        if problem:
            problems[index] = problem
    for number, members in _vouchers(list(enumerate(nodes))).items():
        if any(not AMOUNT.match(nodes[i]["amount"]) for i in members):
            continue  # an unparseable amount cannot be summed; its own error says why
        reference = next((nodes[i].get("extIdentifier") for i in members), None)
        if sum(Decimal(nodes[i]["amount"]) for i in members) != 0:
            for i in members:
                problems[i] = f"Voucher {number} does not balance"
        elif state.injector.permanent_error(ERP, reference):
            for i in members:
                problems[i] = f"Period is closed for posting date {nodes[i]['postedDate']}"
    return problems


# --- the import job: GL import items become transactions, or glImportItemErrors -------------


def run_import(state: SandboxState, entity: XledgerEntity) -> dict[str, int]:
    """Process every pending item, voucher by voucher. The caller may hold the lock."""
    imported = rejected = 0
    with state.lock:
        pending = [i for i in entity.items if i["status"] == "pending"]
        groups: dict[tuple[int, Any], list[dict[str, Any]]] = {}
        for item in pending:
            groups.setdefault((item["callId"], item["trRegNumber"]), []).append(item)
        for (_call, number), lines in groups.items():
            reason = _late_rejection(state, number, lines)
            if reason:
                _reject(entity, lines, reason)
                rejected += len(lines)
            else:
                _post(entity, lines)
                imported += len(lines)
    return {"imported": imported, "rejected": rejected}


def _late_rejection(state: SandboxState, number: Any, lines: list[dict[str, Any]]) -> str:
    if sum(Decimal(line["amount"]) for line in lines) != 0:
        # Part of a voucher was stored (per_item): the import job cannot post it.
        return f"Voucher {number} does not balance"
    if state.injector.late_rejection(ERP, lines[0]["extIdentifier"]):
        return f"Period is closed for posting date {lines[0]['postedDate']}"
    return ""


def _reject(entity: XledgerEntity, lines: list[dict[str, Any]], message: str) -> None:
    for line in lines:
        line["status"] = "rejected"
        entity.import_errors.append(
            {
                "dbId": entity.next_error_db_id,
                "transactionDbId": line["dbId"],
                "errorLevel": "Error",
                "message": message,
            }
        )
        entity.next_error_db_id += 1


def _post(entity: XledgerEntity, lines: list[dict[str, Any]]) -> None:
    for line in lines:
        line["status"] = "imported"
        keys = ("trRegNumber", "extIdentifier", "invoiceNumber", "account", "amount", "currency")
        entity.transactions.append(
            {
                "dbId": entity.next_transaction_db_id,
                "importItemDbId": line["dbId"],
                **{k: line[k] for k in keys},
                **{k: line[k] for k in ("postedDate", "text", "subledger", *GL_OBJECTS)},
            }
        )
        entity.next_transaction_db_id += 1


def import_all(state: SandboxState) -> dict[str, int]:
    """POST /_sandbox/xledger/import: run the import job for every entity."""
    totals = {"imported": 0, "rejected": 0}
    with state.lock:
        for entity in state.xledger.values():
            for key, count in run_import(state, entity).items():
                totals[key] += count
    return totals
