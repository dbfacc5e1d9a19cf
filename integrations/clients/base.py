"""What every ERP connector offers, and the typed results it returns.

The sync engine and the settings pages speak only these types; each ERP module
(xledger.py, business_central.py) turns them into its own API's calls. Errors
are classified here once, because the class decides what the engine does next
(see docs/architecture.md, "Exactly once").
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

from integrations.notes import Note

# Bodies kept in results and logs are cut to this many characters.
MAX_BODY_CHARS = 4000


class Outcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    TRANSIENT = "transient"  # 5xx, timeout before sending: retry with backoff
    RATE_LIMITED = "rate_limited"  # 429 / burst limit: retry after `retry_after`
    AUTHENTICATION = "authentication"  # expired or revoked credentials: stop the run
    PERMANENT = "permanent"  # the ERP refused the content: no automatic retry
    UNCERTAIN = "uncertain"  # may have reached the ERP: look it up before resending


class ConnectorError(Exception):
    """A call other than posting failed (test connection, master data, lookup).

    `note` says to an org admin what failed and what to do about it (worded when read);
    `erp_words` is what the ERP itself said, if anything. Neither holds a credential.
    """

    def __init__(
        self,
        outcome: Outcome,
        note: Note,
        *,
        erp_words: str = "",
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(str(note))
        self.outcome = outcome
        self.note = note
        self.erp_words = erp_words
        self.retry_after = retry_after
        self.status = status

    @property
    def message(self) -> str:
        """Both, in the active language: for logs and the command line, never stored."""
        said = str(self.note)
        if self.erp_words and self.erp_words not in said:
            said += f" ({self.erp_words})"
        return said


@dataclass(frozen=True)
class Account:
    code: str
    name: str


@dataclass(frozen=True)
class CostCenter:
    code: str
    name: str
    dimension: str = ""  # Business Central's dimension code, Xledger's object kind


@dataclass(frozen=True)
class Journal:
    code: str
    name: str
    id: str = ""


@dataclass(frozen=True)
class Dimension:
    code: str
    name: str
    id: str = ""


@dataclass(frozen=True)
class ConnectionReport:
    """What Test Connection found: proof of access, and the lists mappings choose from."""

    accounts: list[Account]
    cost_centers: list[CostCenter]
    journals: list[Journal] = field(default_factory=list)
    dimensions: list[Dimension] = field(default_factory=list)
    # What it found, e.g. "company CRONUS, environment production"; "choose the dimension…"
    details: list[Note] = field(default_factory=list)

    @property
    def detail(self) -> str:
        """The details in the active language, for logs and the command line."""
        return "; ".join(str(said) for said in self.details)


@dataclass(frozen=True)
class Posting:
    """One approved record, ready to be a balanced entry in the ERP.

    The expense account is debited with the cost center; the payable account is
    credited with the claimant. `reference` is deterministic (VH-<org>-<record>)
    and goes into the ERP's external-reference field, which is how a record is
    found again after an uncertain send.
    """

    reference: str
    posting_date: date
    amount: Decimal
    currency: str
    expense_account: str
    cost_center: str
    payable_account: str
    claimant_reference: str
    claimant_name: str
    description: str
    # The record's number: deterministic, for an ERP that wants a numeric voucher
    # number (Xledger's trRegNumber), so a resend carries the same one.
    number: int = 0
    # The ERP already holds part of this posting under this id (lookup found it
    # incomplete, e.g. a Business Central line without its dimension): complete it,
    # never create it again.
    existing_id: str = ""


@dataclass(frozen=True)
class Found:
    """What the ERP holds under one reference (the answer of `lookup`)."""

    erp_id: str
    # False when only part of the posting is there (a Business Central journal line
    # without its cost-center dimension, one line of an Xledger voucher): it is not
    # synced, and it is completed (Posting.existing_id) rather than sent again.
    complete: bool = True


class Settlement(enum.StrEnum):
    POSTED = "posted"  # the ERP has taken it for good
    REJECTED = "rejected"  # the ERP refused it after accepting the write (a late rejection)
    WAITING = "waiting"  # not decided yet: ask again later


@dataclass(frozen=True)
class Settled:
    """What became of a posting the ERP accepted but may still reject (`settle`)."""

    state: Settlement
    message: str = ""  # the ERP's own words for a rejection
    erp_id: str = ""
    response_body: str = ""  # truncated to MAX_BODY_CHARS


@dataclass(frozen=True)
class PostResult:
    """What happened to one posting in one call."""

    reference: str
    outcome: Outcome
    erp_id: str = ""  # the ERP's id or number, when SUCCEEDED
    message: str = ""  # the ERP's own words when it refused; never a credential
    note: Note | None = None  # our own words about the failure, as a code (notes.py)
    retry_after: float | None = None
    payload: dict[str, Any] = field(default_factory=dict)  # exactly what was sent for it
    response_status: int | None = None
    response_body: str = ""  # truncated to MAX_BODY_CHARS
    duration_ms: int = 0

    @property
    def words(self) -> str:
        """Our note and the ERP's words, in the active language: for logs and the CLI."""
        return " ".join(part for part in (str(self.note or ""), self.message) if part)

    # The ERP holds part of this posting although the outcome is not SUCCEEDED (a
    # Business Central line whose dimension could not be added): the record must be
    # looked up before it is sent again, whatever the outcome says.
    partial: bool = False


class EntrySource(enum.StrEnum):
    """Where in the ERP an entry was read (reconciliation)."""

    JOURNAL_LINE = "journal_line"  # Business Central: in the journal, not posted yet
    LEDGER_ENTRY = "ledger_entry"  # posted: a BC general ledger entry, an Xledger transaction
    IMPORT_ITEM = "import_item"  # Xledger: a GL import item its import has not processed yet


@dataclass(frozen=True)
class ErpEntry:
    """One posting the ERP holds under a reference (`entries`, for reconciliation).

    The expense side of the posting: its account, cost center and amount (positive),
    which is what a record decides; the payable side mirrors it.
    """

    reference: str
    erp_id: str
    source: EntrySource
    posting_date: date
    amount: Decimal
    account: str
    cost_center: str = ""  # "" when none is attached
    currency: str = ""
    # The payable side's account (Business Central's balancing account, the voucher's
    # credit line in Xledger); "" when the posting has none.
    payable_account: str = ""

    @property
    def posted(self) -> bool:
        return self.source == EntrySource.LEDGER_ENTRY


class Connector(Protocol):
    """One ERP. Built per integration; holds a pooled HTTP session and its token."""

    #: How many postings one `post` call may take (the ERP's batch limit).
    batch_size: int

    #: True when a SUCCEEDED posting may still be refused later (Xledger's import job):
    #: the record waits as "sent, awaiting import" until `settle` says what became of it.
    settles_later: bool

    @property
    def settle_chunk(self) -> int:
        """How many references one `settle` question takes (one request when all are
        posted)."""
        ...

    def test_connection(self) -> ConnectionReport:
        """Authenticate and read master data; raise ConnectorError saying what failed."""
        ...

    def list_accounts(self) -> list[Account]: ...

    def list_cost_centers(self) -> list[CostCenter]: ...

    def post(self, postings: list[Posting]) -> list[PostResult]:
        """Send up to `batch_size` postings; one result per posting, in the same order.

        Never raises for an ERP or network failure: every posting gets a result
        whose outcome says what happened to it.
        """
        ...

    def lookup(self, references: list[str]) -> dict[str, Found]:
        """Which of these references the ERP already holds, whole or in part.

        Used before resending an UNCERTAIN or partial posting. Read-only. Raises
        ConnectorError when the ERP cannot answer (then nothing may be resent yet).
        """
        ...

    def entries(self, start: date, end: date, prefix: str) -> Iterator[list[ErpEntry]]:
        """Every entry the ERP holds whose reference starts with `prefix` and whose posting
        date is within [start, end], one page per item, within the ERP's rate limits.

        Read-only. Raises ConnectorError when the ERP cannot answer.
        """
        ...

    def settle(self, held: dict[str, str]) -> dict[str, Settled]:
        """For postings accepted earlier (reference → ERP id): posted, rejected or waiting.

        Only called when `settles_later`; a connector that never settles later
        answers every reference POSTED. Raises ConnectorError when the ERP cannot answer.
        """
        ...


def truncate(text: str, limit: int = MAX_BODY_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more]"
