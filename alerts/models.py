"""In-app alerts for sync failures (S7, S9.4).

An `Alert` is one ongoing problem of one organization. It is opened by a rule
(alerts/rules.py) and closed by the same rule once the condition clears (S7.4);
a partial unique index allows one open alert per (organization, kind, key), so a
rule that runs twice, or two workers running it at once, open it once.

Who hears about it is decided when it opens: one `AlertRecipient` row per person,
which also holds that person's read and dismissed state (S7.5). People who become
admins later see the next alert, not the ones already open. Each such row repeats its
alert's organization and whether it is open, so that the header badge, asked every two
seconds by every open tab, counts one person's unread alerts from one partial index
without joining the alerts.

The words are not stored: `details` keeps the facts (record type, reference, error,
counts) and `message` puts them into a sentence in the reader's language when shown.
The link is derived from the kind and the organization, so it follows a renamed slug.
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from accounting_sync.models import FinancialRecord, SyncRun
from organizations.models import Membership, Organization


class Alert(models.Model):
    class Kind(models.TextChoices):
        RECORD_FAILING = "record_failing", _("Record keeps failing")  # S7.1
        MANY_ERRORS = "many_errors", _("Many sync errors")  # S7.2
        PENDING_TOO_LONG = "pending_too_long", _("Records waiting")  # S7.3
        SCHEDULED_SYNC_FAILED = "scheduled_sync_failed", _("Scheduled sync failed")  # S9.4
        AUTHENTICATION_FAILED = "authentication_failed", _("Credentials refused")  # S7.6

    # The page that shows each kind of problem, and what its link says.
    LINKS: ClassVar[dict[str, tuple[str, object]]] = {
        Kind.RECORD_FAILING: ("failed_records", _("Open the failed records")),
        Kind.MANY_ERRORS: ("failed_records", _("Open the failed records")),
        Kind.PENDING_TOO_LONG: ("organization_home", _("Open the status dashboard")),
        Kind.SCHEDULED_SYNC_FAILED: ("sync_history", _("Open the sync history")),
        Kind.AUTHENTICATION_FAILED: ("integration_settings", _("Open the connection settings")),
    }

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=30, choices=Kind.choices)
    # Which problem of this kind: the record's id for S7.1, empty for organization-wide ones.
    key = models.CharField(max_length=100, blank=True)
    details = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    recipients = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="AlertRecipient", related_name="+"
    )

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            # One open alert per ongoing problem, decided by the database: two workers
            # running the same rule at once cannot both insert (S7.4).
            models.UniqueConstraint(
                fields=["organization", "kind", "key"],
                condition=Q(resolved_at__isnull=True),
                name="one_open_alert_per_problem",
            ),
        ]

    def __str__(self) -> str:
        state = "open" if self.is_open else "resolved"
        return f"{self.organization_id} {self.kind} {self.key} ({state})"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    @classmethod
    def resolve(cls, alerts: QuerySet[Alert], when) -> int:
        """Close these alerts, and take them out of their recipients' unread counts."""
        with transaction.atomic():
            ids = list(alerts.filter(resolved_at__isnull=True).values_list("pk", flat=True))
            if not ids:
                return 0
            cls.objects.filter(pk__in=ids, resolved_at__isnull=True).update(resolved_at=when)
            AlertRecipient.objects.filter(alert_id__in=ids).update(alert_open=False)
        return len(ids)

    @property
    def link(self) -> str:
        name, _label = self.LINKS[self.kind]
        return reverse(name, kwargs={"slug": self.organization.slug})

    @property
    def link_label(self) -> str:
        return str(self.LINKS[self.kind][1])

    @property
    def message(self) -> str:
        """The alert in a sentence, in the language of whoever reads it."""
        d = self.details
        if self.kind == self.Kind.RECORD_FAILING:
            return gettext(
                "%(record_type)s %(reference)s failed %(attempts)s attempts in a row. "
                "Last error: %(error)s"
            ) % {
                "record_type": self._record_type(d.get("record_kind")),
                "reference": d.get("reference", ""),
                "attempts": d.get("attempts", 3),
                "error": d.get("error", ""),
            }
        if self.kind == self.Kind.MANY_ERRORS:
            return gettext(
                "%(count)s sync attempts failed in the last 24 hours (more than %(limit)s). "
                "Last error: %(error)s"
            ) % {"count": d.get("count"), "limit": d.get("limit"), "error": d.get("error", "")}
        if self.kind == self.Kind.PENDING_TOO_LONG:
            count = d.get("count", 0)
            return ngettext(
                "%(count)s approved record has waited more than %(hours)s hours to be sent, "
                "although the connector is enabled.",
                "%(count)s approved records have waited more than %(hours)s hours to be sent, "
                "although the connector is enabled.",
                count,
            ) % {"count": count, "hours": d.get("hours")}
        if self.kind == self.Kind.SCHEDULED_SYNC_FAILED:
            return gettext(
                "The scheduled sync could not reach the accounting system, also after "
                "%(retries)s retries: %(error)s"
            ) % {"retries": d.get("retries"), "error": d.get("error") or self._run_outcome()}
        return gettext(
            "The accounting system refused the credentials; nothing is sent until they are "
            "fixed: %(error)s"
        ) % {"error": d.get("error", "")}

    def _run_outcome(self) -> str:
        """The outcome of the run the alert is about, worded for its reader; read only when
        the ERP gave no words of its own (a run whose sends all ended uncertain)."""
        run_id = self.details.get("run")
        run = SyncRun.objects.filter(pk=run_id).first() if run_id else None
        return run.outcome_text() if run is not None else ""

    @staticmethod
    def _record_type(kind: str | None) -> str:
        if kind in FinancialRecord.Kind.values:
            return str(FinancialRecord.Kind(kind).label)
        return gettext("Record")


class AlertRecipientQuerySet(models.QuerySet["AlertRecipient"]):
    def for_user(self, user) -> AlertRecipientQuerySet:
        """The alerts this person may see now: addressed to them, and, unless they are a
        global admin, only of organizations where they are still an admin."""
        if not (user.is_authenticated and user.is_active):
            return self.none()
        mine = self.filter(user=user)
        if user.is_superuser:
            return mine
        return mine.filter(
            Exists(
                Membership.objects.filter(
                    user=user,
                    organization_id=OuterRef("organization_id"),
                    role=Membership.Role.ADMIN,
                )
            )
        )

    def unread(self) -> AlertRecipientQuerySet:
        """What the header badge counts: open alerts not yet read or dismissed."""
        return self.filter(alert_open=True, read_at__isnull=True, dismissed_at__isnull=True)

    def shown(self) -> AlertRecipientQuerySet:
        """The alerts page: not dismissed; open ones first, then the newest."""
        return (
            self.filter(dismissed_at__isnull=True)
            .select_related("alert__organization")
            .order_by("-alert_open", "-alert__opened_at", "-alert_id")
        )


class AlertRecipient(models.Model):
    """One person an alert is addressed to, and whether they have read or dismissed it."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # Copied from the alert (see the module's docstring): kept in step by `Alert.resolve`.
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    alert_open = models.BooleanField(default=True)
    read_at = models.DateTimeField(null=True, blank=True)
    dismissed_at = models.DateTimeField(null=True, blank=True)

    objects = AlertRecipientQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["alert", "user"], name="one_delivery_per_person"),
        ]
        indexes = [
            # The header badge on every page counts these: only the unread rows of open
            # alerts are indexed, with the organization for the admin check (index-only).
            models.Index(
                fields=["user", "organization"],
                condition=Q(alert_open=True, read_at__isnull=True, dismissed_at__isnull=True),
                name="alert_unread_open_by_user",
            ),
        ]

    def __str__(self) -> str:
        return f"alert {self.alert_id} → user {self.user_id}"

    @property
    def is_read(self) -> bool:
        return self.read_at is not None

    @property
    def is_unread(self) -> bool:
        """What the list marks "Unread": exactly what `unread()`, the header badge, counts.
        An alert that resolved itself before it was read is no longer news (`resolve`)."""
        return self.alert_open and self.read_at is None and self.dismissed_at is None

    def mark_read(self) -> None:
        if self.read_at is None:
            self.read_at = timezone.now()
            AlertRecipient.objects.filter(pk=self.pk, read_at__isnull=True).update(
                read_at=self.read_at
            )

    def dismiss(self) -> None:
        now = timezone.now()
        self.dismissed_at = now
        self.read_at = self.read_at or now
        AlertRecipient.objects.filter(pk=self.pk).update(dismissed_at=now, read_at=self.read_at)
