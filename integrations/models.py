from __future__ import annotations

import calendar
import zoneinfo
from dataclasses import dataclass, field
from typing import ClassVar

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.events import TrailKind, record_action
from integrations import crypto
from integrations.notes import joined, words
from integrations.validators import (
    validate_company_id,
    validate_environment,
    validate_erp_url,
    validate_sign_in_url,
    validate_tenant_id,
)
from organizations.models import Organization


@dataclass(frozen=True)
class SetupStep:
    """One step of the setup checklist (issue 11): a code the templates put in words.

    Codes, in order: `credentials` (saved), `tested` (a connection test passed), `mapped`
    (every category that has arrived is mapped and a payable account is chosen),
    `enabled` (the connector is on).
    """

    code: str
    done: bool
    # `mapped` only: the categories of arrived records that have no mapping yet.
    unmapped: tuple[str, ...] = field(default=())
    payable_missing: bool = False

    CREDENTIALS: ClassVar[str] = "credentials"
    TESTED: ClassVar[str] = "tested"
    MAPPED: ClassVar[str] = "mapped"
    ENABLED: ClassVar[str] = "enabled"


@dataclass(frozen=True)
class SetupSteps:
    """The checklist, shared by the dashboard and the settings page: ready or not, and why."""

    steps: tuple[SetupStep, ...]

    def __iter__(self):
        return iter(self.steps)

    @property
    def ready(self) -> bool:
        return all(step.done for step in self.steps)

    @property
    def next_step(self) -> SetupStep | None:
        return next((step for step in self.steps if not step.done), None)

    @classmethod
    def not_started(cls) -> SetupSteps:
        """An organization with no integration at all: nothing is done."""
        return cls(
            tuple(
                SetupStep(code, False)
                for code in (
                    SetupStep.CREDENTIALS,
                    SetupStep.TESTED,
                    SetupStep.MAPPED,
                    SetupStep.ENABLED,
                )
            )
        )


class Integration(models.Model):
    """An organization's connection to its ERP. One per organization.

    Secrets live only in `credentials_ciphertext` (MultiFernet; see crypto.py)
    and never leave the server. A new integration starts disabled, and it can be
    enabled only once credentials are saved and a connection test has passed.
    """

    class Connector(models.TextChoices):
        XLEDGER = "xledger", "Xledger"
        BUSINESS_CENTRAL = "business_central", "Dynamics 365 Business Central"

    class XledgerAuth(models.TextChoices):
        TOKEN = "token", gettext_lazy("With an API token")
        OAUTH2 = "oauth2", gettext_lazy("With OAuth2 client credentials")

    # The secret fields each kind of connection needs, by name in the ciphertext.
    SECRET_FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "xledger:token": ("api_token",),
        "xledger:oauth2": ("client_secret",),
        "business_central": ("client_secret",),
    }
    # Changing any of these means the last connection test no longer proves anything.
    CONNECTION_FIELDS: ClassVar[tuple[str, ...]] = (
        "connector",
        "base_url",
        "authority_host",
        "xledger_auth",
        "token_url",
        "client_id",
        "oauth_scope",
        "tenant_id",
        "environment",
        "company_id",
        "cost_center_kind_db_id",
        "cost_center_dimension",
    )
    # Where the secrets are sent: changing any of these (or the system) makes the saved
    # secrets unusable until they are typed again, so none reaches a new address.
    ADDRESS_FIELDS: ClassVar[tuple[str, ...]] = ("base_url", "authority_host", "token_url")
    # The key, inside the ciphertext, of the address the secrets were typed for.
    _SECRETS_ADDRESS_KEY = "_for_address"

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="integration"
    )
    connector = models.CharField(max_length=20, choices=Connector.choices)
    enabled = models.BooleanField(default=False)

    # Where and how to connect (no secrets here).
    base_url = models.URLField(
        blank=True,
        validators=[validate_erp_url],
        help_text=gettext_lazy("Xledger: the GraphQL endpoint. Business Central: the API host."),
    )
    authority_host = models.URLField(
        blank=True,
        validators=[validate_sign_in_url],
        help_text=gettext_lazy("Business Central: the Entra ID (Azure AD) sign-in host."),
    )
    xledger_auth = models.CharField(
        max_length=10, choices=XledgerAuth.choices, default=XledgerAuth.TOKEN
    )
    token_url = models.URLField(blank=True, validators=[validate_erp_url])
    client_id = models.CharField(max_length=200, blank=True)
    oauth_scope = models.CharField(max_length=200, blank=True)
    # These three go into URL paths: only their documented shapes are taken.
    tenant_id = models.CharField(max_length=100, blank=True, validators=[validate_tenant_id])
    environment = models.CharField(max_length=100, blank=True, validators=[validate_environment])
    company_id = models.CharField(max_length=100, blank=True, validators=[validate_company_id])

    # Where the cost center goes, and what is credited.
    cost_center_object = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text=gettext_lazy("Xledger: which glObject (1 to 5) holds the cost center."),
    )
    cost_center_kind_db_id = models.IntegerField(
        null=True,
        blank=True,
        help_text=gettext_lazy("Xledger: the object kind whose values are cost centers."),
    )
    cost_center_dimension = models.CharField(
        max_length=20,
        blank=True,
        help_text=gettext_lazy("Business Central: the cost-center dimension code."),
    )
    journal_code = models.CharField(max_length=20, blank=True)
    payable_account = models.CharField(max_length=20, blank=True)
    # Xledger refuses an import whose subledger code names no employee or supplier, so
    # the claimant goes on the credit line only where the organization says claimants
    # exist in Xledger under their volunteer-app reference.
    xledger_claimant_subledger = models.BooleanField(
        default=False,
        help_text=gettext_lazy(
            "Xledger: claimants exist as employees or suppliers under their reference, "
            "so each claimant is sent as the subledger of the payable line."
        ),
    )

    # When to sync (S9): the schedule, "after each approval", what, and how to retry.
    class Schedule(models.TextChoices):
        MANUAL = "manual", gettext_lazy("Manual only")
        DAILY = "daily", gettext_lazy("Daily")
        WEEKLY = "weekly", gettext_lazy("Weekly")
        MONTHLY = "monthly", gettext_lazy("Monthly")
        CUSTOM = "custom", gettext_lazy("Custom (cron)")

    schedule = models.CharField(max_length=10, choices=Schedule.choices, default=Schedule.MANUAL)
    schedule_time = models.TimeField(null=True, blank=True)
    schedule_weekday = models.PositiveSmallIntegerField(  # 1 = Monday … 7 = Sunday
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(7)]
    )
    schedule_day = models.PositiveSmallIntegerField(  # of the month; past its end: the last day
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(31)]
    )
    schedule_cron = models.CharField(max_length=100, blank=True)
    sync_after_approval = models.BooleanField(default=True)
    include_reimbursements = models.BooleanField(default=True)
    include_honorariums = models.BooleanField(default=True)
    automatic_retries = models.PositiveSmallIntegerField(
        default=5, validators=[MaxValueValidator(20)]
    )
    first_retry_delay_seconds = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(86_400)]
    )

    credentials_ciphertext = models.TextField(blank=True, editable=False)
    credentials_updated_at = models.DateTimeField(null=True, blank=True, editable=False)

    # What the last passed connection test found: the lists mappings choose from.
    connection_verified_at = models.DateTimeField(null=True, blank=True, editable=False)
    erp_accounts = models.JSONField(default=list, blank=True, editable=False)
    erp_cost_centers = models.JSONField(default=list, blank=True, editable=False)
    erp_journals = models.JSONField(default=list, blank=True, editable=False)
    erp_dimensions = models.JSONField(default=list, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"{self.organization} · {self.get_connector_display()} ({state})"

    def save(self, *args, **kwargs) -> None:
        super().save(*args, **kwargs)
        Organization.touch(self.organization_id)  # the dashboard shows state and schedule

    # --- credentials ---------------------------------------------------------------

    @property
    def secret_fields(self) -> tuple[str, ...]:
        key = (
            f"xledger:{self.xledger_auth}"
            if self.connector == self.Connector.XLEDGER
            else self.connector
        )
        return self.SECRET_FIELDS.get(key, ())

    @property
    def has_credentials(self) -> bool:
        return bool(self.credentials_ciphertext)

    def secrets_address(self) -> str:
        """The system and addresses the secrets are sent to, as one comparable string."""
        return "\n".join([self.connector, *(getattr(self, f) for f in self.ADDRESS_FIELDS)])

    def credentials(self) -> dict[str, str]:
        """The saved secrets, or none when the address changed since they were typed.

        The settings form asks for them again when the address changes; this holds
        for any other way of changing it too (Django's admin, a shell). Secrets saved
        before the address was kept with them are taken as they are.
        """
        stored = crypto.decrypt(self.credentials_ciphertext)
        address = stored.pop(self._SECRETS_ADDRESS_KEY, None)
        if address is not None and address != self.secrets_address():
            return {}
        return stored

    def set_credentials(self, secrets: dict[str, str]) -> list[str]:
        """Store the given secrets (blank ones keep the saved value); return what changed.

        Call it after the address fields hold their new values: the secrets are
        bound to the address they are saved with.
        """
        current = self.credentials()
        changed = [name for name, value in secrets.items() if value and current.get(name) != value]
        bound = crypto.decrypt(self.credentials_ciphertext).get(self._SECRETS_ADDRESS_KEY)
        if changed or (current and bound != self.secrets_address()):
            current.update({name: secrets[name] for name in changed})
            # Only the fields the current kind of connection uses are kept.
            kept = {name: current[name] for name in self.secret_fields if current.get(name)}
            kept[self._SECRETS_ADDRESS_KEY] = self.secrets_address()
            self.credentials_ciphertext = crypto.encrypt(kept)
            self.credentials_updated_at = timezone.now()
        return changed

    def missing_secrets(self) -> list[str]:
        saved = self.credentials() if self.has_credentials else {}
        return [name for name in self.secret_fields if not saved.get(name)]

    # --- connection test and enabling -----------------------------------------------

    def forget_connection_test(self) -> None:
        """The connection changed: what the last test found may no longer hold."""
        self.connection_verified_at = None
        self.enabled = False

    def record_connection_test(self, report) -> None:
        self.connection_verified_at = timezone.now()
        self.erp_accounts = [{"code": a.code, "name": a.name} for a in report.accounts]
        self.erp_cost_centers = [{"code": c.code, "name": c.name} for c in report.cost_centers]
        self.erp_journals = [{"code": j.code, "name": j.name} for j in report.journals]
        self.erp_dimensions = [
            {"code": d.code, "name": d.name, "id": d.id} for d in report.dimensions
        ]

    def why_not_enable(self) -> str | None:
        """The reason the connector cannot be enabled now, in words; None if it can (S2.4).

        Enabled without a payable account or any mapping, a sync would skip every record
        and send nothing (issue 11), so those come first too.
        """
        if self.missing_secrets():
            return _("Save the credentials first.")
        if self.connection_verified_at is None:
            return _("Run Test Connection and make it pass first.")
        if not self.payable_account:
            return _("Choose the payable account on the mappings page first.")
        if not self.mappings.exists():
            return _("Map at least one expense category on the mappings page first.")
        return None

    def unmapped_categories(self) -> list[str]:
        """Categories of records that have arrived and have no mapping, in order."""
        arrived = set(self.organization.records.values_list("category", flat=True).distinct())
        mapped = set(self.mappings.values_list("category", flat=True))
        return sorted(arrived - mapped)

    def setup_steps(self) -> SetupSteps:
        """The setup checklist (issue 11): what is done and what is next, in order."""
        credentials = self.has_credentials and not self.missing_secrets()
        tested = credentials and self.connection_verified_at is not None
        unmapped = tuple(self.unmapped_categories()) if self.pk else ()
        payable_missing = not self.payable_account
        any_mapping = bool(self.pk) and self.mappings.exists()
        mapped = tested and not unmapped and not payable_missing and any_mapping
        return SetupSteps(
            (
                SetupStep(SetupStep.CREDENTIALS, credentials),
                SetupStep(SetupStep.TESTED, tested),
                SetupStep(SetupStep.MAPPED, mapped, unmapped, payable_missing),
                SetupStep(SetupStep.ENABLED, self.enabled),
            )
        )

    def set_enabled(self, enabled: bool, actor) -> str | None:
        """Turn the connector on or off (S2.1); say why not if it cannot be enabled (S2.4)."""

        if enabled and (reason := self.why_not_enable()):
            return reason
        if self.enabled != enabled:
            self.enabled = enabled
            self.save(update_fields=["enabled", "updated_at"])
            kind = TrailKind.CONNECTOR_ENABLED if enabled else TrailKind.CONNECTOR_DISABLED
            record_action(actor, self.organization, kind, connector=self.connector)
        return None

    def is_schedule_day(self, moment) -> bool:
        """Monthly on the 29th-31st means the last day of shorter months: beat fires on
        each of the 28th-31st and only the right one of them runs."""
        if self.schedule != self.Schedule.MONTHLY or (self.schedule_day or 0) <= 28:
            return True
        local = moment.astimezone(zoneinfo.ZoneInfo(self.organization.time_zone)).date()
        last = calendar.monthrange(local.year, local.month)[1]
        assert self.schedule_day is not None  # above 28, checked first
        return local.day == min(self.schedule_day, last)

    def included_kinds(self) -> list[str]:
        kinds = []
        if self.include_reimbursements:
            kinds.append("reimbursement")
        if self.include_honorariums:
            kinds.append("honorarium")
        return kinds

    def build_connector(self):
        from integrations.connectors import build_connector

        return build_connector(self)


class CategoryMapping(models.Model):
    """Where an expense category is posted: an account and a cost center the ERP has (S1.5)."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="mappings")
    category = models.CharField(max_length=64)
    account_code = models.CharField(max_length=20)
    cost_center_code = models.CharField(max_length=20)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["category"]
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "category"], name="one_mapping_per_category"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.category} → {self.account_code} / {self.cost_center_code}"


class CategoryName(models.Model):
    """What an organization calls an expense category on its pages (issue 11).

    A table of its own rather than a field of `CategoryMapping`: a category that waits
    for a mapping can be named too, and a name outlives a mapping removed. Records,
    mappings and the audit exports keep carrying the slug; only pages show the name.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="category_names"
    )
    category = models.CharField(max_length=64)
    name = models.CharField(max_length=64)

    class Meta:
        ordering = ["category"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "category"], name="one_name_per_category"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.category}: {self.name}"


class CategoryLabels:
    """Category slug → what a page shows: the organization's name for it, else the slug.

    Read once per page (or per run worded), so a list of records costs one query.
    """

    def __init__(self, names: dict[str, str] | None = None) -> None:
        self.names = names or {}

    @classmethod
    def of(cls, organization: Organization | int | None) -> CategoryLabels:
        if organization is None:
            return cls()
        pk = organization if isinstance(organization, int) else organization.pk
        return cls(
            dict(CategoryName.objects.filter(organization_id=pk).values_list("category", "name"))
        )

    def __getitem__(self, category: str) -> str:
        return self.names.get(category) or category

    def with_slug(self, category: str) -> str:
        """For an auditor: the name and the raw value records carry, "Travel (travel)"."""
        name = self.names.get(category)
        return f"{name} ({category})" if name and name != category else category


class ConnectionTest(models.Model):
    """One press of Test Connection, run in the background by a worker (S1.2, S1.3, S1.6)."""

    class Status(models.TextChoices):
        QUEUED = "queued", gettext_lazy("Waiting for a worker")
        RUNNING = "running", gettext_lazy("Testing")
        SUCCEEDED = "succeeded", gettext_lazy("Connected")
        FAILED = "failed", gettext_lazy("Failed")

    integration = models.ForeignKey(
        Integration, on_delete=models.CASCADE, related_name="connection_tests"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    message = models.TextField(blank=True)  # the ERP's own words, verbatim
    # Our own words on what the test found or why it failed, as codes (notes.py).
    notes = models.JSONField(default=list, blank=True)
    account_count = models.PositiveIntegerField(default=0)
    cost_center_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.integration} test {self.status}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)

    @property
    def found_text(self) -> str:
        """What a passed test found out about the ERP (company, object kind), in words."""
        return "; ".join(words(stored) for stored in self.notes) or self.message

    @property
    def failure_text(self) -> str:
        """Why the test failed, in the reader's language, with the ERP's words beside.

        A test stored before the notes kept an English sentence: translated where it is one
        of ours (gettext_noop), else shown as stored.
        """
        if not self.notes:
            return _(self.message) if self.message else ""
        said = self.message and f"({self.message})"
        return joined(*(words(stored) for stored in self.notes), said)


class RateWindow(models.Model):
    """One ERP credential's request window, when there is no Redis to keep it
    (integrations/pacing.py): this row is locked while a slot is taken."""

    key = models.CharField(max_length=100, unique=True)

    def __str__(self) -> str:
        return self.key


class RateSlot(models.Model):
    """A request admitted to a window: when it went (seconds since the epoch)."""

    window = models.ForeignKey(RateWindow, on_delete=models.CASCADE, related_name="slots")
    at = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["window", "at"], name="rateslot_window_at")]

    def __str__(self) -> str:
        return f"{self.window_id} at {self.at}"
