from __future__ import annotations

from django.db import models

from integrations.models import Organization


class FinancialRecord(models.Model):
    """An approved reimbursement or honorarium, as the volunteer app sent it.

    What came in is never changed: the same `source_id` with other content is
    refused (409), so the ledger always matches what was approved. Only the
    sending state moves: pending → sending → synced, or → failed / skipped.
    """

    class Kind(models.TextChoices):
        REIMBURSEMENT = "reimbursement", "Reimbursement"
        HONORARIUM = "honorarium", "Honorarium"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SYNCED = "synced", "Synced"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

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
    last_error = models.TextField(blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=300, blank=True)
    erp_document_id = models.CharField(max_length=100, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)

    received_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-approved_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "source_id"], name="one_record_per_source_id"
            ),
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="amount_positive"),
        ]
        indexes = [models.Index(fields=["organization", "state"], name="record_org_state")]

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
