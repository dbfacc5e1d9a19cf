"""Xledger: the OAuth2 token endpoint and the GraphQL API (see README.md, "Xledger")."""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from graphql import GraphQLError, build_schema, graphql_sync

from .state import SandboxState, XledgerEntity
from .web import Request, Response, json_response, text_response

ERP = "xledger"
MAX_PAGE = 10_000
MAX_INPUTS = 500
TOKEN_LIFETIME_S = 3600
AMOUNT = re.compile(r"^-?\d+(\.\d{1,2})?$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

SDL = """
type Query {
  accounts(first: Int, after: String): AccountConnection!
  objectKinds(first: Int, after: String): ObjectKindConnection!
  objectValues(first: Int, after: String, filter: ObjectValueFilter): ObjectValueConnection!
  glImportItems(first: Int, after: String, filter: GLImportItemFilter): GLImportItemConnection!
}
type Mutation {
  addGLImportItems(inputs: [AddGLImportItemsInput!]!): AddGLImportItemsConnection!
}
input ObjectValueFilter {
  objectKindDbId: Int, objectKindDbId_in: [Int!], code: String, code_in: [String!]
}
input GLImportItemFilter { extIdentifier: String, extIdentifier_in: [String!] }
input CodeInput { code: String! }
input AddGLImportItemsInput { clientId: String!, node: GLImportItemInput! }
input GLImportItemInput {
  account: CodeInput!, amount: String!, invoiceAmount: String, currency: CodeInput,
  postedDate: String!, invoiceDate: String, dueDate: String, text: String,
  transactionSource: CodeInput, trRegNumber: Int, extIdentifier: String,
  invoiceNumber: String, yourReference: String, subledger: CodeInput,
  glObject1: CodeInput, glObject2: CodeInput, glObject3: CodeInput,
  glObject4: CodeInput, glObject5: CodeInput, project: CodeInput
}
type PageInfo {
  hasNextPage: Boolean!, hasPreviousPage: Boolean!, startCursor: String, endCursor: String
}
type Account { dbId: Int!, code: String!, description: String }
type ObjectKind { dbId: Int!, name: String! }
type ObjectValue { dbId: Int!, code: String!, description: String }
type GLImportItem {
  dbId: Int!, extIdentifier: String, invoiceNumber: String, account: Account,
  amount: String, currency: String, postedDate: String, text: String,
  glObject1: ObjectValue, glObject2: ObjectValue, glObject3: ObjectValue,
  glObject4: ObjectValue, glObject5: ObjectValue, subledgerCode: String
}
type AccountEdge { cursor: String!, node: Account! }
type AccountConnection { edges: [AccountEdge!]!, pageInfo: PageInfo! }
type ObjectKindEdge { cursor: String!, node: ObjectKind! }
type ObjectKindConnection { edges: [ObjectKindEdge!]!, pageInfo: PageInfo! }
type ObjectValueEdge { cursor: String!, node: ObjectValue! }
type ObjectValueConnection { edges: [ObjectValueEdge!]!, pageInfo: PageInfo! }
type GLImportItemEdge { cursor: String!, node: GLImportItem! }
type GLImportItemConnection { edges: [GLImportItemEdge!]!, pageInfo: PageInfo! }
type AddGLImportItemsConnection { edges: [AddGLImportItemsEdge!]! }
type AddGLImportItemsEdge { clientId: String!, node: GLImportItem! }
"""

SCHEMA = build_schema(SDL)
GL_OBJECTS = tuple(f"glObject{n}" for n in range(1, 6))


class XledgerError(Exception):
    """A business error a resolver raises; becomes one entry of `errors`."""

    def __init__(self, message: str, code: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.extensions = extensions


class ValidationFailed(Exception):
    """addGLImportItems refused: one XledgerError per invalid input, nothing stored."""

    def __init__(self, errors: list[XledgerError]) -> None:
        super().__init__(f"{len(errors)} invalid inputs")
        self.errors = errors


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
    token = state.issue_token(state.xledger_tokens, entity.name, TOKEN_LIFETIME_S)
    return json_response(
        200,
        {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_S},
        {"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


# --- the GraphQL endpoint ----------------------------------------------------------------


def _authenticate(state: SandboxState, request: Request) -> XledgerEntity | Response:
    scheme, _, credential = request.header("Authorization").strip().partition(" ")
    credential = credential.strip()
    with state.lock:
        expired = state.injector.credentials_expired(ERP)
        if scheme.lower() == "bearer":
            owner = state.token_owner(state.xledger_tokens, credential)
            if owner is None or expired:
                return json_response(
                    401,
                    {
                        "data": None,
                        "errors": [
                            error_entry("invalid or expired access token", "UNAUTHENTICATED")
                        ],
                    },
                    {"WWW-Authenticate": 'Bearer error="invalid_token"'},
                    outcome="error",
                )
            return state.xledger[owner]
        if scheme.lower() == "token" and not expired:
            for entity in state.xledger.values():
                if credential in entity.api_tokens:
                    return entity
    # Xledger answers a bad API token inside a 200, as a GraphQL error.
    return json_response(
        200,
        {"data": None, "errors": [error_entry("bad format for api token", "UNAUTHENTICATED")]},
        outcome="error",
    )


def graphql_endpoint(state: SandboxState, request: Request, verbose: bool = False) -> Response:
    with state.lock:
        admission = state.injector.admit(ERP)
    if admission == "error":
        response = text_response(503, "Service Unavailable")
        response.outcome = "error"
        return response
    if admission == "rate_limited":
        return json_response(
            200,
            {
                "errors": [
                    error_entry("Burst rate limit reached", "BAD_REQUEST.BURST_RATE_LIMIT_REACHED")
                ]
            },
            outcome="rate_limited",
        )
    entity = _authenticate(state, request)
    if isinstance(entity, Response):
        return entity
    try:
        payload = json.loads(request.body or b"null")
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            raise ValueError
        variables = payload.get("variables") or None
        if variables is not None and not isinstance(variables, dict):
            raise ValueError
    except ValueError:
        return json_response(
            400,
            {
                "data": None,
                "errors": [
                    error_entry(
                        'The body must be JSON {"query": ..., "variables": ...}', "BAD_REQUEST"
                    )
                ],
            },
            outcome="error",
        )
    context: dict[str, Any] = {"state": state, "entity": entity, "wrote": False}
    result = graphql_sync(
        SCHEMA,
        payload["query"],
        root_value=Root(),
        context_value=context,
        variable_values=variables,
        operation_name=payload.get("operationName"),
    )
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [e for error in result.errors for e in _format_error(error, verbose)]
    response = json_response(200, body, outcome="error" if result.errors else "ok")
    if context["wrote"]:
        with state.lock:
            response.drop = state.injector.drop_after_commit(ERP)
    return response


def _format_error(error: GraphQLError, verbose: bool) -> list[dict[str, Any]]:
    original = error.original_error
    if isinstance(original, ValidationFailed):
        return [error_entry(e.message, e.code, **e.extensions) for e in original.errors]
    if isinstance(original, XledgerError):
        return [error_entry(original.message, original.code, **original.extensions)]
    if original is not None:
        # A bug in a resolver, not a client mistake: say so, and show it when verbose.
        if verbose:
            print(f"resolver error: {original!r}", file=sys.stderr)
        return [error_entry("Internal server error", "INTERNAL_SERVER_ERROR")]
    # Syntax, validation against the schema, variable coercion.
    formatted = error_entry(error.message, "BAD_REQUEST")
    if error.locations:
        formatted["locations"] = [loc.formatted for loc in error.locations]
    return [formatted]


# --- paging ------------------------------------------------------------------------------


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
        "pageInfo": {
            "hasNextPage": start + len(page) < len(items),
            "hasPreviousPage": start > 0,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


# --- resolvers ---------------------------------------------------------------------------


def _item_node(entity: XledgerEntity, item: dict[str, Any]) -> dict[str, Any]:
    def value(code: str | None) -> dict[str, Any] | None:
        found = entity.values_by_code.get(code) if code else None
        return {k: found[k] for k in ("dbId", "code", "description")} if found else None

    return {
        "dbId": item["dbId"],
        "extIdentifier": item["extIdentifier"],
        "invoiceNumber": item["invoiceNumber"],
        "account": entity.accounts_by_code.get(item["account"]),
        "amount": item["amount"],
        "currency": item["currency"],
        "postedDate": item["postedDate"],
        "text": item["text"],
        **{name: value(item[name]) for name in GL_OBJECTS},
        "subledgerCode": item["subledger"],
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
        values = info.context["entity"].object_values
        f = filter or {}
        if f.get("objectKindDbId") is not None:
            values = [v for v in values if v["objectKindDbId"] == f["objectKindDbId"]]
        if f.get("objectKindDbId_in") is not None:
            values = [v for v in values if v["objectKindDbId"] in f["objectKindDbId_in"]]
        if f.get("code") is not None:
            values = [v for v in values if v["code"] == f["code"]]
        if f.get("code_in") is not None:
            values = [v for v in values if v["code"] in f["code_in"]]
        return _connection(values, first, after)

    def glImportItems(
        self,
        info: Any,
        first: int | None = None,
        after: str | None = None,
        filter: dict[str, Any] | None = None,
    ) -> dict:
        state: SandboxState = info.context["state"]
        entity: XledgerEntity = info.context["entity"]
        f = filter or {}
        with state.lock:
            items = list(entity.items)
        if f.get("extIdentifier") is not None:
            items = [i for i in items if i["extIdentifier"] == f["extIdentifier"]]
        if f.get("extIdentifier_in") is not None:
            wanted = set(f["extIdentifier_in"])
            items = [i for i in items if i["extIdentifier"] in wanted]
        return _connection([_item_node(entity, i) for i in items], first, after)

    def addGLImportItems(self, info: Any, inputs: list[dict[str, Any]]) -> dict:
        state: SandboxState = info.context["state"]
        entity: XledgerEntity = info.context["entity"]
        info.context["wrote"] = True
        if len(inputs) > MAX_INPUTS:
            raise XledgerError(
                f"addGLImportItems accepts at most {MAX_INPUTS} inputs, got {len(inputs)}",
                "BAD_REQUEST.TOO_MANY_ITEMS",
            )
        # Validation and storing happen under one lock hold: all or nothing, and two
        # concurrent calls cannot interleave their items.
        with state.lock:
            errors = _validate_inputs(state, entity, inputs)
            if errors:
                raise ValidationFailed(errors)
            created = datetime.now(UTC).isoformat(timespec="milliseconds")
            edges = []
            for given in inputs:
                item = _stored_item(entity.next_item_db_id, given, created)
                entity.next_item_db_id += 1
                entity.items.append(item)
                edges.append({"clientId": given["clientId"], "node": _item_node(entity, item)})
        return {"edges": edges}


def _code(node: dict[str, Any], name: str) -> str | None:
    value = node.get(name)
    return value["code"] if value else None


def _stored_item(db_id: int, given: dict[str, Any], created: str) -> dict[str, Any]:
    node = given["node"]
    return {
        "dbId": db_id,
        "clientId": given["clientId"],
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
        "trRegNumber": node.get("trRegNumber"),
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
    injector = state.injector
    account = node["account"]["code"]
    if account not in entity.accounts_by_code or injector.account_hidden(ERP, account):
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
    return None


def _validate_inputs(
    state: SandboxState, entity: XledgerEntity, inputs: list[dict[str, Any]]
) -> list[XledgerError]:
    problems: dict[int, str] = {}
    for index, given in enumerate(inputs):
        problem = _input_problem(state, entity, given["node"])
        if problem:
            problems[index] = problem
    # A voucher is the inputs sharing one extIdentifier; it must sum to zero. Inputs
    # without an extIdentifier belong to no voucher and are not checked.
    vouchers: dict[str, list[int]] = {}
    for index, given in enumerate(inputs):
        reference = given["node"].get("extIdentifier")
        if reference:
            vouchers.setdefault(reference, []).append(index)
    for reference, members in vouchers.items():
        if any(i in problems for i in members):
            continue  # an unparseable amount cannot be summed; its own error says why
        total = sum(Decimal(inputs[i]["node"]["amount"]) for i in members)
        if total != 0:
            for i in members:
                problems[i] = f"Voucher '{reference}' does not balance"
        elif state.injector.permanent_error(ERP, reference):
            for i in members:
                problems[i] = f"Period is closed for posting date {inputs[i]['node']['postedDate']}"
    return [
        XledgerError(problems[i], "BAD_REQUEST.VALIDATION", clientId=inputs[i]["clientId"])
        for i in sorted(problems)
    ]
