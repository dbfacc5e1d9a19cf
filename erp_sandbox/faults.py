"""The fault settings and the injector that decides, request by request, what goes wrong.

Every decision is made under the sandbox's state lock (the caller holds it), so the
random stream and the burst window are consistent under concurrent requests.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any

ERPS = ("xledger", "business_central")


# Behaviours of the real services that no public source settles (README, "Assumptions").
# Each maps to the values it may take; the FIRST is what the sandbox does by default.
# A test flips one through POST /_sandbox/faults {"assumptions": {name: value}} and shows
# the connectors stay safe either way: never a duplicate, never a false "synced".
ASSUMPTIONS: dict[str, tuple[Any, ...]] = {
    # --- Xledger -------------------------------------------------------------------------
    # Whether glImportItems and transactions take the filter extIdentifier_in; without it a
    # query using it is a GraphQL validation error ("Field 'extIdentifier_in' is not defined").
    "xledger_ext_identifier_filter": (True, False),
    # How addGLImportItems treats a call with invalid inputs: store none of it, or store the
    # valid inputs (echoed in data) and refuse the invalid ones (in errors).
    "xledger_item_errors": ("all_or_nothing", "per_item"),
    # Whether an input error names its input (path ["addGLImportItems", "inputs", <index>])
    # or only gives a message.
    "xledger_error_names_input": ("path", "none"),
    # When the import job turns accepted GL import items into transactions (or rejects them):
    # at once after the mutation, or only on POST /_sandbox/xledger/import. The engine is
    # safe either way (records wait as "sent, awaiting import"); at once keeps the demo moving.
    "xledger_import": ("immediate", "deferred"),
    # How a well-formed but unknown or revoked API token is answered: like a malformed one
    # (HTTP 200, "Bad format for API Token. ..."), or HTTP 401 UNAUTHENTICATED.
    "xledger_revoked_token": ("bad_format", "unauthenticated_401"),
    # Whether GL import items the import job posted leave glImportItems or stay listed.
    "xledger_imported_items": ("removed", "kept"),
    # Whether glImportItems and transactions take a posted-date range in Xledger's filter
    # suffix style (postedDate_gte / postedDate_lte); without it the query is refused like
    # an unknown extIdentifier_in (reconciliation then reads everything and filters itself).
    "xledger_posted_date_filter": (True, False),
    # --- Business Central ----------------------------------------------------------------
    # Whether `$filter=<Code field> eq 'literal'` matches a literal in another case than
    # the stored, upper-cased value. "exact": only the upper-cased literal matches.
    "bc_filter_case": ("exact", "insensitive"),
    # Whether the Entra application is added and enabled in Business Central's "Microsoft
    # Entra Applications" page. False: tokens are issued, every API call answers 401.
    "bc_app_registered": (True, False),
}


class FaultSettingsError(ValueError):
    """A POST to /_sandbox/faults that cannot be applied; nothing changes."""


@dataclass
class Faults:
    seed: int = 42
    only: str | None = None
    latency_ms: int = 0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after_s: int = 1
    drop_after_commit_rate: float = 0.0
    permanent_error_rate: float = 0.0
    late_rejection_rate: float = 0.0
    insufficient_credits_rate: float = 0.0
    credits_reset_s: int = 1200
    query_timeout_rate: float = 0.0
    # Business Central: that fraction of dimension set line POSTs answer 503 before doing
    # anything (a journal line that exists without its cost center).
    dimension_error_rate: float = 0.0
    expired_credentials: bool = False
    unknown_accounts: list[str] = field(default_factory=list)
    burst_limit: dict[str, int] | None = None
    assumptions: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> Faults:
        """Validate a settings document strictly: a typo must not silently mean 'no fault'."""
        if not isinstance(data, dict):
            raise FaultSettingsError("the fault settings must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FaultSettingsError(f"unknown fault settings: {', '.join(unknown)}")
        faults = cls()
        for name, value in data.items():
            setattr(faults, name, _validate(name, value))
        return faults

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def assumption(self, name: str) -> Any:
        """The value in force for an unconfirmed behaviour: as set, else its default."""
        return self.assumptions.get(name, ASSUMPTIONS[name][0])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate(name: str, value: Any) -> Any:
    if name == "seed":
        if not _is_int(value):
            raise FaultSettingsError("seed must be an integer")
        return value
    if name == "only":
        if value not in (None, *ERPS):
            raise FaultSettingsError('only must be null, "xledger" or "business_central"')
        return value
    if name in ("latency_ms", "retry_after_s", "credits_reset_s"):
        if not _is_int(value) or value < 0:
            raise FaultSettingsError(f"{name} must be a non-negative integer")
        return value
    if name.endswith("_rate"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise FaultSettingsError(f"{name} must be a number from 0.0 to 1.0")
        return float(value)
    if name == "expired_credentials":
        if not isinstance(value, bool):
            raise FaultSettingsError("expired_credentials must be true or false")
        return value
    if name == "unknown_accounts":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise FaultSettingsError("unknown_accounts must be a list of account codes")
        return list(value)
    if name == "burst_limit":
        if value is None:
            return None
        if (
            not isinstance(value, dict)
            or set(value) != {"requests", "per_seconds"}
            or not all(_is_int(v) and v > 0 for v in value.values())
        ):
            raise FaultSettingsError(
                'burst_limit must be null or {"requests": <int > 0>, "per_seconds": <int > 0>}'
            )
        return dict(value)
    if name == "assumptions":
        return _validate_assumptions(value)
    raise FaultSettingsError(f"unknown fault setting {name}")  # pragma: no cover


def _validate_assumptions(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FaultSettingsError("assumptions must be an object of name: value")
    for name, chosen in value.items():
        if name not in ASSUMPTIONS:
            raise FaultSettingsError(f"unknown assumption {name}")
        if chosen not in ASSUMPTIONS[name] or isinstance(chosen, bool) != isinstance(
            ASSUMPTIONS[name][0], bool
        ):
            allowed = ", ".join(repr(v) for v in ASSUMPTIONS[name])
            raise FaultSettingsError(f"assumption {name} must be one of {allowed}")
    return dict(value)


class FaultInjector:
    """Applies one `Faults` document. Not thread-safe by itself: callers hold the state lock."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self._random = random.Random(self.faults.seed)
        # The last `requests` admitted API requests per ERP, as monotonic timestamps: the
        # burst limit refuses a request when the oldest of them is within the window, and
        # the shortest time in which `requests + 1` were admitted shows how close a paced
        # client came to the limit.
        depth = self.faults.burst_limit["requests"] if self.faults.burst_limit else 1
        self._admitted: dict[str, deque[float]] = {erp: deque(maxlen=depth) for erp in ERPS}
        self._shortest_span: dict[str, float | None] = dict.fromkeys(ERPS)

    def applies(self, erp: str) -> bool:
        return self.faults.only in (None, erp)

    def _draw(self, rate: float) -> bool:
        # Rates of exactly 0 and 1 consume no random numbers, so a test that switches
        # one fault on does not shift the stream the others would see.
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        return self._random.random() < rate

    def latency_seconds(self, erp: str) -> float:
        return self.faults.latency_ms / 1000 if self.applies(erp) else 0.0

    def admit(self, erp: str) -> str:
        """'ok', 'error' (answer 503) or 'rate_limited' for one API request."""
        if not self.applies(erp):
            return "ok"
        burst = self.faults.burst_limit
        if burst is not None and not self._admit_within(erp, burst["per_seconds"]):
            return "rate_limited"
        if self._draw(self.faults.error_rate):
            return "error"
        if self._draw(self.faults.rate_limit_rate):
            return "rate_limited"
        return "ok"

    def _admit_within(self, erp: str, per_seconds: int) -> bool:
        """Admit the request unless the window already holds the limit's number of them.
        Refused requests do not enter it: a client that backs off for the window's length
        gets through again, as with the real burst limit."""
        admitted = self._admitted[erp]
        now = time.monotonic()
        if len(admitted) == admitted.maxlen:
            span = now - admitted[0]
            if span < per_seconds:
                return False
            shortest = self._shortest_span[erp]
            self._shortest_span[erp] = span if shortest is None else min(shortest, span)
        admitted.append(now)
        return True

    def burst_report(self) -> dict[str, dict[str, Any]]:
        """Per ERP under a burst limit: the limit, and the shortest time in which one more
        request than it allows was admitted (None until that many came)."""
        burst = self.faults.burst_limit
        if burst is None:
            return {}
        return {
            erp: {**burst, "shortest_span_s": self._shortest_span[erp]}
            for erp in ERPS
            if self.applies(erp)
        }

    def drop_after_commit(self, erp: str) -> bool:
        return self.applies(erp) and self._draw(self.faults.drop_after_commit_rate)

    def permanent_error(self, erp: str, reference: str | None) -> bool:
        """Stable per reference and seed, so a resent posting is refused again."""
        if not reference or not self.applies(erp) or self.faults.permanent_error_rate <= 0:
            return False
        digest = hashlib.sha256(f"{self.faults.seed}:{reference}".encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2**64
        return fraction < self.faults.permanent_error_rate

    def dimension_error(self, erp: str) -> bool:
        return self.applies(erp) and self._draw(self.faults.dimension_error_rate)

    def late_rejection(self, erp: str, reference: str | None) -> bool:
        """Stable per reference and seed (salted apart from permanent_error_rate)."""
        if not reference or not self.applies(erp):
            return False
        fraction = _stable_fraction(self.faults.seed, "late", reference)
        return fraction < self.faults.late_rejection_rate

    def insufficient_credits(self, erp: str) -> bool:
        return self.applies(erp) and self._draw(self.faults.insufficient_credits_rate)

    def query_timeout(self, erp: str) -> bool:
        """Drawn after a write was carried out: the answer becomes a message-only timeout."""
        return self.applies(erp) and self._draw(self.faults.query_timeout_rate)

    def credentials_expired(self, erp: str) -> bool:
        return self.applies(erp) and self.faults.expired_credentials

    def account_hidden(self, erp: str, code: str | None) -> bool:
        return self.applies(erp) and code in self.faults.unknown_accounts

    def retry_after(self) -> str:
        return str(math.ceil(self.faults.retry_after_s))


def _stable_fraction(seed: int, salt: str, reference: str) -> float:
    """A number in [0, 1) fixed by seed, salt and reference: the same reference, the same fate."""
    digest = hashlib.sha256(f"{seed}:{salt}:{reference}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# --- holding requests (tests that must act while a request is in flight) -------------------

# A held request goes ahead after this long even if nobody releases it: a test that fails
# before its release must not leave the session's sandbox stuck.
HOLD_TIMEOUT_S = 60.0


class RequestGate:
    """Counts the API requests being handled, and holds those that match until released.

    A test that must do something *while* a request is in flight (disable the connector
    while a batch is being posted) used to give the request a latency and sleep for part
    of it: a race that a slow machine loses. Instead the test names a text (`hold`), waits
    until a request containing it is held (`wait_held`), acts, and releases it.

    Separate from the fault settings on purpose: it is a test's hand on one request, not
    a behaviour of the ERP, and it has its own lock because a held request must wait
    without holding the state lock (which every other request needs).
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._match: str | None = None
        self._generation = 0  # each release bumps it; a held request waits for a new one
        self.held = 0
        self.in_flight = 0

    def status(self) -> dict[str, Any]:
        with self._condition:
            return {"match": self._match, "held": self.held, "in_flight": self.in_flight}

    def hold(self, match: str) -> None:
        """From now on, requests whose path or body contains `match` wait for a release."""
        with self._condition:
            self._match = match

    def release(self) -> int:
        """Let every held request go and stop holding; answers how many were waiting."""
        with self._condition:
            released = self.held
            self._match = None
            self._generation += 1
            self._condition.notify_all()
        return released

    def enter(self, path: str, body: bytes) -> None:
        """Called as an API request starts; returns once it may be handled."""
        with self._condition:
            self.in_flight += 1
            match = self._match
            if match is None or (match not in path and match.encode() not in body):
                return
            generation = self._generation
            self.held += 1
            self._condition.notify_all()  # wake a test waiting in wait_held
            try:
                self._condition.wait_for(
                    lambda: self._generation != generation, timeout=HOLD_TIMEOUT_S
                )
            finally:
                self.held -= 1

    def leave(self) -> None:
        with self._condition:
            self.in_flight -= 1
            self._condition.notify_all()  # wake a test waiting in wait_idle

    def wait_held(self, at_least: int, timeout: float) -> dict[str, Any]:
        with self._condition:
            self._condition.wait_for(lambda: self.held >= at_least, timeout=timeout)
        return self.status()

    def wait_idle(self, timeout: float) -> dict[str, Any]:
        with self._condition:
            self._condition.wait_for(lambda: self.in_flight == 0, timeout=timeout)
        return self.status()
