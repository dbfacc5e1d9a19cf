"""The sync engine: one run sends an organization's sendable records to its ERP.

Exactly once rests on three things (DESIGN.md, "Sending exactly once"):
- a record is claimed (state `sending`, `claimed_by` the run) with one conditional
  UPDATE, and at most one run per organization is running (a partial unique index);
- every record carries a deterministic reference into the ERP, so a send whose
  outcome is unknown (`needs_lookup`) is looked up before it is ever sent again;
- a run whose worker died is closed by `recover_stale_runs`, and the records it
  held are marked for lookup, since they may have reached the ERP.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from accounting_sync.gateway.base import (
    Connector,
    ConnectorError,
    Found,
    Outcome,
    Posting,
    PostResult,
    Settled,
    Settlement,
)
from accounting_sync.models import FinancialRecord, SyncEvent, SyncLog, SyncRun
from alerts import hooks as alert_hooks
from integrations.models import Integration, Organization

logger = logging.getLogger(__name__)

State = FinancialRecord.State
# Automatic retries never wait longer than this between two attempts.
BACKOFF_CAP_SECONDS = 6 * 3600
# A whole batch refused for rate is re-sent within the run this many times.
RATE_LIMIT_RESENDS = 3
RATE_LIMIT_MAX_WAIT_SECONDS = 60
NETWORK_CLASSES = {Outcome.TRANSIENT, Outcome.UNCERTAIN, Outcome.RATE_LIMITED}


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


def execute_run(run_id: int, worker: str = "") -> SyncRun | None:
    """Carry out a run; a second delivery of the same task does nothing."""
    claimed = SyncRun.objects.filter(pk=run_id, status=SyncRun.Status.RUNNING, worker="").update(
        worker=worker or "worker", heartbeat_at=timezone.now()
    )
    if not claimed:
        return None
    run = SyncRun.objects.select_related("organization__integration").get(pk=run_id)
    Orchestrator(run).execute()
    run.refresh_from_db()
    return run


def recover_stale_runs(now=None) -> list[SyncRun]:
    """Close runs whose worker stopped beating; their records may have been sent."""
    now = now or timezone.now()
    limit = now - timedelta(seconds=settings.SYNC_STALE_AFTER_SECONDS)
    closed = []
    for run in SyncRun.objects.filter(status=SyncRun.Status.RUNNING, heartbeat_at__lt=limit):
        with transaction.atomic():
            if not SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.RUNNING).update(
                status=SyncRun.Status.FAILED,
                finished_at=now,
                error_class="abandoned",
                message="The sync stopped because its worker stopped answering. The records "
                "it held are checked in the accounting system before anything is sent again.",
            ):
                continue
            held = FinancialRecord.objects.filter(claimed_by=run, state=State.SENDING)
            count = held.update(
                state=State.FAILED,
                needs_lookup=True,
                next_retry_at=now,
                claimed_by=None,
                last_error="The sync was interrupted; checking the accounting system first.",
            )
            SyncEvent.objects.create(
                organization_id=run.organization_id,
                run=run,
                kind=SyncEvent.Kind.RUN_ABANDONED,
                message=f"Sync {run.pk} stopped when its worker died; {count} records will be "
                "looked up in the accounting system before they are sent again.",
            )
            Organization.touch(run.organization_id)
        run.refresh_from_db()
        closed.append(run)
    return closed


def sendable(organization: Organization, integration: Integration, now=None) -> Q:
    """What an automatic run takes: pending, due retries, and skipped ones now mapped."""
    now = now or timezone.now()
    mapped = list(integration.mappings.values_list("category", flat=True))
    return Q(organization=organization, kind__in=integration.included_kinds()) & (
        Q(state=State.PENDING)
        | Q(state=State.FAILED, next_retry_at__lte=now)
        | Q(state=State.SKIPPED, category__in=mapped)
    )


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Orchestrator:
    """Carries out one run. Small steps, each writing what it decided."""

    def __init__(self, run: SyncRun) -> None:
        self.run = run
        self.organization = run.organization
        self.integration = self.organization.integration
        self.counts: Counter[str] = Counter()
        self.skip_reasons: Counter[str] = Counter()
        self.stop_reason = ""
        self.error_classes: Counter[str] = Counter()
        # Records the ERP holds only part of (lookup found them incomplete): record id →
        # the ERP's id of that part, which `post` completes instead of creating anew.
        self.existing: dict[int, str] = {}
        self.settles_later = False
        self.sent_here: set[int] = set()  # records this run counted as sent
        self.settled: Counter[str] = Counter()  # what `settle` decided: "sent" (posted), "failed"

    # --- the run ----------------------------------------------------------------------

    def execute(self) -> None:
        try:
            if not self.integration.enabled:
                self._finish(
                    "The connector is disabled; records stay pending until it is enabled.",
                    failed=True,
                )
                return
            records = self._claim()
            awaiting = self._awaiting_due()
            if not records and not awaiting:
                self._finish("There was nothing to send.")
                return
            connector = self.integration.build_connector()
            self.settles_later = connector.settles_later
            try:
                if awaiting:
                    self._settle(connector, awaiting)
                claimed = records
                records = self._skip_unmapped(records)
                records = self._resolve_uncertain(connector, records)
                self._send_all(connector, records)
                if self.settles_later and claimed:
                    # Ask at once: where the ERP imports quickly, the run ends with them posted.
                    self._settle(connector, self._awaiting_among(claimed))
            finally:
                close = getattr(connector, "close", None)
                if close:
                    close()
            self._finish(self.stop_reason)
        except Exception:
            logger.exception("sync run %s failed", self.run.pk)
            self._release(State.FAILED, needs_lookup=True)
            self._finish(
                "The sync stopped on an unexpected error; the records it held are "
                "checked in the accounting system before they are sent again.",
                failed=True,
            )
            raise

    def _claim(self) -> list[FinancialRecord]:
        if self.run.record_ids is not None:  # Retry Selected / Retry All Failed
            wanted = Q(
                organization=self.organization,
                pk__in=self.run.record_ids,
                state__in=[State.FAILED, State.PENDING, State.SKIPPED],
            )
        else:
            wanted = sendable(self.organization, self.integration)
        FinancialRecord.objects.filter(wanted).update(
            state=State.SENDING, claimed_by=self.run, updated_at=timezone.now()
        )
        records = list(
            FinancialRecord.objects.filter(claimed_by=self.run, state=State.SENDING).order_by("pk")
        )
        SyncRun.objects.filter(pk=self.run.pk).update(total=len(records))
        Organization.touch(self.run.organization_id)
        return records

    def _skip_unmapped(self, records: list[FinancialRecord]) -> list[FinancialRecord]:
        mappings = {m.category: m for m in self.integration.mappings.all()}
        self.mappings = mappings
        ready, skipped = [], []
        for record in records:
            reason = self._skip_reason(record, mappings)
            if reason:
                record.state, record.skip_reason, record.claimed_by = State.SKIPPED, reason, None
                skipped.append(record)
                self.skip_reasons[reason] += 1
            else:
                ready.append(record)
        if skipped:
            FinancialRecord.objects.bulk_update(skipped, ["state", "skip_reason", "claimed_by"])
            self._progress(skipped=len(skipped))
        return ready

    def _skip_reason(self, record: FinancialRecord, mappings: dict) -> str:
        if record.category not in mappings:
            return f"No mapping for category {record.category!r}."
        if not self.integration.payable_account:
            return "No payable account is chosen on the mappings page."
        return ""

    def _resolve_uncertain(
        self, connector: Connector, records: list[FinancialRecord]
    ) -> list[FinancialRecord]:
        """Records whose last send may have arrived: found in the ERP → synced, not sent."""
        uncertain = [record for record in records if record.needs_lookup]
        if not uncertain:
            return records
        try:
            found = connector.lookup([record.reference for record in uncertain])
        except ConnectorError as error:
            # Without an answer nothing may be resent: hold them back for later.
            held = {record.pk for record in uncertain}
            self._write_results(
                [(record, self._lookup_failed(record, error)) for record in uncertain]
            )
            return [record for record in records if record.pk not in held]
        whole: dict[str, Found] = {}
        for record in uncertain:
            hit = found.get(record.reference)
            if hit is not None and hit.complete:
                whole[record.reference] = hit
            elif hit is not None:
                # Part of it is there (a line without its dimension): complete that part,
                # never send the whole again.
                self.existing[record.pk] = hit.erp_id
        confirmed = [record for record in uncertain if record.reference in whole]
        if confirmed:
            self._write_results(
                [
                    (record, self._found(record, whole[record.reference].erp_id))
                    for record in confirmed
                ]
            )
        done = {record.pk for record in confirmed}
        return [record for record in records if record.pk not in done]

    @staticmethod
    def _found(record: FinancialRecord, erp_id: str) -> PostResult:
        return PostResult(
            reference=record.reference,
            outcome=Outcome.SUCCEEDED,
            erp_id=erp_id,
            message="Found in the accounting system by its reference; not sent again.",
            payload={"lookup": record.reference},
        )

    # --- records the ERP may still refuse (Xledger's import job) ------------------------

    def _awaiting_due(self) -> list[FinancialRecord]:
        return list(
            FinancialRecord.objects.filter(
                organization=self.organization,
                state=State.AWAITING,
                next_retry_at__lte=timezone.now(),
            ).order_by("pk")
        )

    def _awaiting_among(self, records: list[FinancialRecord]) -> list[FinancialRecord]:
        return list(
            FinancialRecord.objects.filter(
                pk__in=[record.pk for record in records], state=State.AWAITING
            ).order_by("pk")
        )

    def _settle(self, connector: Connector, awaiting: list[FinancialRecord]) -> None:
        """Ask the ERP what became of records it accepted: posted, rejected, or not yet."""
        if not awaiting:
            return
        try:
            answers = connector.settle({r.reference: r.erp_document_id for r in awaiting})
        except ConnectorError as error:
            logger.warning("run %s: could not ask about awaiting records: %s", self.run.pk, error)
            answers = {}
        waiting = Settled(Settlement.WAITING)
        decided = [
            (record, self._settled(record, answers[record.reference]))
            for record in awaiting
            if answers.get(record.reference, waiting).state != Settlement.WAITING
        ]
        later = self._next_check(timezone.now())
        undecided = {record.pk for record in awaiting} - {record.pk for record, _ in decided}
        FinancialRecord.objects.filter(pk__in=undecided, state=State.AWAITING).update(
            next_retry_at=later
        )
        # Posted, for a record this run sent, adds nothing to what its attempt says;
        # posted for one an earlier run sent is written down as the evidence it was.
        decided = [
            (record, result)
            for record, result in decided
            if record.pk not in self.sent_here or result.outcome != Outcome.SUCCEEDED
        ]
        quiet = {record.pk for record in awaiting} - undecided - {r.pk for r, _ in decided}
        if quiet:
            FinancialRecord.objects.filter(pk__in=quiet, state=State.AWAITING).update(
                state=State.SYNCED, synced_at=timezone.now(), next_retry_at=None
            )
            Organization.touch(self.run.organization_id)
        if decided:
            earlier = sum(1 for record, _ in decided if record.pk not in self.sent_here)
            SyncRun.objects.filter(pk=self.run.pk).update(total=F("total") + earlier)
            self._write_results(decided, final=True)

    @staticmethod
    def _settled(record: FinancialRecord, settled: Settled) -> PostResult:
        if settled.state == Settlement.POSTED:
            return PostResult(
                reference=record.reference,
                outcome=Outcome.SUCCEEDED,
                erp_id=settled.erp_id or record.erp_document_id,
                message="The accounting system's import posted it.",
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

    def _lookup_failed(self, record: FinancialRecord, error: ConnectorError) -> PostResult:
        outcome = (
            Outcome.AUTHENTICATION if error.outcome == Outcome.AUTHENTICATION else Outcome.UNCERTAIN
        )
        return PostResult(
            reference=record.reference,
            outcome=outcome,
            message=f"Could not check the accounting system before resending: {error.message}",
            retry_after=error.retry_after,
            payload={"lookup": record.reference},
        )

    def _send_all(self, connector: Connector, records: list[FinancialRecord]) -> None:
        batches = list(chunks(records, connector.batch_size))
        for index, batch in enumerate(batches):
            if not self._still_running():
                self.stop_reason = "The sync was closed by the sweep; it sends nothing more."
                return
            if not self._still_enabled():
                left = sum(len(rest) for rest in batches[index:])
                self._release(State.PENDING)
                self.stop_reason = (
                    f"The connector was disabled during the sync; {left} records "
                    "were not sent and stay pending."
                )
                return
            results = self._send(connector, batch)
            self._write_results(list(zip(batch, results, strict=True)))
            if any(result.outcome == Outcome.AUTHENTICATION for result in results):
                self._release(State.PENDING)
                message = next(r.message for r in results if r.outcome == Outcome.AUTHENTICATION)
                self.stop_reason = f"The accounting system refused the credentials: {message}"
                event = SyncEvent.objects.create(
                    organization=self.organization,
                    run=self.run,
                    kind=SyncEvent.Kind.AUTHENTICATION_FAILED,
                    message=message,
                )
                alert_hooks.event_recorded(event)  # S7.6: at once, retrying cannot fix it
                return

    def _send(self, connector: Connector, batch: list[FinancialRecord]) -> list[PostResult]:
        postings = [self._posting(record) for record in batch]
        for attempt in range(RATE_LIMIT_RESENDS + 1):
            results = connector.post(postings)
            limited = [r for r in results if r.outcome == Outcome.RATE_LIMITED]
            if len(limited) < len(results) or attempt == RATE_LIMIT_RESENDS:
                return results
            # The ERP asked us to slow down and nothing was taken: wait, then resend.
            wait = min(RATE_LIMIT_MAX_WAIT_SECONDS, max(r.retry_after or 1 for r in limited))
            self._wait(wait)
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
        self, pairs: list[tuple[FinancialRecord, PostResult]], final: bool = False
    ) -> None:
        """One sync_logs row per record, and the records' new state, in bulk.

        A SUCCEEDED write to an ERP that settles later leaves the record awaiting its
        import; `final` is for the answer of `settle`, which is the ERP's last word.
        """
        now = timezone.now()
        awaiting = self.settles_later and not final
        previous = {
            row["record"]: row
            for row in SyncLog.objects.filter(record__in=[r for r, _ in pairs])
            .values("record")
            .annotate(last_number=Max("attempt_number"), last_id=Max("id"))
        }
        logs, counts = [], Counter()
        for record, result in pairs:
            before = previous.get(record.pk, {})
            logs.append(self._log_row(record, result, before))
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
            SyncLog.objects.bulk_create(logs)  # an attempt happened: the log always says so
            if not self._still_running():
                # The sweep closed this run as dead while it waited on the ERP, and its
                # records are marked for lookup: leave them so. The next run finds what
                # this call posted, instead of this run overwriting another run's claim.
                return
            if synced:
                FinancialRecord.objects.filter(pk__in=[record.pk for record in synced]).update(
                    state=State.AWAITING if awaiting else State.SYNCED,
                    synced_at=None if awaiting else now,
                    last_error="",
                    next_retry_at=self._next_check(now) if awaiting else None,
                    needs_lookup=False,
                    claimed_by=None,
                    updated_at=now,
                )
                FinancialRecord.objects.bulk_update(synced, ["erp_document_id"])
            if others:
                FinancialRecord.objects.bulk_update(
                    others,
                    [
                        "state",
                        "retry_count",
                        "last_error",
                        "next_retry_at",
                        "needs_lookup",
                        "erp_document_id",
                        "synced_at",
                        "claimed_by",
                        "updated_at",
                    ],
                )
            self._progress(**counts)
        alert_hooks.attempts_recorded(self.organization.pk, logs)  # S7.1, S7.2; never raises

    def _log_row(self, record: FinancialRecord, result: PostResult, before: dict) -> SyncLog:
        status = {
            Outcome.SUCCEEDED: SyncLog.Status.SUCCEEDED,
            Outcome.UNCERTAIN: SyncLog.Status.UNCERTAIN,
        }.get(result.outcome, SyncLog.Status.FAILED)
        return SyncLog(
            run=self.run,
            record=record,
            organization=self.organization,
            connector=self.run.connector,
            trigger=self.run.trigger,
            attempt_number=before.get("last_number", 0) + 1,
            retry_of_id=before.get("last_id"),
            status=status,
            error_class="" if result.outcome == Outcome.SUCCEEDED else result.outcome.value,
            error_message="" if result.outcome == Outcome.SUCCEEDED else result.message,
            payload=result.payload,
            response_status=result.response_status,
            response_body=result.response_body,
            duration_ms=result.duration_ms,
            reference=record.reference,
            erp_id=result.erp_id,
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
            record.last_error, record.needs_lookup = "", False
            if awaiting:
                record.state, record.synced_at = State.AWAITING, None
                record.next_retry_at = self._next_check(now)
            else:
                record.state, record.synced_at, record.next_retry_at = State.SYNCED, now, None
            return "sent"
        if result.outcome == Outcome.AUTHENTICATION:
            # Retrying cannot fix credentials: no retry is burned, the record waits.
            record.state, record.last_error = State.PENDING, result.message
            return "failed"
        record.state, record.last_error = State.FAILED, result.message
        record.retry_count += 1
        # Whatever the ERP may hold (an uncertain write, part of a posting, a lookup that
        # could not answer) is looked up before anything is sent again.
        record.needs_lookup = (
            result.outcome == Outcome.UNCERTAIN
            or result.partial
            or (record.needs_lookup and result.payload.get("lookup") is not None)
        )
        if result.outcome == Outcome.PERMANENT:
            record.next_retry_at = None  # the ERP refused the content: a person must act
        elif record.retry_count <= self.integration.automatic_retries:
            delay = backoff_seconds(
                record.retry_count, self.integration.first_retry_delay_seconds, result.retry_after
            )
            record.next_retry_at = now + timedelta(seconds=delay)
        else:
            record.next_retry_at = None  # automatic retries used up; Retry is manual now
        return "failed"

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

    def _progress(self, sent: int = 0, failed: int = 0, skipped: int = 0, posted: int = 0) -> None:
        self.counts.update(sent=sent, failed=failed, skipped=skipped)
        SyncRun.objects.filter(pk=self.run.pk).update(
            done=F("done") + sent + failed + skipped + posted,
            sent=F("sent") + sent,
            failed=F("failed") + failed,
            skipped=F("skipped") + skipped,
            heartbeat_at=timezone.now(),
        )
        Organization.touch(self.run.organization_id)

    def _beat(self) -> None:
        SyncRun.objects.filter(pk=self.run.pk).update(heartbeat_at=timezone.now())

    def _still_running(self) -> bool:
        return SyncRun.objects.filter(pk=self.run.pk, status=SyncRun.Status.RUNNING).exists()

    def _still_enabled(self) -> bool:
        return Integration.objects.filter(pk=self.integration.pk, enabled=True).exists()

    def _release(self, state: str, needs_lookup: bool = False) -> None:
        """Give back what the run still holds (none of it was sent by this run)."""
        changes = {"state": state, "claimed_by": None}
        if needs_lookup:
            changes.update(needs_lookup=True, next_retry_at=timezone.now())
        FinancialRecord.objects.filter(claimed_by=self.run, state=State.SENDING).update(**changes)

    def _finish(self, message: str, failed: bool = False) -> None:
        run = SyncRun.objects.get(pk=self.run.pk)
        if failed or (run.failed and not run.sent):
            status = SyncRun.Status.FAILED
        elif run.failed:
            status = SyncRun.Status.PARTIAL
        else:
            status = SyncRun.Status.SUCCEEDED
        error_class = ""
        if status == SyncRun.Status.FAILED and self.error_classes:
            error_class = self.error_classes.most_common(1)[0][0]
            if error_class in NETWORK_CLASSES:
                error_class = "network"
        SyncRun.objects.filter(pk=self.run.pk).update(
            status=status,
            finished_at=timezone.now(),
            heartbeat_at=timezone.now(),
            message=message or self._summary(run),
            error_class=error_class,
            skip_reasons=dict(self.skip_reasons),
        )
        Organization.touch(self.run.organization_id)
        alert_hooks.run_ended(self.run.pk)  # open or resolve what the run changed (S7.4)

    def _summary(self, run: SyncRun) -> str:
        parts = [f"{run.sent} sent"]
        if run.failed:
            parts.append(f"{run.failed} failed")
        if run.skipped:
            parts.append(f"{run.skipped} skipped")
        if self.settled["sent"]:
            parts.append(f"{self.settled['sent']} posted by the accounting system's import")
        if self.settled["failed"]:
            parts.append(f"{self.settled['failed']} refused by its import")
        return ", ".join(parts) + "."
