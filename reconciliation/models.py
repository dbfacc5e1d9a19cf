"""Reconciliation (issue 15): what the application says it sent, against what the ERP holds.

A `Reconciliation` is one reading of one organization's ERP for a period of posting dates,
kept for good: an auditor can show what was known when. Each record of the period and each
ERP entry carrying the organization's reference prefix becomes one `Item` with its class
and both sides' values. Words are chosen when shown; the rows hold codes and values.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Count
from django.utils.translation import gettext_lazy as _

from accounting_sync.models import FinancialRecord
from organizations.models import Organization


class Reconciliation(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", _("Waiting for a worker")
        RUNNING = "running", _("Reading the accounting system")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    class Trigger(models.TextChoices):
        MANUAL = "manual", _("Run by a person")
        NIGHTLY = "nightly", _("Nightly")

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="reconciliations"
    )
    connector = models.CharField(max_length=20)
    period_start = models.DateField()
    period_end = models.DateField()
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Live progress: ERP entries read so far, and the pages (requests) it took.
    entries_read = models.PositiveIntegerField(default=0)
    pages_read = models.PositiveIntegerField(default=0)
    # {class: count} once done.
    counts = models.JSONField(default=dict, blank=True)
    # Evidence: a sha256 over the ERP's answers as read (canonical JSON, in reading order),
    # and the heads of the organization's attempt log and admin trail chains at the start.
    erp_digest = models.CharField(max_length=64, blank=True)
    attempts_head = models.CharField(max_length=64, blank=True)
    trail_head = models.CharField(max_length=64, blank=True)
    # Why it failed: a note (integrations/notes.py) and the ERP's own words.
    failure_note = models.JSONField(default=dict, blank=True)
    failure_words = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The page's list and the overview's "latest reading" per organization.
            models.Index(fields=["organization", "-created_at", "-id"], name="recon_org_newest"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(period_start__lte=models.F("period_end")),
                name="reconciliation_period_in_order",
            ),
            # One reading at a time per organization: two would double the ERP's load and
            # could both correct the same record.
            models.UniqueConstraint(
                fields=["organization"],
                condition=models.Q(status__in=["queued", "running"]),
                name="one_reconciliation_at_a_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization} {self.period_start}..{self.period_end} {self.status}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    def tally(self) -> dict[str, int]:
        """Items per class, counted from the rows."""
        rows = self.items.values("klass").annotate(n=Count("id")).order_by()
        return {row["klass"]: row["n"] for row in rows}

    @property
    def problems(self) -> int:
        """Items that are neither matched nor explained by a pending send."""
        return sum(n for klass, n in (self.counts or {}).items() if klass in Item.Klass.problems())


class Item(models.Model):
    class Klass(models.TextChoices):
        MATCHED = "matched", _("Matched")
        NOT_POSTED = "not_posted", _("Matched, not posted yet")
        MISSING_THERE = "missing_there", _("Sent here, missing there")
        THERE_NOT_HERE = "there_not_here", _("There, not recorded as sent here")
        DIFFERENT = "different", _("Different")
        UNEXPLAINED = "unexplained", _("In the accounting system, no record explains it")
        IN_FLIGHT = "in_flight", _("Being sent right now")
        NOT_SENT = "not_sent", _("Not sent, not there")

        @classmethod
        def problems(cls) -> set[str]:
            return {cls.MISSING_THERE, cls.THERE_NOT_HERE, cls.DIFFERENT, cls.UNEXPLAINED}

    class Resolution(models.TextChoices):
        NONE = "", _("Open")
        CORRECTED = "corrected", _("Marked as sent, with the accounting system's evidence")
        RESENT = "resent", _("Sent again")
        ACCEPTED = "accepted", _("Difference accepted")

    reconciliation = models.ForeignKey(
        Reconciliation, on_delete=models.CASCADE, related_name="items"
    )
    record = models.ForeignKey(
        FinancialRecord, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reference = models.CharField(max_length=40)
    klass = models.CharField(max_length=16, choices=Klass.choices)
    # Both sides' values ({"amount", "account", "cost_center", "posting_date"} as strings),
    # the ERP's with its "erp_id" and "source"; the names of the fields that differ.
    ours = models.JSONField(default=dict, blank=True)
    theirs = models.JSONField(default=dict, blank=True)
    differences = models.JSONField(default=list, blank=True)
    resolution = models.CharField(
        max_length=10, choices=Resolution.choices, default=Resolution.NONE, blank=True
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True)

    class Meta:
        # By record, as the organization numbered them (VH-1-4 before VH-1-10); entries no
        # record explains last.
        ordering = [models.F("record_id").asc(nulls_last=True), "reference", "id"]
        indexes = [models.Index(fields=["reconciliation", "klass"], name="recon_item_class")]

    def __str__(self) -> str:
        return f"{self.reference} {self.klass}"
