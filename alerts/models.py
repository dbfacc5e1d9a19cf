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

from datetime import timedelta
from typing import ClassVar

from django.conf import settings
from django.db import models, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from accounting_sync.models import FinancialRecord, SyncRun
from integrations.notes import joined, words
from organizations.models import Membership, Organization


class Alert(models.Model):
    class Kind(models.TextChoices):
        RECORD_FAILING = "record_failing", _("Record keeps failing")  # S7.1
        MANY_ERRORS = "many_errors", _("Many sync errors")  # S7.2
        PENDING_TOO_LONG = "pending_too_long", _("Records waiting")  # S7.3
        SCHEDULED_SYNC_FAILED = "scheduled_sync_failed", _("Scheduled sync failed")  # S9.4
        AUTHENTICATION_FAILED = "authentication_failed", _("Credentials refused")  # S7.6
        # Issue 15: a reconciliation found what is not "matched".
        RECONCILIATION_FINDINGS = "reconciliation_findings", _("Reconciliation findings")

    # The page that shows each kind of problem, and what its link says.
    LINKS: ClassVar[dict[str, tuple[str, object]]] = {
        Kind.RECORD_FAILING: ("failed_records", _("Open the failed records")),
        Kind.MANY_ERRORS: ("failed_records", _("Open the failed records")),
        Kind.PENDING_TOO_LONG: ("organization_home", _("Open the status dashboard")),
        Kind.SCHEDULED_SYNC_FAILED: ("sync_history", _("Open the sync history")),
        Kind.AUTHENTICATION_FAILED: ("integration_settings", _("Open the connection settings")),
        Kind.RECONCILIATION_FINDINGS: ("reconciliation", _("Open the reconciliation")),
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
    def resolve(cls, alerts: QuerySet[Alert], when) -> list[int]:
        """Close these alerts, and take them out of their recipients' unread counts; the
        ids of those closed now."""
        with transaction.atomic():
            ids = list(alerts.filter(resolved_at__isnull=True).values_list("pk", flat=True))
            if not ids:
                return []
            cls.objects.filter(pk__in=ids, resolved_at__isnull=True).update(resolved_at=when)
            AlertRecipient.objects.filter(alert_id__in=ids).update(alert_open=False)
        return ids

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
                "error": self._error(),
            }
        if self.kind == self.Kind.MANY_ERRORS:
            return gettext(
                "%(count)s sync attempts failed in the last 24 hours (more than %(limit)s). "
                "Last error: %(error)s"
            ) % {"count": d.get("count"), "limit": d.get("limit"), "error": self._error()}
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
            ) % {"retries": d.get("retries"), "error": self._error() or self._run_outcome()}
        if self.kind == self.Kind.RECONCILIATION_FINDINGS:
            return self._findings()
        return gettext(
            "The accounting system refused the credentials; nothing is sent until they are "
            "fixed: %(error)s"
        ) % {"error": self._error()}

    def _findings(self) -> str:
        d = self.details
        count = d.get("count", 0)
        return ngettext(
            "The reconciliation of %(start)s to %(end)s found %(count)s record or entry that "
            "the application and the accounting system do not agree on.",
            "The reconciliation of %(start)s to %(end)s found %(count)s records or entries "
            "that the application and the accounting system do not agree on.",
            count,
        ) % {"count": count, "start": d.get("start", ""), "end": d.get("end", "")}

    def _error(self) -> str:
        """The failure: our note on it in the reader's language, the ERP's words beside."""
        return joined(words(self.details.get("note")), self.details.get("error", ""))

    def _run_outcome(self) -> str:
        """The outcome of the run the alert is about, worded for its reader; read only when
        the ERP gave no words of its own (a run whose sends all ended uncertain)."""
        run_id = self.details.get("run")
        run = SyncRun.objects.filter(pk=run_id).first() if run_id else None
        return run.outcome_text() if run is not None else ""

    @property
    def summary(self) -> str:
        """The alert in a sentence without the ERP's error text, for e-mail: an ERP's
        message may quote a claimant's name or account, and an e-mail leaves our hands.
        The record reference is enough to find it in the app."""
        d = self.details
        if self.kind == self.Kind.RECORD_FAILING:
            return gettext(
                "%(record_type)s %(reference)s failed %(attempts)s attempts in a row."
            ) % {
                "record_type": self._record_type(d.get("record_kind")),
                "reference": d.get("reference", ""),
                "attempts": d.get("attempts", 3),
            }
        if self.kind == self.Kind.MANY_ERRORS:
            return gettext(
                "%(count)s sync attempts failed in the last 24 hours (more than %(limit)s)."
            ) % {"count": d.get("count"), "limit": d.get("limit")}
        if self.kind == self.Kind.SCHEDULED_SYNC_FAILED:
            return gettext(
                "The scheduled sync could not reach the accounting system, also after "
                "%(retries)s retries."
            ) % {"retries": d.get("retries")}
        if self.kind == self.Kind.AUTHENTICATION_FAILED:
            return gettext(
                "The accounting system refused the credentials; nothing is sent until they "
                "are fixed."
            )
        return self.message  # records waiting, reconciliation findings: counts only

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

    def still_addressed(self) -> AlertRecipientQuerySet:
        """`for_user`'s rule for many people at once: active, and a global admin or still
        an admin of the alert's organization (what an e-mail is sent by)."""
        return self.filter(user__is_active=True).filter(
            Q(user__is_superuser=True)
            | Exists(
                Membership.objects.filter(
                    user_id=OuterRef("user_id"),
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


class AlertPreference(models.Model):
    """How one person hears about alerts besides the app (issue 16 item 5).

    Every alert is shown in the app; these say which kinds also come by e-mail, and
    whether at once (one e-mail when it opens, one when it resolves) or in one daily
    digest. A person without a row gets no e-mail: nobody is mailed by surprise.
    `language` is the one they last chose in the header (the app itself keeps it in a
    cookie, which a Celery worker cannot read); empty means the site's default.
    """

    class Delivery(models.TextChoices):
        AT_ONCE = "at_once", _("At once")
        DAILY = "daily", _("Once a day")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_preference"
    )
    # Alert.Kind values: the kinds that also come by e-mail.
    email_kinds = models.JSONField(default=list, blank=True)
    delivery = models.CharField(max_length=10, choices=Delivery.choices, default=Delivery.AT_ONCE)
    language = models.CharField(max_length=10, choices=settings.LANGUAGES, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"alert e-mails of user {self.user_id}"

    @classmethod
    def of(cls, user) -> AlertPreference:
        """The person's preferences; unsaved defaults (in-app only) if they never chose."""
        try:
            return cls.objects.get(user=user)
        except cls.DoesNotExist:
            return cls(user=user)

    @classmethod
    def remember_language(cls, user, language: str) -> None:
        """The language the person chose in the header: their e-mails are written in it."""
        if language in dict(settings.LANGUAGES):
            cls.objects.update_or_create(user=user, defaults={"language": language})

    @property
    def email_language(self) -> str:
        return self.language or settings.LANGUAGE_CODE

    def wants_email(self, kind: str, delivery: str) -> bool:
        return kind in self.email_kinds and self.delivery == delivery


class AlertEmail(models.Model):
    """One e-mail to one person about one alert opening, its resolving, or one day's digest.

    The row is the e-mail's claim and its receipt. The unique constraints make "one e-mail
    per alert opening, one when it resolves, one digest a day" a fact of the database, so
    a task delivered twice (Celery's acks_late redelivers after a worker dies) finds the
    row and sends nothing once `sent_at` is set. While a try is under way `claimed_at`
    holds it for CLAIM_SECONDS: a copy of the task arriving meanwhile waits, and only a try
    that died with its worker is taken over once that time has passed.
    """

    # Longer than the slowest try can take: EMAIL_TIMEOUT for each of the SMTP steps.
    CLAIM_SECONDS = 600

    class Kind(models.TextChoices):
        OPENED = "opened", _("Alert opened")
        RESOLVED = "resolved", _("Alert resolved")
        DIGEST = "digest", _("Daily digest")

    class Claim(models.TextChoices):
        TAKEN = "taken"  # this try sends it
        SENT = "sent"  # sent already: nothing to do
        BUSY = "busy"  # another try holds it now

    alert = models.ForeignKey(
        Alert, on_delete=models.CASCADE, null=True, blank=True, related_name="emails"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # The local day whose digest this is (digests only).
    digest_day = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    tries = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "user", "kind"],
                condition=Q(alert__isnull=False),
                name="one_email_per_alert_change_and_person",
            ),
            models.UniqueConstraint(
                fields=["user", "digest_day"],
                condition=Q(kind="digest"),
                name="one_digest_per_person_and_day",
            ),
            models.CheckConstraint(
                condition=(
                    Q(kind="digest", alert__isnull=True, digest_day__isnull=False)
                    | (
                        Q(kind__in=["opened", "resolved"])
                        & Q(alert__isnull=False, digest_day__isnull=True)
                    )
                ),
                name="alert_email_is_about_an_alert_or_a_day",
            ),
        ]

    def __str__(self) -> str:
        about = f"alert {self.alert_id}" if self.alert_id else f"digest {self.digest_day}"
        return f"{self.kind} e-mail, {about} → user {self.user_id}"

    @classmethod
    def claim(cls, user_id: int, kind: str, *, alert_id=None, digest_day=None, now=None):
        """Take the right to send this e-mail, or learn that it was sent or is being sent.

        Returns the Claim and the row. The insert and the conditional UPDATE each commit
        on their own, so two workers cannot both hold it.
        """
        now = now or timezone.now()
        row, _created = cls.objects.get_or_create(
            user_id=user_id, kind=kind, alert_id=alert_id, digest_day=digest_day
        )
        stale = now - timedelta(seconds=cls.CLAIM_SECONDS)
        taken = (
            cls.objects.filter(pk=row.pk, sent_at__isnull=True)
            .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=stale))
            .update(claimed_at=now, tries=F("tries") + 1)
        )
        row.refresh_from_db()
        if taken:
            return cls.Claim.TAKEN, row
        return (cls.Claim.SENT if row.sent_at else cls.Claim.BUSY), row

    def release(self) -> None:
        """The try failed before the server took the e-mail: the next try may take it."""
        AlertEmail.objects.filter(pk=self.pk, sent_at__isnull=True).update(claimed_at=None)

    def mark_sent(self) -> None:
        self.sent_at = timezone.now()
        AlertEmail.objects.filter(pk=self.pk).update(sent_at=self.sent_at, claimed_at=None)

    def busy_for(self, now=None) -> int:
        """Seconds until another try's claim may be taken over."""
        if self.claimed_at is None:
            return 0
        held = ((now or timezone.now()) - self.claimed_at).total_seconds()
        return max(1, int(self.CLAIM_SECONDS - held))
