from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounting_sync import outcomes
from accounting_sync.outcomes import RunDetail, SkipReason
from core.chain import ChainedModel
from integrations.clients.base import Outcome
from integrations.notes import joined, words
from organizations.models import Organization

if TYPE_CHECKING:
    from integrations.models import CategoryLabels, Integration


class ErrorClass(models.TextChoices):
    """Why an attempt or a whole run failed: the one list of these codes.

    An attempt's class is the connector's outcome for it (integrations/clients/base.py,
    `Outcome`), so those values are taken from there. A run adds two of its own: NETWORK
    (its failures were transient, rate-limited or uncertain: trying again may help) and
    ABANDONED (its worker died). The audit exports write these codes as they are.
    """

    TRANSIENT = Outcome.TRANSIENT.value, _("Temporary failure")
    RATE_LIMITED = Outcome.RATE_LIMITED.value, _("Rate limited")
    AUTHENTICATION = Outcome.AUTHENTICATION.value, _("Credentials refused")
    PERMANENT = Outcome.PERMANENT.value, _("Refused by the accounting system")
    UNCERTAIN = Outcome.UNCERTAIN.value, _("Outcome unknown")
    NETWORK = "network", _("Accounting system unreachable")
    ABANDONED = "abandoned", _("Worker stopped")

    @classmethod
    def of(cls, outcome: Outcome) -> ErrorClass:
        return cls(outcome.value)


class FinancialRecordQuerySet(models.QuerySet["FinancialRecord"]):
    """The state rules, named once: which records a run takes, a page lists, the sweep
    retries. Each is a plain filter, so they chain with each other and with `filter`."""

    def pending(self) -> FinancialRecordQuerySet:
        return self.filter(state=FinancialRecord.State.PENDING)

    def failed(self) -> FinancialRecordQuerySet:
        return self.filter(state=FinancialRecord.State.FAILED)

    def awaiting(self) -> FinancialRecordQuerySet:
        """Sent, but the ERP's import may still refuse them (Xledger)."""
        return self.filter(state=FinancialRecord.State.AWAITING)

    def not_yet_sent(self) -> FinancialRecordQuerySet:
        """Waiting to be sent: one being sent right now has still waited (S7.3)."""
        return self.filter(state__in=[FinancialRecord.State.PENDING, FinancialRecord.State.SENDING])

    @staticmethod
    def _due(state: str, now: datetime) -> Q:
        return Q(state=state, next_retry_at__lte=now)

    def due_for_retry(self, now: datetime) -> FinancialRecordQuerySet:
        """Failed records whose automatic retry (or lookup) has come."""
        return self.filter(self._due(FinancialRecord.State.FAILED, now))

    def due_for_import_check(self, now: datetime) -> FinancialRecordQuerySet:
        """Records awaiting the ERP's import whose next question to it has come."""
        return self.filter(self._due(FinancialRecord.State.AWAITING, now))

    def sendable(
        self, organization: Organization, integration: Integration, now: datetime | None = None
    ) -> FinancialRecordQuerySet:
        """What an automatic run takes: pending, due retries, and skipped ones now mapped.

        Reads the mapped categories at once (one query), as the run's claim must.
        """
        State = FinancialRecord.State
        mapped = list(integration.mappings.values_list("category", flat=True))
        return self.filter(
            Q(organization=organization, kind__in=integration.included_kinds())
            & (
                Q(state=State.PENDING)
                | self._due(State.FAILED, now or timezone.now())
                | Q(state=State.SKIPPED, category__in=mapped)
            )
        )

    def chosen_for_retry(
        self, organization: Organization, record_ids: list[int]
    ) -> FinancialRecordQuerySet:
        """Retry Selected / Retry All Failed: exactly these, if they are not sent or held."""
        State = FinancialRecord.State
        return self.filter(
            organization=organization,
            pk__in=record_ids,
            state__in=[State.FAILED, State.PENDING, State.SKIPPED],
        )

    def resendable(self) -> FinancialRecordQuerySet:
        """Waiting or failed, but not refused for good (a failed one with a retry planned)."""
        State = FinancialRecord.State
        return self.filter(state__in=[State.PENDING, State.FAILED]).exclude(
            state=State.FAILED, next_retry_at__isnull=True
        )

    def held_by(self, run: SyncRun | int) -> FinancialRecordQuerySet:
        """What a run holds: claimed by it and still `sending` (docs/architecture.md)."""
        run_id = run if isinstance(run, int) else run.pk
        return self.filter(claimed_by_id=run_id, state=FinancialRecord.State.SENDING)

    def failed_queue(self) -> FinancialRecordQuerySet:
        """The Failed Records page: the failed records, and those a sync is re-sending now.

        A record being retried is `sending` until its outcome is known. It stays on the
        list meanwhile (marked "retrying now"), so rows do not vanish and come back, and a
        person's tick on it is kept, while the retry runs. `retry_count > 0` tells a
        re-send of a failed record from a first send.
        """
        State = FinancialRecord.State
        return self.filter(
            Q(state=State.FAILED) | Q(state=State.SENDING, retry_count__gt=0)
        ).order_by("-approved_at", "-id")


class FinancialRecord(models.Model):
    """An approved reimbursement or honorarium, as the volunteer app sent it.

    What came in is never changed: the same `source_id` with other content is
    refused (409), so the ledger always matches what was approved. Only the
    sending state moves: pending → sending → synced, or → failed / skipped.
    """

    class Kind(models.TextChoices):
        REIMBURSEMENT = "reimbursement", _("Reimbursement")
        HONORARIUM = "honorarium", _("Honorarium")

    class State(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENDING = "sending", _("Sending")
        # The ERP took the write but may still refuse it (Xledger's import job): not
        # reported synced until `settle` says it was posted (docs/architecture.md, "Exactly once").
        AWAITING = "awaiting", _("Sent, awaiting import")
        SYNCED = "synced", _("Synced")
        FAILED = "failed", _("Failed")
        SKIPPED = "skipped", _("Skipped")

    # The fields the volunteer app sends; `content()` compares on exactly these.
    CONTENT_FIELDS = (
        "kind",
        "category",
        "amount",
        "currency",
        "expense_date",
        "approved_at",
        "claimant_reference",
        "claimant_name",
        "description",
    )

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="records")
    source_id = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    category = models.CharField(max_length=64)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="NOK")
    expense_date = models.DateField()
    approved_at = models.DateTimeField()
    claimant_reference = models.CharField(max_length=64)
    claimant_name = models.CharField(max_length=200)
    description = models.CharField(max_length=500, blank=True)

    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    retry_count = models.PositiveIntegerField(default=0)
    # Why the last attempt failed: the ERP's own words, verbatim (evidence), and our own
    # words as a note worded when read (integrations/notes.py). See `error_text`.
    last_error = models.TextField(blank=True)
    last_note = models.JSONField(default=dict, blank=True)
    # failed: when the next automatic retry is due; awaiting: when to ask the ERP again.
    next_retry_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=300, blank=True, choices=SkipReason.choices)
    erp_document_id = models.CharField(max_length=100, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    # The run that holds the record while it is `sending`; a dead run's records are
    # found through this and made safe to send again.
    claimed_by = models.ForeignKey(
        "SyncRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The last send may have reached the ERP: look it up by reference before resending.
    needs_lookup = models.BooleanField(default=False)
    # Lookups in a row the ERP could not answer. They space the next lookup (backoff)
    # instead of `retry_count`: a lookup sends nothing, so it never spends a retry.
    lookup_failures = models.PositiveIntegerField(default=0)

    received_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = FinancialRecordQuerySet.as_manager()

    class Meta:
        ordering = ["-approved_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "source_id"], name="one_record_per_source_id"
            ),
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="amount_positive"),
        ]
        indexes = [
            # Per organization and state, with the arrival time and id in the index: the
            # overview counts pending and failed records and finds the oldest pending one
            # for every organization from the index alone (index-only scans).
            models.Index(
                fields=["organization", "state", "received_at"],
                include=["id"],
                name="record_org_state_received",
            ),
            models.Index(
                fields=["organization", "next_retry_at"],
                condition=models.Q(state="failed"),
                name="record_failed_due",
            ),
            models.Index(
                fields=["organization", "next_retry_at"],
                condition=models.Q(state="awaiting"),
                name="record_awaiting_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.kind} {self.amount} {self.currency}"

    @property
    def reference(self) -> str:
        """The deterministic reference written into the ERP's external-reference field.

        Short enough for Business Central's 20-character documentNumber.
        """
        return f"VH-{self.organization_id}-{self.pk}"

    def content(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.CONTENT_FIELDS}

    @property
    def note_text(self) -> str:
        """Our own words on the last attempt, in the reader's language ("" for none)."""
        return words(self.last_note)

    @property
    def error_text(self) -> str:
        """Why the last attempt failed, in the reader's language, the ERP's words beside."""
        return joined(self.note_text, self.last_error)

    def differing_fields(self, other: dict[str, object]) -> list[str]:
        mine = self.content()
        # Decimals compare by value and aware datetimes by instant, so plain
        # equality is the right test for every field.
        return [name for name in self.CONTENT_FIELDS if mine[name] != other[name]]


class WorkerHeartbeat(models.Model):
    """Last time each Celery worker ran the periodic heartbeat task.

    Shown to global admins: if no worker has been seen lately, nothing is being sent.
    """

    hostname = models.CharField(max_length=255, unique=True)
    seen_at = models.DateTimeField()

    class Meta:
        ordering = ["-seen_at"]

    def __str__(self) -> str:
        return f"{self.hostname} @ {self.seen_at:%Y-%m-%d %H:%M:%S}"


class SyncRun(models.Model):
    """One sync of one organization's records to its ERP."""

    class Trigger(models.TextChoices):
        APPROVAL = "approval", _("After approval")
        MANUAL = "manual", _("Manual")
        SCHEDULE = "schedule", _("Schedule")
        RETRY = "retry", _("Retry")
        # Only asks the ERP what became of records awaiting its import; sends nothing new.
        CHECK = "check", _("Import check")

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        PARTIAL = "partial", _("Partly failed")
        FAILED = "failed", _("Failed")

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="runs")
    connector = models.CharField(max_length=20)
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Retry Selected: exactly these records; otherwise everything sendable.
    record_ids = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(auto_now_add=True)
    worker = models.CharField(max_length=255, blank=True)  # who executes it, once claimed
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    # What happened, as codes and numbers; accounting_sync/outcomes.py words them for
    # each reader. Why it stopped, beyond its counts, with the ERP's words as a parameter.
    detail_code = models.CharField(max_length=30, blank=True, choices=RunDetail.choices)
    detail_params = models.JSONField(default=dict, blank=True)
    # Why records were skipped: [{"code": SkipReason, "count": n, and its parameters}].
    # Runs stored before the codes hold {English sentence: count} here.
    skip_reasons = models.JSONField(default=list, blank=True)
    # Records sent earlier that the ERP's import posted or refused during this run.
    import_posted = models.PositiveIntegerField(default=0)
    import_refused = models.PositiveIntegerField(default=0)
    # Only runs stored before the codes: an English sentence, shown as it was stored.
    message = models.TextField(blank=True)
    error_class = models.CharField(  # why a whole run failed
        max_length=20, blank=True, choices=ErrorClass.choices
    )
    # The ids of the batch being posted right now ([] between batches), so that when the
    # worker dies only these are looked up and the rest it held go back unsent. None: not
    # known (the run never got to claim, or predates this field): all it held are looked up.
    in_flight = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            # Two workers cannot both pass this, unlike a Python check.
            models.UniqueConstraint(
                fields=["organization"],
                condition=models.Q(status="running"),
                name="one_running_run_per_org",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "-started_at"], name="run_org_started"),
            # The overview's last sync and last run of every organization, from the index alone.
            models.Index(
                fields=["organization", "-finished_at", "-id"],
                include=["status", "failed"],
                name="run_org_finished",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} {self.organization} {self.trigger} {self.status}"

    @property
    def is_running(self) -> bool:
        return self.status == self.Status.RUNNING

    @property
    def total_known(self) -> bool:
        """Whether `total` counts the run's records: set when it claims them (in_flight
        becomes [] then), so a run just started says "Starting…", not "0 of 0"."""
        return self.total > 0 or self.in_flight is not None

    def outcome_text(self) -> str:
        """What the run did, in the reader's language (the one wording: outcomes.py)."""
        return outcomes.outcome_text(self)

    def skip_texts(self, labels: CategoryLabels | None = None) -> list[str]:
        """Why its records were skipped, one line per reason, in the reader's language."""
        return outcomes.skip_texts(self, labels)


class SyncLog(ChainedModel):
    """One attempt to send one record: only ever inserted, never changed.

    "Marked succeeded with a reference to the retry" (S6.4) is the later attempt
    pointing back at the one it retries (`retry_of`), not a rewrite of this row.
    """

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        UNCERTAIN = "uncertain", _("Uncertain")

    run = models.ForeignKey(SyncRun, on_delete=models.PROTECT, related_name="attempts")
    record = models.ForeignKey(FinancialRecord, on_delete=models.PROTECT, related_name="attempts")
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    connector = models.CharField(max_length=20)
    attempt_number = models.PositiveIntegerField()
    trigger = models.CharField(max_length=10, choices=SyncRun.Trigger.choices)
    status = models.CharField(max_length=10, choices=Status.choices)
    error_class = models.CharField(max_length=20, blank=True, choices=ErrorClass.choices)
    error_message = models.TextField(blank=True)  # the ERP's own words, verbatim
    # Our own words, as a code (notes.py). Null where there are none: rows chained before
    # notes existed have none, and a null note is left out of the hash (LATER_CHAIN_FIELDS).
    note = models.JSONField(null=True, blank=True)
    payload = models.JSONField(default=dict, blank=True)  # exactly what was sent; no credentials
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    reference = models.CharField(max_length=40)
    erp_id = models.CharField(max_length=100, blank=True)
    retry_of = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="retried_by"
    )
    CHAIN_FIELDS = (
        "run_id",
        "record_id",
        "organization_id",
        "connector",
        "attempt_number",
        "trigger",
        "status",
        "error_class",
        "error_message",
        "payload",
        "response_status",
        "response_body",
        "duration_ms",
        "reference",
        "erp_id",
        "retry_of_id",
        "created_at",
    )
    LATER_CHAIN_FIELDS = ("note",)

    class Meta:
        db_table = "sync_logs"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at", "-id"], name="synclog_org_newest"),
            models.Index(fields=["record", "attempt_number"], name="synclog_record_attempt"),
        ]

    def __str__(self) -> str:
        return f"{self.reference} attempt {self.attempt_number} {self.status}"

    @property
    def note_text(self) -> str:
        """Our own words about this attempt, in the reader's language ("" for none)."""
        return words(self.note)

    @property
    def error_text(self) -> str:
        """Why it failed: our note in the reader's language, the ERP's words beside."""
        return joined(self.note_text, self.error_message)

    @property
    def connector_label(self) -> str:
        """The ERP's name as people know it ("Xledger"), not the stored code."""
        from integrations.models import Integration

        if self.connector in Integration.Connector.values:
            return str(Integration.Connector(self.connector).label)
        return self.connector

    @property
    def explanation(self) -> str:
        """What the ERP's answer meant, in the reader's language, worked out from the stored
        status code (the ERP's own words stay as they are, in error_message)."""
        status = self.response_status
        if self.status == self.Status.SUCCEEDED or status is None:
            return ""
        said = {"erp": self.connector_label, "status": status}
        if 200 <= status < 300:
            return (
                gettext("%(erp)s answered %(status)s (OK) but refused the content of the record.")
                % said
            )
        if status == 429:
            return gettext("%(erp)s limited the number of requests (HTTP %(status)s).") % said
        if status >= 500:
            return gettext("%(erp)s was unavailable (HTTP %(status)s).") % said
        if status in (401, 403):
            return (
                gettext("%(erp)s refused the credentials or the permission (HTTP %(status)s).")
                % said
            )
        return gettext("%(erp)s refused the record (HTTP %(status)s).") % said

    @property
    def erp_words(self) -> str:
        """The ERP's own message, or "" where it said nothing beyond the status code."""
        message = self.error_message.strip()
        return "" if message == f"HTTP {self.response_status}" else message


class SyncEvent(models.Model):
    """Something an admin must hear about; the alerts turn these into in-app alerts."""

    class Kind(models.TextChoices):
        SCHEDULED_RUN_FAILED = "scheduled_run_failed", _("Scheduled sync failed after its retries")
        AUTHENTICATION_FAILED = "authentication_failed", _("The ERP refused the credentials")
        RUN_ABANDONED = "run_abandoned", _("A sync stopped because its worker died")

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    run = models.ForeignKey(SyncRun, null=True, blank=True, on_delete=models.PROTECT)
    kind = models.CharField(max_length=30, choices=Kind.choices)
    message = models.TextField(blank=True)  # the ERP's own words, verbatim
    note = models.JSONField(default=dict, blank=True)  # our own words, as a code (notes.py)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.organization} {self.kind}"
