"""What the ERPs' own users do after a send (issue 15 item 6), as control endpoints.

Reconciliation reads what the ERP holds; in a real tenant that changes after we send:
finance deletes or edits a Business Central journal line before posting, posts the journal,
keys an entry by hand with our reference; Xledger's import job rejects a voucher later.
Each is a POST under /_sandbox/ (README, "Control"), validated strictly like
/_sandbox/faults: an unknown field, a wrong type or nothing to act on is a 400 that says
why, and nothing changes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from . import business_central as bc
from . import xledger as xl
from .state import BcCompany, SandboxState, XledgerEntity
from .web import Request, Response, json_response

BC_ROUTES = {
    "/_sandbox/business_central/delete_line",
    "/_sandbox/business_central/edit_line",
    "/_sandbox/business_central/post_journal",
    "/_sandbox/business_central/key_entry",
}
XL_ROUTES = {"/_sandbox/xledger/reject", "/_sandbox/xledger/key_voucher"}
ROUTES = BC_ROUTES | XL_ROUTES

GL_OBJECT_NAMES = xl.GL_OBJECTS
TWO_PLACES = Decimal("0.01")


class FinanceError(ValueError):
    """A control request that cannot be carried out; nothing was changed."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def handle(state: SandboxState, request: Request) -> Response:
    route = request.path.rstrip("/")
    if request.method != "POST":
        return json_response(405, {"error": f"{request.method} is not allowed on {request.path}"})
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return json_response(400, {"error": "the body must be a JSON object"})
    actions: dict[str, Callable[[SandboxState, dict[str, Any]], dict[str, Any]]] = {
        "/_sandbox/business_central/delete_line": bc_delete_line,
        "/_sandbox/business_central/edit_line": bc_edit_line,
        "/_sandbox/business_central/post_journal": bc_post_journal,
        "/_sandbox/business_central/key_entry": bc_key_entry,
        "/_sandbox/xledger/reject": xl_reject,
        "/_sandbox/xledger/key_voucher": xl_key_voucher,
    }
    try:
        if not isinstance(body, dict):
            raise FinanceError("the body must be a JSON object")
        with state.lock:
            return json_response(200, actions[route](state, body))
    except FinanceError as error:
        return json_response(error.status, {"error": str(error)})


# --- checking what a control request says ------------------------------------------------------


def _fields(body: dict[str, Any], required: set[str], optional: set[str]) -> None:
    unknown = sorted(set(body) - required - optional)
    if unknown:
        raise FinanceError(f"unknown fields: {', '.join(unknown)}")
    missing = sorted(required - set(body))
    if missing:
        raise FinanceError(f"missing fields: {', '.join(missing)}")


def _text(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or not value.strip():
        raise FinanceError(f"{name} must be a non-empty string")
    return value.strip()


def _amount(body: dict[str, Any], name: str = "amount") -> Decimal:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise FinanceError(f'{name} must be a number or a decimal string such as "450.00"')
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise FinanceError(f"{name} {value!r} is not a number") from None
    if not amount.is_finite() or amount.quantize(TWO_PLACES) != amount:
        raise FinanceError(f"{name} {value!r} must have at most two decimals")
    return amount


def _date(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not bc._valid_date(value):
        raise FinanceError(f"{name} must be a date YYYY-MM-DD")
    return value


# --- Business Central ---------------------------------------------------------------------------


def _company(state: SandboxState, body: dict[str, Any]) -> tuple[bc.Context, BcCompany]:
    """The company named by `company` (its name), or the only one there is."""
    found = [
        (tenant, companies, company)
        for tenant in state.bc_tenants.values()
        for companies in tenant.environments.values()
        for company in companies.values()
    ]
    if "company" in body:
        name = _text(body, "company")
        found = [f for f in found if f[2].name == name]
        if not found:
            raise FinanceError(f"no Business Central company named {name!r}", 404)
    elif len(found) != 1:
        raise FinanceError("several Business Central companies: name one in company")
    tenant, companies, company = found[0]
    return bc.Context(state=state, tenant=tenant, companies=companies, base=""), company


def _lines_of(company: BcCompany, reference: str) -> list[dict[str, Any]]:
    """The unposted lines whose document number is `reference` (stored upper-cased)."""
    lines = [line for line in company.journal_lines if line["documentNumber"] == reference.upper()]
    if not lines:
        raise FinanceError(f"no journal line has document number {reference.upper()!r}", 404)
    return lines


def _journal(company: BcCompany, code: str) -> dict[str, Any]:
    journal = next((j for j in company.journals if j["code"] == code.upper()), None)
    if journal is None:
        raise FinanceError(f"no journal {code.upper()!r} in company {company.name!r}", 404)
    return journal


def _checked(action: Callable[[], Any]) -> Any:
    """Run one of the API's own handlers; its refusal becomes this request's 400."""
    try:
        return action()
    except bc.BcError as error:
        raise FinanceError(error.result.body["error"]["message"]) from None


def bc_delete_line(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    """Finance deletes our journal line(s) before posting."""
    _fields(body, {"reference"}, {"company"})
    ctx, company = _company(state, body)
    lines = _lines_of(company, _text(body, "reference"))
    for line in lines:
        bc._delete_line(ctx, company, line)
    return {"deleted": [line["id"] for line in lines]}


def bc_edit_line(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    """Finance edits a journal line: amount, account, posting date and/or one dimension."""
    changes = {"amount", "accountNumber", "postingDate", "dimension"}
    _fields(body, {"reference"}, {"company"} | changes)
    if not changes & set(body):
        raise FinanceError(f"name at least one change: {', '.join(sorted(changes))}")
    ctx, company = _company(state, body)
    lines = _lines_of(company, _text(body, "reference"))
    new: dict[str, Any] = {}
    if "amount" in body:
        new["amount"] = _amount(body)
    if "accountNumber" in body:
        number = _text(body, "accountNumber")
        _checked(lambda: bc._account_for(ctx, company, number))
        new["accountNumber"] = number
        new["accountId"] = company.accounts_by_number[number]["id"]
    if "postingDate" in body:
        new["postingDate"] = _date(body, "postingDate")
    dimension = _dimension(body) if "dimension" in body else None
    for line in lines:
        if dimension is not None:
            _set_dimension(ctx, company, line, dimension)
        line.update(new, lastModifiedDateTime=bc._now())
    return {"edited": [bc._annotated(line) for line in lines]}


def _dimension(body: dict[str, Any]) -> dict[str, str]:
    value = body.get("dimension")
    if not isinstance(value, dict) or set(value) != {"code", "valueCode"}:
        raise FinanceError('dimension must be {"code": "<dimension>", "valueCode": "<value>"}')
    if not all(isinstance(v, str) and v for v in value.values()):
        raise FinanceError("dimension code and valueCode must be non-empty strings")
    return {"code": value["code"], "valueCode": value["valueCode"]}


def _set_dimension(
    ctx: bc.Context, company: BcCompany, line: dict[str, Any], dimension: dict[str, str]
) -> None:
    """Replace (or add) the line's value for one dimension, checked as the API checks it."""
    existing = company.dimension_set_lines.get(line["id"], [])
    kept = [d for d in existing if d["code"] != dimension["code"].upper()]
    company.dimension_set_lines[line["id"]] = kept
    try:
        _checked(lambda: bc._create_dimension_set_line(ctx, company, line, dimension))
    except FinanceError:
        company.dimension_set_lines[line["id"]] = existing  # nothing changes
        raise
    if not company.dimension_set_lines[line["id"]]:
        company.dimension_set_lines.pop(line["id"])


def bc_post_journal(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    """Finance posts the journal: what POST journals({id})/Microsoft.NAV.post does."""
    _fields(body, {"journal"}, {"company"})
    ctx, company = _company(state, body)
    journal = _journal(company, _text(body, "journal"))
    before = len(company.gl_entries)
    _checked(lambda: bc._post_journal(ctx, company, journal))
    return {"posted_entries": len(company.gl_entries) - before}


def bc_key_entry(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    """An entry keyed by hand with our reference: a journal line, or posted G/L entries."""
    _fields(
        body,
        {"kind", "reference", "amount", "accountNumber", "postingDate"},
        {"company", "balancingAccountNumber", "dimension", "journal", "description"},
    )
    kind = body.get("kind")
    if kind not in ("journal_line", "ledger_entry"):
        raise FinanceError('kind must be "journal_line" or "ledger_entry"')
    ctx, company = _company(state, body)
    journal = _journal(company, str(body.get("journal", "UTLEGG")))
    dimension = _dimension(body) if "dimension" in body else None
    line_body: dict[str, Any] = {
        "accountType": bc.GL_ACCOUNT,
        "accountNumber": _text(body, "accountNumber"),
        "postingDate": _date(body, "postingDate"),
        "documentNumber": _text(body, "reference"),
        "amount": _amount(body),
        "description": str(body.get("description", "keyed by hand")),
    }
    if "balancingAccountNumber" in body:
        line_body["balanceAccountType"] = bc.GL_ACCOUNT
        line_body["balancingAccountNumber"] = _text(body, "balancingAccountNumber")
    # Through the API's own checks (lengths, accounts), then undone if anything fails.
    state.undo_log = []
    try:
        created = _checked(lambda: bc._create_line(ctx, company, journal, line_body))
        line = next(x for x in company.journal_lines if x["id"] == created.body["id"])
        if dimension is not None:
            _checked(lambda: bc._create_dimension_set_line(ctx, company, line, dimension))
    except FinanceError:
        for undo in reversed(state.undo_log):
            undo()
        raise
    finally:
        state.undo_log = None
    if kind == "journal_line":
        return {"journalLine": bc._annotated(line)}
    dimensions = company.dimension_set_lines.pop(line["id"], [])
    first = len(company.gl_entries)
    bc.post_line(company, line, dimensions, bc._now())
    company.journal_lines.remove(line)
    return {"generalLedgerEntries": [bc._annotated(e) for e in company.gl_entries[first:]]}


# --- Xledger ------------------------------------------------------------------------------------


def _entity(state: SandboxState, body: dict[str, Any]) -> XledgerEntity:
    if "entity" in body:
        name = _text(body, "entity")
        if name not in state.xledger:
            raise FinanceError(f"no Xledger entity named {name!r}", 404)
        return state.xledger[name]
    if len(state.xledger) != 1:
        raise FinanceError("several Xledger entities: name one in entity")
    return next(iter(state.xledger.values()))


def xl_reject(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    """The import job rejects the voucher(s) waiting under a reference (a late rejection)."""
    _fields(body, {"reference"}, {"entity", "message"})
    entity = _entity(state, body)
    reference = _text(body, "reference")
    pending = [
        i for i in entity.items if i["extIdentifier"] == reference and i["status"] == "pending"
    ]
    if not pending:
        raise FinanceError(
            f"no GL import item waits for import under {reference!r}: with the assumption "
            'xledger_import "immediate" the import ran at once (set "deferred" first, or use '
            "late_rejection_rate)",
            409,
        )
    message = (
        _text(body, "message")
        if "message" in body
        else f"Period is closed for posting date {pending[0]['postedDate']}"
    )
    xl._reject(entity, pending, message)
    return {"rejected": [item["dbId"] for item in pending], "message": message}


def xl_key_voucher(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    """A voucher keyed by hand with our reference: two lines (expense debit, payable credit),
    posted as transactions or waiting as GL import items."""
    _fields(
        body,
        {"kind", "reference", "amount", "account", "payableAccount", "postedDate"},
        {"entity", "trRegNumber", "glObjects", "currency", "text"},
    )
    kind = body.get("kind")
    if kind not in ("transaction", "import_item"):
        raise FinanceError('kind must be "transaction" or "import_item"')
    entity = _entity(state, body)
    amount = _amount(body)
    accounts = [_text(body, "account"), _text(body, "payableAccount")]
    for code in accounts:
        if code not in entity.accounts_by_code:
            raise FinanceError(f"Account '{code}' does not exist")
    objects = body.get("glObjects", {})
    if not isinstance(objects, dict) or not set(objects) <= set(GL_OBJECT_NAMES):
        raise FinanceError(f"glObjects must map some of {', '.join(GL_OBJECT_NAMES)} to codes")
    for code in objects.values():
        if not isinstance(code, str) or code not in entity.values_by_code:
            raise FinanceError(f"Object value {code!r} does not exist")
    number = body.get("trRegNumber", 0)
    if isinstance(number, bool) or not isinstance(number, int):
        raise FinanceError("trRegNumber must be an integer")
    reference = _text(body, "reference")
    common = {
        "trRegNumber": number,
        "extIdentifier": reference,
        "invoiceNumber": reference,
        "currency": str(body.get("currency", "NOK")),
        "postedDate": _date(body, "postedDate"),
        "text": str(body.get("text", "keyed by hand")),
        "subledger": None,
    }
    lines: list[dict[str, Any]] = [
        {**common, "account": accounts[0], "amount": f"{amount:f}", **_objects(objects)},
        {**common, "account": accounts[1], "amount": f"{-amount:f}", **_objects({})},
    ]
    if kind == "transaction":
        for line in lines:
            line.update(dbId=entity.next_transaction_db_id, importItemDbId=None)
            entity.next_transaction_db_id += 1
            entity.transactions.append(line)
        return {"transactions": lines}
    call_id = entity.next_call_id
    entity.next_call_id += 1
    for index, line in enumerate(lines):
        given: dict[str, Any] = {
            "clientId": f"hand-{uuid.uuid4().hex[:8]}-{index}",
            "node": {
                **{k: line[k] for k in ("trRegNumber", "extIdentifier", "invoiceNumber")},
                "account": {"code": line["account"]},
                "amount": line["amount"],
                "currency": {"code": line["currency"]},
                "postedDate": line["postedDate"],
                "text": line["text"],
                **{name: {"code": code} for name in GL_OBJECT_NAMES if (code := line[name])},
            },
        }
        item = xl._stored_item(entity.next_item_db_id, given, bc._now(), call_id)
        entity.next_item_db_id += 1
        entity.items.append(item)
    return {"items": entity.items[-2:]}


def _objects(chosen: dict[str, str]) -> dict[str, str | None]:
    return {name: chosen.get(name) for name in GL_OBJECT_NAMES}
