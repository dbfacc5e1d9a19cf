"""The sync engine: one run sends an organization's sendable records to its ERP.

Exactly once rests on three things (docs/architecture.md, "Exactly once"):
- a record is claimed (state `sending`, `claimed_by` the run) with one conditional
  UPDATE, and at most one run per organization is running (a partial unique index);
- every record carries a deterministic reference into the ERP, so a send whose
  outcome is unknown (`needs_lookup`) is looked up before it is ever sent again;
- a run whose worker died is closed by `recover_stale_runs`: the batch it was
  posting (`SyncRun.in_flight`) is marked for lookup, since it may have reached the
  ERP; what it held but never sent goes back to the queue as it was.

A lookup sends nothing, so it never spends a retry, and an uncertain record always
has its next lookup planned: it ends `failed` for good only when the ERP refused it,
or when a lookup showed it is not there and its automatic retries are used up.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, Max
from django.utils import timezone

from accounting_sync.lane import Lane
from accounting_sync.models import ErrorClass, FinancialRecord, SyncEvent, SyncLog, SyncRun
from accounting_sync.outcomes import RunDetail, SkipReason
from core import bulk, events, logcontext
from integrations import pacing
from integrations.clients.base import (
    Connector,
    ConnectorError,
    Found,
    Outcome,
    Posting,
    PostResult,
    Settled,
    Settlement,
)
from integrations.clients.business_central import BusinessCentralConnector
from integrations.clients.xledger import XledgerConnector
from integrations.models import Integration
from integrations.notes import Note, NoteCode, note
from organizations.models import Organization

logger = logging.getLogger(__name__)

State = FinancialRecord.State
# Automatic retries never wait longer than this between two attempts.
BACKOFF_CAP_SECONDS = 6 * 3600
# A whole batch refused for rate is re-sent within the run this many times.
RATE_LIMIT_RESENDS = 3
RATE_LIMIT_MAX_WAIT_SECONDS = 60
NETWORK_CLASSES = {Outcome.TRANSIENT, Outcome.UNCERTAIN, Outcome.RATE_LIMITED}
# References asked about in one `lookup` call, whose answers are written before the next
# call: a failed call holds back these, not every uncertain record (Business Central
# asks 50 per request, Xledger 250).
LOOKUP_CHUNK = 50
# Lookup calls failing in a row before the run takes the ERP to be down and leaves the
# rest of the lookups to a later run (each failed call can take a full timeout).
LOOKUP_FAILURES_IN_A_ROW = 2
# Lookup errors after which no further lookup is tried in the run: more calls cannot
# help (credentials) or would only add to what the ERP asked us to slow down from.
LOOKUP_STOPPERS = {Outcome.AUTHENTICATION, Outcome.RATE_LIMITED}
# What writing a batch's results changes on its records (`_apply`): on a success, and on
# anything else (which may also spend a retry).
SYNCED_FIELDS = (
    "state",
    "synced_at",
    "last_error",
    "last_note",
    "next_retry_at",
    "needs_lookup",
    "lookup_failures",
    "erp_document_id",
    "claimed_by",
    "updated_at",
)
OTHER_FIELDS = (*SYNCED_FIELDS, "retry_count")
# Where a parked run keeps its place between turns (issue 13 item 9): `SyncRun.detail_params`
# under this key while it runs (`_finish` writes the run's outcome over it).
TURN = "turn"
CONNECTOR_CLASSES: dict[str, type[Connector]] = {
    Integration.Connector.XLEDGER: XledgerConnector,
    Integration.Connector.BUSINESS_CENTRAL: BusinessCentralConnector,
}


class RunAlreadyGoing(Exception):
    def __init__(self, run: SyncRun | None) -> None:
        super().__init__("A sync is already running for this organization.")
        self.run = run


def backoff_seconds(
    retry_count: int, first_delay: int, retry_after: float | None = None, rng=random
) -> float:
    """Exponential backoff with jitter and a cap, never sooner than the ERP asked."""
    exponential = min(BACKOFF_CAP_SECONDS, first_delay * 2 ** max(0, retry_count - 1))
    return max(retry_after or 0.0, exponential * rng.uniform(0.5, 1.0))


def start_run(
    organization: Organization,
    trigger: str,
    *,
    user=None,
    record_ids: list[int] | None = None,
) -> SyncRun:
    """Open a run, or raise RunAlreadyGoing naming the one that is (S3.4)."""
    integration = organization.integration
    try:
        with transaction.atomic():
            run = SyncRun.objects.create(
                organization=organization,
                connector=integration.connector,
                trigger=trigger,
                triggered_by=user if user is not None and user.is_authenticated else None,
                record_ids=record_ids,
            )
            Organization.touch(organization.pk)
            return run
    except IntegrityError:
        running = SyncRun.objects.filter(
            organization=organization, status=SyncRun.Status.RUNNING
        ).first()
        raise RunAlreadyGoing(running) from None


def execute_run(run_id: int, worker: str = "", batches: int | None = None) -> SyncRun | None:
    """Carry out a run, or its next turn; a second delivery of the same task does nothing.

    `batches`: send at most this many batches, then park the run (`is_parked`) when
    sendable records remain, for the caller to queue its next turn (issue 13 item 9:
    a large organization's run yields to the runs queued behind it). None: to the end.
    A parked run is claimed again like a new one (`worker` empty) and goes on where it
    stopped; it holds nothing `sending` while it waits.
    """
    claimed = SyncRun.objects.filter(pk=run_id, status=SyncRun.Status.RUNNING, worker="").update(
        worker=worker or "worker", heartbeat_at=timezone.now()
    )
    if not claimed:
        return None
    run = SyncRun.objects.select_related("organization__integration").get(pk=run_id)
    # Every log line of the run names it and its organization (core/logcontext.py).
    with logcontext.bound(organization=run.organization.slug, run_id=run_id), _heartbeat(run_id):
        Orchestrator(run, batches=batches).execute()
    run.refresh_from_db()
    return run


def is_parked(run: SyncRun) -> bool:
    """Running, between two turns: no worker executes it, and it holds nothing `sending`."""
    return run.is_running and not run.worker and TURN in (run.detail_params or {})


def waiting_runs():
    """The runs in the queue that no worker executes: queued for their first turn, or
    parked between two (`is_parked`). Neither holds a record `sending`.

    At 02:00 a run may wait minutes behind other organizations' turns, far longer than
    SYNC_STALE_AFTER_SECONDS: it has no worker to beat for it, and is not dead."""
    return SyncRun.objects.filter(status=SyncRun.Status.RUNNING, worker="")


# PostgreSQL advisory locks of the sync engine: (this class, run id). A worker's session
# holds its run's lock while it executes the run (`_heartbeat`); the sweep closes a run only
# when it can take that lock itself (`_worker_gone`).
RUN_LOCK_CLASS = 0x53594E43  # "SYNC"


def _run_lock_key(run_id: int) -> tuple[int, int]:
    # Both halves are int4; an id beyond 2**31 shares a key with a far older run, which
    # can only make the sweep wait for that run's worker, never close a live run.
    return RUN_LOCK_CLASS, run_id & 0x7FFFFFFF


@contextmanager
def _heartbeat(run_id: int) -> Iterator[None]:
    """Beat for the run from a thread of its own while it executes (issue 13 item 5).

    A run used to beat only between batches, so SYNC_STALE_AFTER_SECONDS had to outlast
    the slowest batch (minutes) and a killed worker's records waited that long. This
    thread beats every third of the stale limit whatever the batch is doing, so a slow but
    live worker never looks dead, and it dies with the worker's process, so a killed
    worker is seen within about a minute.

    A missed beat alone does not prove the worker dead: a starved thread or a stalled
    database misses beats too, and a live worker whose run was closed may still have a
    batch on its way to the ERP, which the next run's lookup would not find yet and send
    again. So on PostgreSQL the thread's session also holds the run's advisory lock until
    the run ends; it goes when the process or its connection dies, and the sweep closes
    only runs whose lock it can take (`_worker_gone`). A worker that is alive but whose run
    was closed still sends nothing more (`_progress` with `in_flight_done`).
    """
    stop = threading.Event()
    locked = threading.Event()
    interval = max(1.0, settings.SYNC_STALE_AFTER_SECONDS / 3)

    def beat() -> None:
        try:
            _hold_run_lock(run_id)
            locked.set()
            while not stop.wait(interval):
                SyncRun.objects.filter(pk=run_id, status=SyncRun.Status.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
        except Exception:
            logger.exception("the heartbeat of sync %s failed; the run's own beats go on", run_id)
        finally:
            locked.set()
            connection.close()  # this thread's own connection, and the run's lock with it

    # A daemon: a run that ends while a beat waits for the database is not held up by it.
    thread = threading.Thread(target=beat, name=f"sync-{run_id}-heartbeat", daemon=True)
    thread.start()
    locked.wait(timeout=interval)  # the run sends nothing before its worker is known alive
    try:
        yield
    finally:
        stop.set()


def _hold_run_lock(run_id: int) -> None:
    """Take the run's advisory lock for this session (PostgreSQL; elsewhere a no-op).

    Only a sweep deciding about this run holds it otherwise, for the milliseconds of its
    transaction: if that closed the run, the run finds itself closed before sending.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", _run_lock_key(run_id))


def _worker_gone(run_id: int) -> bool:
    """Whether no live session executes the run; call inside the closing transaction.

    True on other databases, where the stale heartbeat is all there is to go by. On
    PostgreSQL the lock taken here is held until the close commits.
    """
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", _run_lock_key(run_id))
        row = cursor.fetchone()
    return bool(row and row[0])


def recover_stale_runs(now=None) -> list[SyncRun]:
    """Close runs whose worker stopped beating; their records may have been sent."""
    now = now or timezone.now()
    limit = now - timedelta(seconds=settings.SYNC_STALE_AFTER_SECONDS)
    closed = []
    stale = SyncRun.objects.filter(status=SyncRun.Status.RUNNING, heartbeat_at__lt=limit)
    # A run waiting in the queue (for its first turn, or parked between two) waits behind
    # other organizations' turns, as long as that takes, holding nothing; the sweep queues
    # it again if its message was lost (tasks.py, `_requeue_waiting`).
    for run in stale.exclude(pk__in=waiting_runs().values("pk")):
        with transaction.atomic():
            if not _worker_gone(run.pk):
                # Its worker is alive, only slow to beat (a starved thread, a stalled
                # database): closing it would let another run look up and resend the
                # batch it may still be posting.
                continue
            # The beat is checked again here: one that came between the read above and
            # this update (the run's own heartbeat thread) keeps a live run open.
            # A run that parked meanwhile beat as it parked, and is kept open by this too.
            if not SyncRun.objects.filter(
                pk=run.pk, status=SyncRun.Status.RUNNING, heartbeat_at__lt=limit
            ).update(
                status=SyncRun.Status.FAILED,
                finished_at=now,
                error_class=ErrorClass.ABANDONED,
                detail_code=RunDetail.ABANDONED,
                detail_params={},
            ):
                continue
            looked_up, returned = hand_back(run.pk, now)
            # What it sent to an ERP that settles later it would have asked about at the
            # end of its turn: the next run asks at once, not SYNC_IMPORT_CHECK_SECONDS on.
            FinancialRecord.objects.awaiting().filter(
                organization_id=run.organization_id, attempts__run=run.pk
            ).update(next_retry_at=now)
            SyncEvent.objects.create(
                organization_id=run.organization_id,
                run=run,
                kind=SyncEvent.Kind.RUN_ABANDONED,
                note=note(
                    NoteCode.RUN_ABANDONED, run=run.pk, looked_up=looked_up, returned=returned
                ).stored(),
            )
            Organization.touch(run.organization_id)
        run.refresh_from_db()
        closed.append(run)
    return closed


def hand_back(run_id: int, now) -> tuple[int, int]:
    """Free what a stopped run still holds; say how many (marked for lookup, returned).

    Only the batch it was posting may have reached the ERP: that is marked for lookup.
    The rest it never sent goes back failed and due now, so the sweep's next retry run
    takes it at once (pending would wait for the next approval or schedule: the sweep
    starts runs for due failed records, and its lost-trigger check skips records that
    arrived before a run). No retry is spent; retries, error and an earlier lookup
    mark stay as they were. A run that never said what it was posting (in_flight None)
    has all of it looked up.
    The sweep calls it in the transaction that closed the run's row, so the run cannot
    mark another batch in flight (`_mark_in_flight`) between the read and these updates.
    """
    in_flight = SyncRun.objects.values_list("in_flight", flat=True).get(pk=run_id)
    held = FinancialRecord.objects.held_by(run_id)
    maybe_sent = held if in_flight is None else held.filter(pk__in=in_flight)
    looked_up = maybe_sent.update(
        state=State.FAILED,
        needs_lookup=True,
        next_retry_at=now,
        claimed_by=None,
        last_error="",
        last_note=note(NoteCode.INTERRUPTED_WHILE_SENDING).stored(),
        updated_at=now,
    )
    # Each update below re-reads `held`: what an earlier one moved is no longer sending.
    never_failed = held.filter(last_error="", last_note={}).update(
        state=State.FAILED,
        next_retry_at=now,
        claimed_by=None,
        last_note=note(NoteCode.INTERRUPTED_BEFORE_SENDING).stored(),
        updated_at=now,
    )
    returned = held.update(state=State.FAILED, next_retry_at=now, claimed_by=None, updated_at=now)
    return looked_up, never_failed + returned


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Orchestrator:
    """Carries out one run. Small steps, each writing what it decided."""

    def __init__(self, run: SyncRun, batches: int | None = None) -> None:
        self.run = run
        self.organization = run.organization
        self.integration = self.organization.integration
        self.counts: Counter[str] = Counter()
        # (SkipReason, category or "") → records skipped for it
        self.skip_reasons: Counter[tuple[str, str]] = Counter()
        # Why the run stopped early, as a RunDetail code and its parameters ("": it did not).
        self.stop_reason: tuple[str, dict[str, Any]] = ("", {})
        self.error_classes: Counter[Outcome] = Counter()
        # Records the ERP holds only part of (lookup found them incomplete): record id →
        # the ERP's id of that part, which `post` completes instead of creating anew.
        self.existing: dict[int, str] = {}
        self.settles_later = False
        self.sent_here: set[int] = set()  # records this turn counted as sent
        # record id -> (number, id) of its last attempt, as far as this run knows
        self.attempts: dict[int, tuple[int, int | None]] = {}
        self.settled: Counter[str] = Counter()  # what `settle` decided: "sent" (posted), "failed"
        # Asking about the import while the run posts (`_ask_behind`, `_ask_last`): records
        # written as sent and not yet asked about, and the questions on the lane with theirs.
        self.ask_behind = False
        self.unasked: list[FinancialRecord] = []
        self.asking: list[tuple[list[FinancialRecord], Future[dict[str, Settled]]]] = []
        self.asked_last: set[int] = set()  # records the run's last question asked about
        # Turns (issue 13 item 9): at most `batches` batches in this one, then park.
        self.batches = batches
        # Where the last turn stopped ({}: this is the first), and where this one does.
        self.turn: dict[str, Any] = dict((run.detail_params or {}).get(TURN) or {})
        self.next_turn: dict[str, Any] | None = None
        self._carry_over(self.turn)

    # --- the run ----------------------------------------------------------------------

    def execute(self) -> None:
        try:
            if not self.integration.enabled and self.turn:
                # Turned off while the run waited for its next turn: the rest stays pending.
                self._finish((RunDetail.DISABLED_DURING_RUN, {"left": self.turn["rest"]}))
                return
            if not self.integration.enabled:
                self._finish((RunDetail.CONNECTOR_DISABLED, {}), failed=True)
                return
            records = self._claim()
            awaiting = self._awaiting_due()
            if not records and not awaiting:
                # A later turn that finds its records gone (taken, or no longer due) ends the
                # run with what its earlier turns did.
                self._finish(("", {}) if self.turn else (RunDetail.NOTHING_TO_SEND, {}))
                return
            connector = self.integration.build_connector()
            self.settles_later = self.ask_behind = connector.settles_later
            try:
                if awaiting:
                    self._settle(connector, awaiting)
                claimed = records
                records = self._skip_unmapped(records)
                records = self._resolve_uncertain(connector, records)
                self._send_all(connector, records)
                if self.settles_later and claimed:
                    # Ask at once: where the ERP imports quickly, the run ends with them
                    # posted. What the last question asked about is not asked again.
                    awaiting = self._awaiting_among(claimed)
                    self._settle(connector, [r for r in awaiting if r.pk not in self.asked_last])
            finally:
                close = getattr(connector, "close", None)
                if close:
                    close()
            if not self._park():
                self._finish(self.stop_reason)
        except Exception:
            logger.exception("sync run %s failed", self.run.pk)
            with transaction.atomic():
                hand_back(self.run.pk, timezone.now())
            self._finish((RunDetail.UNEXPECTED_ERROR, {}), failed=True)
            raise

    def _claim(self) -> list[FinancialRecord]:
        """Take the records this turn sends: all the run's, or the next `batches` batches.

        A run in turns walks its records in id order, up to the last one there was when
        it first claimed (`upto`, so records approved meanwhile go to the follow-up run as
        before): each turn takes the next ones after where the last stopped (`after`).
        A record this run already tried is behind that point, so no turn takes it again,
        whatever became of it. `total` counts what the run will take in all its turns.
        """
        all_records = FinancialRecord.objects
        if self.run.record_ids is not None:  # Retry Selected / Retry All Failed
            wanted = all_records.chosen_for_retry(self.organization, self.run.record_ids)
        else:
            wanted = all_records.sendable(self.organization, self.integration)
        turn, limit = self.turn, self._claim_limit()
        upto: int = 0
        if turn:
            upto = turn["upto"]
            wanted = wanted.filter(pk__gt=turn["after"], pk__lte=upto)
        elif limit is not None:
            upto = wanted.aggregate(upto=Max("pk"))["upto"] or 0
            wanted = wanted.filter(pk__lte=upto)
        taking = wanted
        if limit is not None:
            ids = list(wanted.order_by("pk").values_list("pk", flat=True)[:limit])
            taking = wanted.filter(pk__in=ids)  # the conditions of `wanted` hold in the UPDATE
        taking.update(state=State.SENDING, claimed_by=self.run, updated_at=timezone.now())
        records = list(all_records.held_by(self.run).order_by("pk"))
        self._know_attempts(records)
        rest = wanted.filter(pk__gt=records[-1].pk).count() if limit is not None and records else 0
        if rest:
            self.next_turn = {"after": records[-1].pk, "upto": upto, "rest": rest}
        # in_flight [] from here on: nothing of this run is in the ERP until a batch is marked.
        total: Any = len(records) + rest
        if turn:  # what the last turn counted as still to come is here now, or is `rest`
            total = F("total") + total - turn.get("rest", 0)
        SyncRun.objects.filter(pk=self.run.pk).update(total=total, in_flight=[])
        Organization.touch(self.run.organization_id)
        return records

    def _claim_limit(self) -> int | None:
        """How many records one turn takes: `batches` of the connector's batch size."""
        if not self.batches:
            return None
        connector = CONNECTOR_CLASSES.get(self.integration.connector)
        return self.batches * (connector.batch_size if connector else 1)

    def _carry_over(self, turn: dict[str, Any]) -> None:
        """What earlier turns counted that the run's outcome names at its end."""
        self.error_classes.update({Outcome(k): n for k, n in turn.get("errors", {}).items()})
        self.skip_reasons.update({(r, c): n for r, c, n in turn.get("skips", [])})
        self.settled.update(turn.get("settled", {}))

    def _park(self) -> bool:
        """End this turn with the run still running, for its next turn to be queued.

        Only after a turn that went as planned, with records left. Everything this turn
        sent is written (`_write_results` emptied in_flight) and it holds nothing
        `sending`: the sweep may find the run waiting in the queue without a beat, and
        nothing of it can be in the ERP unwritten. False when there is nothing left,
        the run stopped early, or the sweep closed it meanwhile (then `_finish` as ever).
        """
        if self.next_turn is None or self.stop_reason[0]:
            return False
        if FinancialRecord.objects.held_by(self.run).exists():
            return False  # cannot happen after a complete turn; never park holding records
        turn = {
            **self.next_turn,
            "errors": {outcome.value: n for outcome, n in self.error_classes.items()},
            "skips": [[r, c, n] for (r, c), n in self.skip_reasons.items()],
            "settled": dict(self.settled),
        }
        parked = SyncRun.objects.filter(pk=self.run.pk, status=SyncRun.Status.RUNNING).update(
            worker="", heartbeat_at=timezone.now(), in_flight=[], detail_params={TURN: turn}
        )
        if parked:
            Organization.touch(self.run.organization_id)
        return bool(parked)

    def _skip_unmapped(self, records: list[FinancialRecord]) -> list[FinancialRecord]:
        mappings = {m.category: m for m in self.integration.mappings.all()}
        self.mappings = mappings
        ready, skipped = [], []
        for record in records:
            reason = self._skip_reason(record, mappings)
            if reason:
                record.state, record.skip_reason, record.claimed_by = State.SKIPPED, reason, None
                skipped.append(record)
                # The category names what is missing only when the mapping is.
                category = record.category if reason == SkipReason.NO_MAPPING else ""
                self.skip_reasons[(reason, category)] += 1
            else:
                ready.append(record)
        if skipped:
            FinancialRecord.objects.bulk_update(skipped, ["state", "skip_reason", "claimed_by"])
            self._progress(skipped=len(skipped))
        return ready

    def _skip_reason(self, record: FinancialRecord, mappings: dict) -> str:
        if record.category not in mappings:
            return SkipReason.NO_MAPPING
        if not self.integration.payable_account:
            return SkipReason.NO_PAYABLE_ACCOUNT
        return ""

    def _resolve_uncertain(
        self, connector: Connector, records: list[FinancialRecord]
    ) -> list[FinancialRecord]:
        """Records whose last send may have arrived are looked up, in chunks whose answers
        are written as they come; returns the records still to send.

        Found whole → synced, not sent. Found in part → only the missing part is sent.
        Not there → sent, unless its automatic retries are used up (then failed for good,
        unless a person asked for exactly these). A chunk whose lookup fails is held back
        for a later run, no retry spent, and the next chunk is still tried; after
        LOOKUP_FAILURES_IN_A_ROW failed chunks, or an error in LOOKUP_STOPPERS, the rest
        are held back too without asking.
        """
        uncertain = [record for record in records if record.needs_lookup]
        if not uncertain:
            return records
        decided: set[int] = set()  # found, held back or given up: not sent by this run
        failures = 0
        parts = list(chunks(uncertain, LOOKUP_CHUNK))
        for index, chunk in enumerate(parts):
            if not self._still_running():
                # The sweep closed this run and gave its records back: send nothing.
                self.stop_reason = (RunDetail.CLOSED_BY_SWEEP, {})
                return []
            self._beat()  # a long lookup phase must never look like a dead worker
            try:
                found = connector.lookup([record.reference for record in chunk])
            except ConnectorError as error:
                failures += 1
                decided.update(self._hold_back(chunk, error))
                if error.outcome in LOOKUP_STOPPERS or failures >= LOOKUP_FAILURES_IN_A_ROW:
                    rest = [record for later in parts[index + 1 :] for record in later]
                    decided.update(self._hold_back(rest, error, asked=False))
                    break
                continue
            failures = 0
            decided.update(self._resolved(chunk, found))
        return [record for record in records if record.pk not in decided]

    def _hold_back(
        self, records: list[FinancialRecord], error: ConnectorError, asked: bool = True
    ) -> set[int]:
        """Without an answer nothing may be resent: write why, plan the next lookup."""
        if records:
            self._write_results(
                [(record, self._lookup_failed(record, error, asked)) for record in records]
            )
        return {record.pk for record in records}

    def _resolved(self, chunk: list[FinancialRecord], found: dict[str, Found]) -> set[int]:
        """Write what one chunk's lookup answered; return the records not to send."""
        pairs: list[tuple[FinancialRecord, PostResult]] = []
        for record in chunk:
            hit = found.get(record.reference)
            if hit is not None and hit.complete:
                pairs.append((record, self._found(record, hit.erp_id)))
            elif hit is not None:
                # Part of it is there (a line without its dimension): complete that part,
                # never send the whole again; this is no new send, so any budget allows it.
                self.existing[record.pk] = hit.erp_id
            elif self._send_budget_spent(record):
                pairs.append((record, self._absent(record)))
        if pairs:
            self._write_results(pairs)
        return {record.pk for record, _ in pairs}

    def _send_budget_spent(self, record: FinancialRecord) -> bool:
        """No automatic send is left; a person's Retry of chosen records still sends."""
        asked = self.run.trigger == SyncRun.Trigger.RETRY and self.run.record_ids is not None
        return not asked and record.retry_count > self.integration.automatic_retries

    @staticmethod
    def _absent(record: FinancialRecord) -> PostResult:
        # TRANSIENT: the send it was uncertain about certainly did not arrive.
        return PostResult(
            reference=record.reference,
            outcome=Outcome.TRANSIENT,
            note=note(NoteCode.NOT_IN_ERP),
            payload={"lookup": record.reference, "found": False},
        )

    @staticmethod
    def _found(record: FinancialRecord, erp_id: str) -> PostResult:
        return PostResult(
            reference=record.reference,
            outcome=Outcome.SUCCEEDED,
            erp_id=erp_id,
            note=note(NoteCode.FOUND_BY_REFERENCE),
            payload={"lookup": record.reference},
        )

    # --- records the ERP may still refuse (Xledger's import job) ------------------------

    def _awaiting_due(self) -> list[FinancialRecord]:
        due = FinancialRecord.objects.due_for_import_check(timezone.now())
        return list(due.filter(organization=self.organization).order_by("pk"))

    def _awaiting_among(self, records: list[FinancialRecord]) -> list[FinancialRecord]:
        """Those of `records` that are awaiting their import, in order.

        The database says which; the instances are the run's own where the row is still as
        this run wrote it (awaiting, the same ERP id, the same time of change), so that
        thousands of rows just written are not read back whole. A row changed since is
        read again.
        """
        awaiting = bulk.with_ids(FinancialRecord.objects.awaiting(), [r.pk for r in records])
        stored = {
            pk: written
            for pk, *written in awaiting.values_list("pk", "erp_document_id", "updated_at")
        }
        held = [r for r in records if r.pk in stored]
        changed = {
            r.pk
            for r in held
            if r.state != State.AWAITING or stored[r.pk] != [r.erp_document_id, r.updated_at]
        }
        if not changed:
            return held
        again = FinancialRecord.objects.in_bulk(list(changed))
        return [again.get(r.pk, r) if r.pk in changed else r for r in held]

    def _settle(self, connector: Connector, awaiting: list[FinancialRecord]) -> None:
        """Ask the ERP what became of records it accepted: posted, rejected, or not yet."""
        if awaiting:
            self._take_settled(awaiting, self._answers(lambda: connector.settle(_held(awaiting))))

    def _answers(self, ask: Callable[[], dict[str, Settled]]) -> dict[str, Settled]:
        """The ERP's answers to `ask`; none (all still awaiting) when it could not answer."""
        try:
            return ask()
        except ConnectorError as error:
            logger.warning("run %s: could not ask about awaiting records: %s", self.run.pk, error)
            return {}

    def _take_settled(
        self,
        awaiting: list[FinancialRecord],
        answers: dict[str, Settled],
        posting: list[FinancialRecord] | None = None,
    ) -> list[FinancialRecord]:
        """Write what the ERP answered about `awaiting`; return those still waiting for the
        import. `posting`: the batch on its way meanwhile, still in flight."""
        waiting: list[FinancialRecord] = []
        quiet: list[FinancialRecord] = []
        written: list[tuple[FinancialRecord, PostResult]] = []
        for record in awaiting:
            settled = answers.get(record.reference)
            if settled is None or settled.state == Settlement.WAITING:
                waiting.append(record)
            elif settled.state == Settlement.POSTED and record.pk in self.sent_here:
                quiet.append(record)  # this run's attempt already says it was sent
            else:
                # Refused, or posted after an earlier run sent it: written down as evidence.
                written.append((record, self._settled(record, settled)))
        now = timezone.now()
        awaiting_now = FinancialRecord.objects.awaiting()
        bulk.with_ids(awaiting_now, [r.pk for r in waiting]).update(
            next_retry_at=self._next_check(now)
        )
        if quiet:
            bulk.with_ids(awaiting_now, [r.pk for r in quiet]).update(
                state=State.SYNCED, synced_at=now, next_retry_at=None
            )
            Organization.touch(self.run.organization_id)
        if written:
            earlier = sum(1 for record, _ in written if record.pk not in self.sent_here)
            SyncRun.objects.filter(pk=self.run.pk).update(total=F("total") + earlier)
            self._write_results(written, final=True, posting=posting)
        return waiting

    # --- asking about the import while the run posts (Xledger) ----------------------------

    def _ask_behind(
        self, lane: Lane, connector: Connector, written: list[tuple[FinancialRecord, PostResult]]
    ) -> None:
        """Ask about the import of what the run has written as sent, one full question
        (`settle_chunk` references) at a time, on the lane right behind the post under way.

        Xledger's import mostly posts a voucher within moments: the answer then comes while
        the run writes down the batch before, instead of all the questions waiting for the
        last post. The first answer that finds the import still at work stops this for the
        run: the rest is asked about once, at its end (`_ask_last`), as before (each
        question is metered, and one about vouchers not yet imported costs three requests).
        """
        if not self.settles_later:
            return
        self.unasked += [
            record for record, result in written if result.outcome == Outcome.SUCCEEDED
        ]
        size = connector.settle_chunk
        if self.ask_behind and not self.asking and len(self.unasked) >= size:
            chunk, self.unasked = self.unasked[:size], self.unasked[size:]
            self._ask(lane, connector, chunk, _held(chunk))

    def _ask_last(
        self, lane: Lane, connector: Connector, posted: list[tuple[FinancialRecord, PostResult]]
    ) -> None:
        """Ask about all the run sent and has not asked about, the last batch included,
        before that batch is written: the ERP answers while the run writes it."""
        if not self.settles_later:
            return
        sent = {r.reference: res.erp_id for r, res in posted if res.outcome == Outcome.SUCCEEDED}
        records = self.unasked + [r for r, _ in posted if r.reference in sent]
        self.unasked = []
        if records:
            self.asked_last.update(record.pk for record in records)
            self._ask(lane, connector, records, _held(records) | sent)

    def _ask(
        self,
        lane: Lane,
        connector: Connector,
        records: list[FinancialRecord],
        held: dict[str, str],
    ) -> None:
        self.asking.append((records, lane.submit(connector.settle, held)))

    def _hear(self, posting: list[FinancialRecord]) -> None:
        """Write the answers to the questions on the lane, in the order they were asked."""
        while self.asking:
            records, asking = self.asking.pop(0)
            waiting = self._take_settled(records, self._answers(asking.result), posting)
            if waiting and self.ask_behind:
                self.ask_behind = False
                self.unasked = waiting + self.unasked  # asked once more, at the run's end

    @staticmethod
    def _settled(record: FinancialRecord, settled: Settled) -> PostResult:
        if settled.state == Settlement.POSTED:
            return PostResult(
                reference=record.reference,
                outcome=Outcome.SUCCEEDED,
                erp_id=settled.erp_id or record.erp_document_id,
                note=note(NoteCode.IMPORT_POSTED),
                payload={"settle": record.reference},
                response_body=settled.response_body,
            )
        return PostResult(
            reference=record.reference,
            outcome=Outcome.PERMANENT,
            erp_id=record.erp_document_id,
            message=settled.message,
            payload={"settle": record.reference},
            response_body=settled.response_body,
        )

    @staticmethod
    def _lookup_failed(
        record: FinancialRecord, error: ConnectorError, asked: bool = True
    ) -> PostResult:
        outcome = (
            Outcome.AUTHENTICATION if error.outcome == Outcome.AUTHENTICATION else Outcome.UNCERTAIN
        )
        code = NoteCode.LOOKUP_FAILED if asked else NoteCode.NOT_CHECKED
        return PostResult(
            reference=record.reference,
            outcome=outcome,
            message=error.erp_words,
            note=note(code, reason=error.note.stored()),
            retry_after=error.retry_after,
            payload={"lookup": record.reference},
        )

    def _send_all(self, connector: Connector, records: list[FinancialRecord]) -> None:
        """Post the records batch by batch, writing down what one batch did while the ERP
        takes the next (accounting_sync/lane.py).

        A batch posted but not yet written stays in the run's in_flight beside the one
        being posted: a worker that dies between the two has both looked up.
        """
        batches = list(chunks(records, connector.batch_size))
        posted: list[tuple[FinancialRecord, PostResult]] = []  # not yet written
        with Lane(concurrent=not pacing.in_database()) as lane:
            for index, batch in enumerate(batches):
                unwritten = [record for record, _ in posted]
                if not self._mark_or_stop(unwritten + batch, batches[index:]):
                    self._write_last(posted)
                    if self.stop_reason[0] == RunDetail.DISABLED_DURING_RUN:
                        self._release(State.PENDING)
                    return
                postings = [self._posting(record) for record in batch]
                posting = lane.submit(connector.post, postings)
                if posted:
                    self._write_results(posted, posting=batch)
                self._hear(posting=batch)
                self._ask_behind(lane, connector, posted)
                results = self._send(lane, connector, postings, posting)
                posted = list(zip(batch, results, strict=True))
                if any(result.outcome == Outcome.AUTHENTICATION for result in results):
                    self._write_last(posted)
                    self._stop_refused(results)
                    return
            self._ask_last(lane, connector, posted)
            self._write_last(posted)

    def _write_last(self, posted: list[tuple[FinancialRecord, PostResult]]) -> None:
        """Write the last batch posted, and the answers about the import asked meanwhile."""
        if posted:
            self._write_results(posted)
        self._hear(posting=[])

    def _mark_or_stop(
        self, marked: list[FinancialRecord], unsent: list[list[FinancialRecord]]
    ) -> bool:
        """Mark the records in flight; False, with the run's stop reason, when the run may
        post no more (`unsent`: the batches it would have posted). One UPDATE when all is
        well; the checks one by one only to say why not."""
        if self._mark_in_flight(marked, if_enabled=True):
            return True
        if self._still_running() and not self._still_enabled():
            left = sum(len(batch) for batch in unsent)
            self.stop_reason = (RunDetail.DISABLED_DURING_RUN, {"left": left})
            return False
        if self._still_running() and self._mark_in_flight(marked):
            return True  # enabled again in between
        self.stop_reason = (RunDetail.CLOSED_BY_SWEEP, {})
        return False

    def _stop_refused(self, results: list[PostResult]) -> None:
        """The ERP refused the credentials: what the run still holds waits, unsent."""
        self._release(State.PENDING)
        refused = next(r for r in results if r.outcome == Outcome.AUTHENTICATION)
        message = refused.message
        # The ERP's words are evidence: kept verbatim, worded around when shown;
        # our own words about them travel as a note.
        self.stop_reason = (
            RunDetail.CREDENTIALS_REFUSED,
            {"error": message, "note": _stored(refused.note)},
        )
        event = SyncEvent.objects.create(
            organization=self.organization,
            run=self.run,
            kind=SyncEvent.Kind.AUTHENTICATION_FAILED,
            message=message,
            note=_stored(refused.note),
        )
        # S7.6: the alert opens at once, since retrying cannot fix it
        events.event_recorded.send(sender=SyncEvent, event=event)

    def _mark_in_flight(self, batch: list[FinancialRecord], if_enabled: bool = False) -> bool:
        """Say which records are about to be posted, so that if the worker dies only these
        are looked up. False when the sweep has closed the run: then nothing may be sent
        (nor, `if_enabled`, when the integration was disabled).

        One conditional UPDATE of the run's row: the sweep updates that row first, so
        either it sees this batch in flight or this finds the run closed.
        """
        running = SyncRun.objects.filter(pk=self.run.pk, status=SyncRun.Status.RUNNING)
        if if_enabled:
            enabled = Integration.objects.filter(pk=self.integration.pk, enabled=True)
            running = running.filter(Exists(enabled))
        return bool(
            running.update(in_flight=[record.pk for record in batch], heartbeat_at=timezone.now())
        )

    def _send(
        self, lane: Lane, connector: Connector, postings: list[Posting], posting: Future
    ) -> list[PostResult]:
        """The answer to `posting`, the post of `postings` under way on the lane; resent
        when the ERP took none of it for rate."""
        results: list[PostResult] = posting.result()
        for _ in range(RATE_LIMIT_RESENDS):
            # Only a refusal that took nothing may be resent blind. A partial one was
            # written in part (Business Central's line, refused its cost center for rate):
            # sent again, the line would be created twice; it is looked up and completed.
            limited = [r for r in results if r.outcome == Outcome.RATE_LIMITED and not r.partial]
            if len(limited) < len(results):
                return results
            # The ERP asked us to slow down and nothing was taken: wait, then resend.
            wait = min(RATE_LIMIT_MAX_WAIT_SECONDS, max(r.retry_after or 1 for r in limited))
            self._wait(wait)
            if not self._still_running():
                # Closed while the ERP answered: the batch is no longer this run's to send.
                self.stop_reason = (RunDetail.CLOSED_BY_SWEEP, {})
                return results
            results = lane.submit(connector.post, postings).result()
        return results

    def _wait(self, seconds: float) -> None:
        """Sleep, beating at least every second: a run that waits must never look dead.

        One beat before a long sleep is not enough: a wait as long as
        SYNC_STALE_AFTER_SECONDS would let the sweep close this live run and hand its
        records (and the batch about to be resent) to another run.
        """
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._beat()
            time.sleep(min(left, 1.0))

    def _posting(self, record: FinancialRecord) -> Posting:
        mapping = self.mappings[record.category]
        return Posting(
            reference=record.reference,
            posting_date=timezone.localtime(record.approved_at).date(),
            amount=record.amount,
            currency=record.currency,
            expense_account=mapping.account_code,
            cost_center=mapping.cost_center_code,
            payable_account=self.integration.payable_account,
            claimant_reference=record.claimant_reference,
            claimant_name=record.claimant_name,
            description=record.description or f"{record.get_kind_display()} {record.category}",
            number=record.pk,
            existing_id=self.existing.get(record.pk, ""),
        )

    # --- writing what happened ------------------------------------------------------------

    def _write_results(
        self,
        pairs: list[tuple[FinancialRecord, PostResult]],
        final: bool = False,
        posting: list[FinancialRecord] | None = None,
    ) -> None:
        """One sync_logs row per record, and the records' new state, in bulk.

        A SUCCEEDED write to an ERP that settles later leaves the record awaiting its
        import; `final` is for the answer of `settle`, which is the ERP's last word.
        `posting`: the batch on its way to the ERP meanwhile, which stays in flight.
        """
        now = timezone.now()
        awaiting = self.settles_later and not final
        records = [record for record, _ in pairs]
        self._know_attempts(records)
        logs: list[SyncLog]
        counts: Counter[str]
        logs, counts = [], Counter()
        for record, result in pairs:
            logs.append(self._log_row(record, result, self.attempts[record.pk]))
            counter = self._apply(record, result, now, awaiting)
            counts.update(self._counted(record, counter, final))
            if result.outcome != Outcome.SUCCEEDED:
                self.error_classes[result.outcome] += 1
        # Succeeded records all take the same values but their ERP id: one plain UPDATE
        # and a one-field bulk_update. A nine-field bulk_update of a whole batch builds
        # 9 x 250 CASE branches in Python and was most of a run's time (bench/).
        synced = [record for record, result in pairs if result.outcome == Outcome.SUCCEEDED]
        others = [record for record, result in pairs if result.outcome != Outcome.SUCCEEDED]
        with transaction.atomic():
            # Written: nothing of this run is in flight any more.
            held = self._progress(**counts, in_flight_done=True, posting=posting or [])
            if not held:
                # The sweep closed this run as dead while it waited on the ERP: the attempt
                # is numbered after what the run that took over may have written meanwhile.
                self._know_attempts(records, again=True)
                for log in logs:
                    last_number, log.retry_of_id = self.attempts[log.record_id]
                    log.attempt_number = last_number + 1
            SyncLog.objects.bulk_create(logs)  # an attempt happened: the log always says so
            if not held:
                # Its records are marked for lookup: leave them so. The next run finds what
                # this call posted, instead of this run overwriting another run's claim.
                return
            self.attempts.update({log.record_id: (log.attempt_number, log.pk) for log in logs})
            if synced and not bulk.update(FinancialRecord, synced, SYNCED_FIELDS, "default"):
                FinancialRecord.objects.filter(pk__in=[record.pk for record in synced]).update(
                    state=State.AWAITING if awaiting else State.SYNCED,
                    synced_at=None if awaiting else now,
                    last_error="",
                    last_note={},
                    next_retry_at=self._next_check(now) if awaiting else None,
                    needs_lookup=False,
                    lookup_failures=0,
                    claimed_by=None,
                    updated_at=now,
                )
                FinancialRecord.objects.bulk_update(synced, ["erp_document_id"])
            if others and not bulk.update(FinancialRecord, others, OTHER_FIELDS, "default"):
                FinancialRecord.objects.bulk_update(others, OTHER_FIELDS)
        # S7.1, S7.2; the receivers never raise.
        events.attempts_recorded.send(
            sender=SyncLog, organization_id=self.organization.pk, attempts=logs
        )

    def _log_row(
        self, record: FinancialRecord, result: PostResult, last: tuple[int, int | None]
    ) -> SyncLog:
        status = {
            Outcome.SUCCEEDED: SyncLog.Status.SUCCEEDED,
            Outcome.UNCERTAIN: SyncLog.Status.UNCERTAIN,
        }.get(result.outcome, SyncLog.Status.FAILED)
        succeeded = result.outcome == Outcome.SUCCEEDED
        # Ids, not instances: what reads the row (the chain, the signal's receivers) needs
        # no more, and setting related instances is most of the cost of building one.
        return SyncLog(
            run_id=self.run.pk,
            record_id=record.pk,
            organization_id=self.organization.pk,
            connector=self.run.connector,
            trigger=self.run.trigger,
            attempt_number=last[0] + 1,
            retry_of_id=last[1],
            status=status,
            error_class="" if succeeded else ErrorClass.of(result.outcome),
            error_message="" if succeeded else result.message,
            note=result.note.stored() if result.note else None,
            payload=result.payload,
            response_status=result.response_status,
            response_body=result.response_body,
            duration_ms=result.duration_ms,
            reference=record.reference,
            erp_id=result.erp_id,
        )

    def _know_attempts(self, records: list[FinancialRecord], again: bool = False) -> None:
        """Read the last attempt of each record the run does not know yet (`again`: of
        each one), in one query.

        What the run read stays true while the run is running: one run at a time per
        organization, and only a run writes attempts. `_write_results` checks that it
        still is (the same transaction) before it numbers attempts by what it knows.
        """
        unknown = [r.pk for r in records if again or r.pk not in self.attempts]
        if not unknown:
            return
        last = bulk.with_ids(SyncLog.objects.all(), unknown, field="record")
        self.attempts.update(dict.fromkeys(unknown, (0, None)))
        self.attempts.update(
            {
                record_id: (number, last_id)
                for record_id, number, last_id in last.values("record_id")
                .annotate(number=Max("attempt_number"), last_id=Max("id"))
                .values_list("record_id", "number", "last_id")
            }
        )

    @staticmethod
    def _next_check(now):
        return now + timedelta(seconds=settings.SYNC_IMPORT_CHECK_SECONDS)

    def _apply(self, record: FinancialRecord, result: PostResult, now, awaiting: bool) -> str:
        """Move the record on by what happened to it; say which counter it adds to."""
        record.claimed_by = None
        record.updated_at = now
        if result.outcome == Outcome.SUCCEEDED:
            record.erp_document_id = result.erp_id
            record.last_error, record.needs_lookup, record.lookup_failures = "", False, 0
            record.last_note = {}
            if awaiting:
                record.state, record.synced_at = State.AWAITING, None
                record.next_retry_at = self._next_check(now)
            else:
                record.state, record.synced_at, record.next_retry_at = State.SYNCED, now, None
            return "sent"
        if result.outcome == Outcome.AUTHENTICATION:
            # Retrying cannot fix credentials: no retry is burned, the record waits.
            record.state = State.PENDING
            record.last_error, record.last_note = result.message, _stored(result.note)
            return "failed"
        record.state = State.FAILED
        record.last_error, record.last_note = result.message, _stored(result.note)
        if "lookup" in result.payload:
            self._apply_lookup(record, result, now)
        else:
            self._apply_send(record, result, now)
        return "failed"

    def _apply_lookup(self, record: FinancialRecord, result: PostResult, now) -> None:
        """A lookup that did not find the record synced. It sent nothing: no retry spent."""
        if result.payload.get("found") is False:
            # Certainly not there, and no automatic send is left: a person must act.
            record.needs_lookup, record.lookup_failures, record.next_retry_at = False, 0, None
            return
        # The ERP could not answer: the record may still be there, so it is looked up
        # again after a backoff of its own, whatever its send budget.
        record.needs_lookup = True
        record.lookup_failures += 1
        delay = backoff_seconds(
            record.lookup_failures, self.integration.first_retry_delay_seconds, result.retry_after
        )
        record.next_retry_at = now + timedelta(seconds=delay)

    def _apply_send(self, record: FinancialRecord, result: PostResult, now) -> None:
        """A send that failed spends a retry; one that may have arrived is looked up next."""
        record.retry_count += 1
        record.lookup_failures = 0
        # Whatever the ERP may hold (an uncertain write, part of a posting) is looked up
        # before anything is sent again.
        record.needs_lookup = result.outcome == Outcome.UNCERTAIN or result.partial
        if record.needs_lookup:
            # Planned whatever the budget: only a lookup can say whether it is there
            # (a spent budget then stops a resend, in `_resolve_uncertain`).
            delay = backoff_seconds(
                record.retry_count, self.integration.first_retry_delay_seconds, result.retry_after
            )
            record.next_retry_at = now + timedelta(seconds=delay)
        elif result.outcome == Outcome.PERMANENT:
            record.next_retry_at = None  # the ERP refused the content: a person must act
        elif record.retry_count <= self.integration.automatic_retries:
            delay = backoff_seconds(
                record.retry_count, self.integration.first_retry_delay_seconds, result.retry_after
            )
            record.next_retry_at = now + timedelta(seconds=delay)
        else:
            record.next_retry_at = None  # automatic retries used up; Retry is manual now

    def _counted(self, record: FinancialRecord, counter: str, final: bool) -> dict[str, int]:
        """What one record adds to the run's counters.

        A settlement is the ERP's later word on a record already counted as sent, by
        this run or an earlier one: posted adds nothing to "sent" again, and refused
        moves a record this run counted as sent over to "failed".
        """
        if not final:
            if counter == "sent":
                self.sent_here.add(record.pk)
            return {counter: 1}
        if record.pk in self.sent_here:
            return {"sent": -1, "failed": 1} if counter == "failed" else {}
        self.settled[counter] += 1
        return {"failed": 1} if counter == "failed" else {"posted": 1}

    def _progress(
        self,
        sent: int = 0,
        failed: int = 0,
        skipped: int = 0,
        posted: int = 0,
        in_flight_done: bool = False,
        posting: list[FinancialRecord] | None = None,
    ) -> bool:
        """Add to the run's live counters; with `in_flight_done`, also say that nothing but
        `posting` is in flight any more, and only while the run still holds its records:
        False when the sweep has closed it, and then nothing is changed.

        That conditional UPDATE is also what holds the run: it locks the run's row until
        the caller's transaction ends, so the sweep, which updates that row first, cannot
        close the run and hand its records back in between.
        """
        run = SyncRun.objects.filter(pk=self.run.pk)
        changes: dict[str, Any] = {}
        if in_flight_done:
            run = run.filter(status=SyncRun.Status.RUNNING)
            changes["in_flight"] = [record.pk for record in posting or []]
        if not run.update(
            done=F("done") + sent + failed + skipped + posted,
            sent=F("sent") + sent,
            failed=F("failed") + failed,
            skipped=F("skipped") + skipped,
            heartbeat_at=timezone.now(),
            **changes,
        ):
            return False
        self.counts.update(sent=sent, failed=failed, skipped=skipped)
        Organization.touch(self.run.organization_id)
        return True

    def _beat(self) -> None:
        SyncRun.objects.filter(pk=self.run.pk).update(heartbeat_at=timezone.now())

    def _still_running(self) -> bool:
        return SyncRun.objects.filter(pk=self.run.pk, status=SyncRun.Status.RUNNING).exists()

    def _still_enabled(self) -> bool:
        return Integration.objects.filter(pk=self.integration.pk, enabled=True).exists()

    def _release(self, state: str) -> None:
        """Give back what the run still holds (none of it was sent by this run)."""
        FinancialRecord.objects.held_by(self.run).update(state=state, claimed_by=None)

    def _finish(self, detail: tuple[str, dict[str, Any]], failed: bool = False) -> None:
        """Close the run with its status, error class and what happened, as codes."""
        run = SyncRun.objects.get(pk=self.run.pk)
        if failed or (run.failed and not run.sent):
            status = SyncRun.Status.FAILED
        elif run.failed:
            status = SyncRun.Status.PARTIAL
        else:
            status = SyncRun.Status.SUCCEEDED
        error_class = ""
        if status == SyncRun.Status.FAILED and self.error_classes:
            outcome = self.error_classes.most_common(1)[0][0]
            error_class = (
                ErrorClass.NETWORK if outcome in NETWORK_CLASSES else ErrorClass.of(outcome)
            )
        code, params = detail
        skipped = sorted(self.skip_reasons.items(), key=lambda item: (-item[1], item[0]))
        SyncRun.objects.filter(pk=self.run.pk).update(
            status=status,
            finished_at=timezone.now(),
            heartbeat_at=timezone.now(),
            detail_code=code,
            detail_params=params,
            error_class=error_class,
            skip_reasons=[
                {"code": reason, "count": count, **({"category": category} if category else {})}
                for (reason, category), count in skipped
            ],
            import_posted=self.settled["sent"],
            import_refused=self.settled["failed"],
        )
        Organization.touch(self.run.organization_id)
        # The alerts open or resolve what the run changed (S7.4).
        events.run_ended.send(sender=SyncRun, run_id=self.run.pk)


def _held(records: list[FinancialRecord]) -> dict[str, str]:
    """What `settle` asks about: each record's reference and the ERP's id of its voucher."""
    return {record.reference: record.erp_document_id for record in records}


def _stored(said: Note | None) -> dict[str, Any]:
    return said.stored() if said is not None else {}
