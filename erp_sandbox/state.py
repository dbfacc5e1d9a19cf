"""Everything the sandbox remembers: the seed's tenants, what was posted, tokens, faults.

One `SandboxState` per process. All of it is guarded by `lock` (re-entrant, because a
Business Central `$batch` holds it across the sub-requests it runs, and those take it
again). Nothing is written to disk unless a ledger file is given (`--persist`, the demo):
then what was posted survives a restart; `/_sandbox/reset` returns to the seed either way.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from .faults import ERPS, FaultInjector, Faults, RequestGate

DEFAULT_SEED = Path(__file__).with_name("seed.json")
OUTCOMES = ("ok", "error", "rate_limited", "dropped")
# What a ledger file keeps of each tenant: what was posted and the counters that number
# it, so that ids stay unique after a restart. Tokens and faults are not kept.
XLEDGER_POSTED = (
    "items",
    "next_item_db_id",
    "transactions",
    "next_transaction_db_id",
    "import_errors",
    "next_error_db_id",
    "next_call_id",
)
BC_POSTED = ("journal_lines", "dimension_set_lines", "gl_entries", "next_entry_number")


@dataclass
class XledgerEntity:
    name: str
    api_tokens: set[str]
    oauth_clients: dict[str, dict[str, str]]  # client id -> {"clientSecret", "scope"}
    accounts: list[dict[str, Any]]
    object_kinds: list[dict[str, Any]]
    object_values: list[dict[str, Any]]
    # Every GL import item accepted, with its "status": pending (waiting for the import
    # job), imported (became transactions) or rejected (its errors in import_errors).
    items: list[dict[str, Any]] = field(default_factory=list)
    next_item_db_id: int = 900001
    transactions: list[dict[str, Any]] = field(default_factory=list)  # posted by the import
    next_transaction_db_id: int = 700001
    import_errors: list[dict[str, Any]] = field(default_factory=list)  # glImportItemErrors
    next_error_db_id: int = 800001
    next_call_id: int = 1  # one per addGLImportItems call: a voucher is never split across

    def __post_init__(self) -> None:
        self.accounts_by_code = {a["code"]: a for a in self.accounts}
        # Codes are looked up across every object kind (glObjectN carries no kind).
        self.values_by_code: dict[str, dict[str, Any]] = {}
        for value in self.object_values:
            self.values_by_code.setdefault(value["code"], value)


# Business Central's default general journal template (GENERAL; GENERELT in Norwegian):
# the only template whose batches the journals API shows (page 30016 "APIV2 - Journals").
DEFAULT_JOURNAL_TEMPLATE = "GENERELT"


@dataclass
class BcCompany:
    id: str
    name: str
    display_name: str
    accounts: list[dict[str, Any]]
    dimensions: list[dict[str, Any]]
    dimension_values: list[dict[str, Any]]
    journals: list[dict[str, Any]]
    journal_lines: list[dict[str, Any]] = field(default_factory=list)  # unposted
    # Parent id (journal line or G/L entry) -> its dimension set lines.
    dimension_set_lines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    gl_entries: list[dict[str, Any]] = field(default_factory=list)
    next_entry_number: int = 1

    def __post_init__(self) -> None:
        # The seed names only the exceptions: most accounts are Posting accounts, most
        # journals batches of the default general journal template.
        for account in self.accounts:
            account.setdefault("accountType", "Posting")
        for journal in self.journals:
            journal.setdefault("templateDisplayName", DEFAULT_JOURNAL_TEMPLATE)
        self.accounts_by_number = {a["number"]: a for a in self.accounts}
        self.accounts_by_id = {a["id"].lower(): a for a in self.accounts}
        self.dimensions_by_code = {d["code"]: d for d in self.dimensions}
        self.dimensions_by_id = {d["id"].lower(): d for d in self.dimensions}
        self.journals_by_id = {j["id"].lower(): j for j in self.journals}

    def entity(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "displayName": self.display_name}


@dataclass
class BcTenant:
    id: str
    clients: dict[str, str]  # client id -> secret
    environments: dict[str, dict[str, BcCompany]]  # environment -> company id -> company


@dataclass
class IssuedToken:
    owner: str  # the Xledger entity name or the Business Central tenant id
    expires_at: float


class SandboxState:
    def __init__(
        self, seed: dict[str, Any], page_size: int = 50, ledger_file: Path | None = None
    ) -> None:
        self.lock = threading.RLock()
        self.seed = seed
        self.page_size = page_size
        self.ledger_file = ledger_file
        # Set while a `$batch` with `Isolation: snapshot` runs: closures that undo each
        # write, run in reverse on rollback. Only one such batch runs at a time (it
        # holds the lock throughout), so one log suffices.
        self.undo_log: list[Callable[[], None]] | None = None
        # Outlives reset(): a request held across a reset is let go by it, not forgotten.
        self.gate = RequestGate()
        self.reset()
        if ledger_file is not None and ledger_file.exists():
            self._restore(json.loads(ledger_file.read_text(encoding="utf-8"), object_hook=_decode))

    @classmethod
    def from_file(
        cls, path: Path, page_size: int = 50, ledger_file: Path | None = None
    ) -> SandboxState:
        return cls(json.loads(path.read_text(encoding="utf-8")), page_size, ledger_file)

    def reset(self) -> None:
        # A hold left by a test that failed before its release ends with that test.
        self.gate.release()
        with self.lock:
            seed = copy.deepcopy(self.seed)
            self.xledger: dict[str, XledgerEntity] = {}
            for e in seed["xledger"]["entities"]:
                self.xledger[e["name"]] = XledgerEntity(
                    name=e["name"],
                    api_tokens=set(e["apiTokens"]),
                    oauth_clients={c["clientId"]: c for c in e["oauthClients"]},
                    accounts=e["accounts"],
                    object_kinds=e["objectKinds"],
                    object_values=e["objectValues"],
                )
            self.bc_tenants: dict[str, BcTenant] = {}
            for t in seed["business_central"]["tenants"]:
                environments = {
                    name: {
                        c["id"].lower(): BcCompany(
                            id=c["id"],
                            name=c["name"],
                            display_name=c["displayName"],
                            accounts=c["accounts"],
                            dimensions=c["dimensions"],
                            dimension_values=c["dimensionValues"],
                            journals=c["journals"],
                        )
                        for c in env["companies"]
                    }
                    for name, env in t["environments"].items()
                }
                self.bc_tenants[t["id"].lower()] = BcTenant(
                    id=t["id"],
                    clients={c["clientId"]: c["clientSecret"] for c in t["clients"]},
                    environments=environments,
                )
            self.xledger_tokens: dict[str, IssuedToken] = {}
            self.bc_tokens: dict[str, IssuedToken] = {}
            self.injector = FaultInjector()
            self.counts = {erp: dict.fromkeys(OUTCOMES, 0) for erp in ERPS}

    # --- the ledger file --------------------------------------------------------------------

    def _companies(self) -> dict[str, BcCompany]:
        return {
            f"{tenant_id}/{environment}/{company_id}": company
            for tenant_id, tenant in self.bc_tenants.items()
            for environment, companies in tenant.environments.items()
            for company_id, company in companies.items()
        }

    def save_ledger(self) -> None:
        """Write what was posted to the ledger file, if there is one (atomically)."""
        if self.ledger_file is None:
            return
        with self.lock:
            posted = {
                "xledger": {
                    name: {key: getattr(entity, key) for key in XLEDGER_POSTED}
                    for name, entity in self.xledger.items()
                },
                "business_central": {
                    key: {name: getattr(company, name) for name in BC_POSTED}
                    for key, company in self._companies().items()
                },
            }
            text = json.dumps(posted, ensure_ascii=False, default=_encode)
        temporary = self.ledger_file.with_name(f"{self.ledger_file.name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(self.ledger_file)  # a crash never leaves half a ledger

    def _restore(self, posted: dict[str, Any]) -> None:
        # A tenant no longer in the seed is dropped: there is nowhere to put its entries.
        with self.lock:
            for name, saved in posted.get("xledger", {}).items():
                if entity := self.xledger.get(name):
                    for key in XLEDGER_POSTED:
                        setattr(entity, key, saved[key])
            companies = self._companies()
            for key, saved in posted.get("business_central", {}).items():
                if company := companies.get(key):
                    for name in BC_POSTED:
                        setattr(company, name, saved[name])

    # --- tokens ---------------------------------------------------------------------------

    def issue_token(self, store: dict[str, IssuedToken], owner: str, lifetime_s: int) -> str:
        token = secrets.token_urlsafe(32)
        with self.lock:
            store[token] = IssuedToken(owner, time.time() + lifetime_s)
        return token

    @staticmethod
    def token_owner(store: dict[str, IssuedToken], token: str) -> str | None:
        issued = store.get(token)
        if issued is None or issued.expires_at <= time.time():
            return None
        return issued.owner

    # --- faults and counts ----------------------------------------------------------------

    def set_faults(self, faults: Faults) -> None:
        with self.lock:
            self.injector = FaultInjector(faults)

    def count(self, erp: str, outcome: str) -> None:
        with self.lock:
            self.counts[erp][outcome] += 1

    def record_undo(self, undo: Callable[[], None]) -> None:
        if self.undo_log is not None:
            self.undo_log.append(undo)


def _encode(value: Any) -> Any:
    # Business Central amounts are Decimal; a float would not come back the same.
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _decode(value: dict[str, Any]) -> Any:
    if value.keys() == {"$decimal"}:
        return Decimal(value["$decimal"])
    return value
