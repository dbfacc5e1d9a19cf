"""The control API and the ledger page under /_sandbox/ (no authentication: local only)."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from . import finance
from .faults import Faults, FaultSettingsError
from .state import SandboxState
from .web import Request, Response, dumps, json_response, text_response
from .xledger import import_all

GATE_ROUTES = ("/_sandbox/hold", "/_sandbox/held", "/_sandbox/release", "/_sandbox/idle")
# Longest a GET /_sandbox/held or /_sandbox/idle waits before answering what it has.
MAX_WAIT_S = 120.0


def ledger(state: SandboxState) -> dict[str, Any]:
    """A copy of everything posted, safe to serialize outside the lock."""
    with state.lock:
        return json.loads(
            dumps(
                {
                    "xledger": {name: e.items for name, e in state.xledger.items()},
                    "xledger_transactions": {
                        name: e.transactions for name, e in state.xledger.items()
                    },
                    "xledger_import_errors": {
                        name: e.import_errors for name, e in state.xledger.items()
                    },
                    "business_central": {
                        company.name: {
                            "journalLines": company.journal_lines,
                            "generalLedgerEntries": company.gl_entries,
                            "dimensionSetLines": company.dimension_set_lines,
                        }
                        for tenant in state.bc_tenants.values()
                        for companies in tenant.environments.values()
                        for company in companies.values()
                    },
                }
            )
        )


def handle(state: SandboxState, request: Request) -> Response:
    route = request.path.rstrip("/")
    method = request.method
    if route == "/_sandbox" and method == "GET":
        return text_response(200, ledger_page(state), content_type="text/html")
    if route == "/_sandbox/ledger" and method == "GET":
        return json_response(200, ledger(state))
    if route == "/_sandbox/faults" and method == "GET":
        with state.lock:
            return json_response(200, state.injector.faults.to_json())
    if route == "/_sandbox/faults" and method == "POST":
        try:
            faults = Faults.from_json(json.loads(request.body or b"{}"))
        except (ValueError, FaultSettingsError) as error:
            return json_response(400, {"error": str(error)})
        state.set_faults(faults)
        return json_response(200, faults.to_json())
    if route == "/_sandbox/reset" and method == "POST":
        state.reset()
        return json_response(200, {"reset": True})
    if route == "/_sandbox/xledger/import" and method == "POST":
        # Xledger's import job, run on demand (assumption xledger_import "deferred").
        return json_response(200, import_all(state))
    if route == "/_sandbox/requests" and method == "GET":
        with state.lock:
            return json_response(200, {erp: dict(c) for erp, c in state.counts.items()})
    if route == "/_sandbox/burst" and method == "GET":
        with state.lock:
            return json_response(200, state.injector.burst_report())
    if route in GATE_ROUTES:
        return _gate(state, route, method, request)
    if route in finance.ROUTES:
        # What the ERPs' own users do after a send (issue 15 item 6; README, "Control").
        return finance.handle(state, request)
    known = {"/_sandbox", "/_sandbox/ledger", "/_sandbox/faults", "/_sandbox/reset"}
    if route in known | {"/_sandbox/requests", "/_sandbox/burst", "/_sandbox/xledger/import"}:
        return json_response(405, {"error": f"{method} is not allowed on {request.path}"})
    return json_response(404, {"error": f"no such control endpoint: {request.path}"})


def _gate(state: SandboxState, route: str, method: str, request: Request) -> Response:
    """Holding requests for tests (faults.RequestGate; README, "Holding a request")."""
    gate = state.gate
    if route == "/_sandbox/hold" and method == "POST":
        try:
            match = json.loads(request.body or b"{}").get("match")
        except (ValueError, AttributeError):
            match = None
        if not isinstance(match, str) or not match:
            return json_response(400, {"error": 'send {"match": "<text in the path or body>"}'})
        gate.hold(match)
        return json_response(200, gate.status())
    if route == "/_sandbox/release" and method == "POST":
        return json_response(200, {"released": gate.release()})
    if route in ("/_sandbox/held", "/_sandbox/idle") and method == "GET":
        try:
            timeout = min(float(request.query.get("timeout", "0")), MAX_WAIT_S)
            at_least = int(request.query.get("at_least", "1"))
        except ValueError:
            return json_response(400, {"error": "timeout and at_least must be numbers"})
        if timeout <= 0:
            return json_response(200, gate.status())
        if route == "/_sandbox/held":
            return json_response(200, gate.wait_held(at_least, timeout))
        return json_response(200, gate.wait_idle(timeout))
    return json_response(405, {"error": f"{method} is not allowed on {request.path}"})


# --- the HTML page ---------------------------------------------------------------------------


def _table(caption: str, columns: list[tuple[str, str]], rows: list[dict[str, Any]]) -> str:
    if not rows:
        return f"<p>{escape(caption)}: nothing posted.</p>"
    head = "".join(f'<th scope="col">{escape(label)}</th>' for label, _ in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape('' if row.get(key) is None else str(row.get(key)))}</td>"
            for _, key in columns
        )
        + "</tr>"
        for row in rows
    )
    return (
        f"<table><caption>{escape(caption)} ({len(rows)})</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


XLEDGER_COLUMNS = [
    ("dbId", "dbId"),
    ("Voucher (trRegNumber)", "trRegNumber"),
    ("Reference (extIdentifier)", "extIdentifier"),
    ("Status", "status"),
    ("Posted date", "postedDate"),
    ("Account", "account"),
    ("Amount", "amount"),
    ("Currency", "currency"),
    ("Cost center (glObject1)", "glObject1"),
    ("Text", "text"),
]
LINE_COLUMNS = [
    ("Line", "lineNumber"),
    ("Journal", "journalDisplayName"),
    ("Reference (externalDocumentNumber)", "externalDocumentNumber"),
    ("Document", "documentNumber"),
    ("Posting date", "postingDate"),
    ("Account", "accountNumber"),
    ("Balancing account", "balancingAccountNumber"),
    ("Amount", "amount"),
    ("Dimensions", "dimensions"),
    ("Description", "description"),
]
ENTRY_COLUMNS = [
    ("Entry", "entryNumber"),
    ("Document", "documentNumber"),
    ("Posting date", "postingDate"),
    ("Account", "accountNumber"),
    ("Debit", "debitAmount"),
    ("Credit", "creditAmount"),
    ("Dimensions", "dimensions"),
    ("Description", "description"),
]


def _with_dimensions(rows: list[dict[str, Any]], sets: dict[str, list[dict]]) -> list[dict]:
    return [
        {
            **row,
            "dimensions": ", ".join(
                f"{d['code']} {d['valueCode']}" for d in sets.get(row["id"], [])
            ),
        }
        for row in rows
    ]


def ledger_page(state: SandboxState) -> str:
    data = ledger(state)
    with state.lock:
        faults = state.injector.faults.to_json()
    sections = []
    for name, items in data["xledger"].items():
        sections.append(
            f"<section><h2>Xledger: {escape(name)}</h2>"
            + _table("GL import items", XLEDGER_COLUMNS, items)
            + "</section>"
        )
    for name, company in data["business_central"].items():
        sets = company["dimensionSetLines"]
        sections.append(
            f"<section><h2>Business Central: {escape(name)}</h2>"
            "<h3>Journal lines (not yet posted)</h3>"
            + _table("Journal lines", LINE_COLUMNS, _with_dimensions(company["journalLines"], sets))
            + "<h3>General ledger entries</h3>"
            + _table(
                "General ledger entries",
                ENTRY_COLUMNS,
                _with_dimensions(company["generalLedgerEntries"], sets),
            )
            + "</section>"
        )
    fault_rows = "".join(
        f'<tr><th scope="row">{escape(k)}</th><td>{escape(json.dumps(v))}</td></tr>'
        for k, v in faults.items()
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ERP sandbox ledger</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; line-height: 1.4; }}
table {{ border-collapse: collapse; margin-bottom: 1.5rem; }}
caption {{ text-align: left; font-weight: bold; padding: .25rem 0; }}
th, td {{ border: 1px solid #666; padding: .25rem .5rem; text-align: left; }}
</style>
</head>
<body>
<main>
<h1>ERP sandbox ledger</h1>
<p>What the connectors have posted since the last reset. Reload to refresh.</p>
<section>
<h2>Faults in force</h2>
<table><caption>Fault settings</caption>
<thead><tr><th scope="col">Setting</th><th scope="col">Value</th></tr></thead>
<tbody>{fault_rows}</tbody></table>
</section>
{"".join(sections)}
</main>
</body>
</html>
"""
