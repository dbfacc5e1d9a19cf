from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.chain import (
    GENESIS,
    Break,
    ChainedModel,
    Walk,
    content_of,
    digest,
    hashed_fields,
    walk,
)
from core.events import TrailKind

if TYPE_CHECKING:
    from accounting_sync.models import SyncLog


class AdminAction(ChainedModel):
    """Who changed what, when: key rotations now; credentials, mappings, toggles later.

    Values of secrets are never put in `detail`, only the fact of a change.
    """

    # The kinds are named where the actions happen, below this app (core/events.py).
    Kind = TrailKind

    organization = models.ForeignKey(
        "organizations.Organization",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="admin_actions",
    )
    # Never rewritten when a user is deleted (the row is immutable): the id stays, and
    # actor_username still names who it was.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    # Kept beside the foreign key so the trail still names a user who was deleted.
    actor_username = models.CharField(max_length=150, blank=True)
    kind = models.CharField(max_length=40, choices=Kind.choices)
    detail = models.JSONField(default=dict, blank=True)
    # Platform actions (no organization) form a chain of their own.
    CHAIN_FIELDS = (
        "organization_id",
        "actor_id",
        "actor_username",
        "kind",
        "detail",
        "created_at",
    )

    # A retry is a sync asked for by a person too (accounting_sync.triggers.request_run):
    # the trail names it apart, and its filter can pick it out.
    RETRY_REQUESTED = "retry_requested"

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "-id"], name="adminaction_org_newest")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_username} {self.kind}"

    @property
    def is_retry(self) -> bool:
        return self.kind == self.Kind.SYNC_TRIGGERED and self.detail.get("trigger") == "retry"

    @property
    def what(self) -> str:
        """What happened, in words for the trail."""
        if self.is_retry:
            return str(_("Retry requested"))
        return self.get_kind_display()

    def detail_items(self) -> list[DetailItem]:
        """The details as label and readable text; nested values as indented JSON."""
        return [DetailItem.of(key, value) for key, value in sorted(self.detail.items())]

    @classmethod
    def record(cls, actor, organization, kind: str, **detail: Any) -> AdminAction:
        return cls.objects.create(
            organization=organization,
            actor=actor if actor is not None and actor.is_authenticated else None,
            actor_username=getattr(actor, "username", "") or "",
            kind=kind,
            detail=detail,
        )


# The details' keys as the trail names them; an unknown key is shown as it is.
DETAIL_LABELS = {
    "change": _("Change"),
    "comment": _("Comment"),
    "changes": _("Changes"),
    "connector": _("Accounting system"),
    "created": _("First setup"),
    "fields": _("Fields changed"),
    "filter": _("Filter"),
    "format": _("Format"),
    "ip_address": _("Address"),
    "names": _("Category names"),
    "period": _("Period"),
    "prefix": _("Key prefix"),
    "reconciliation": _("Reconciliation number"),
    "previous_role": _("Previous role"),
    "records": _("Records chosen"),
    "reference": _("Reference"),
    "required": _("Required of the organization's admins"),
    "role": _("Role"),
    "rows": _("Rows"),
    "run": _("Sync number"),
    "scope": _("Locked"),
    "trigger": _("Trigger"),
    "user": _("Person"),
    "username": _("Username"),
    "via": _("Done through"),
}


@dataclass(frozen=True)
class DetailItem:
    label: str
    text: str
    block: bool = False  # shown preformatted: a structure, not a phrase

    @classmethod
    def of(cls, key: str, value: Any) -> DetailItem:
        label = str(DETAIL_LABELS.get(key, key.replace("_", " ")))
        if value is None or value in ("", [], {}):
            return cls(label, "—")
        if isinstance(value, bool):
            return cls(label, str(_("yes") if value else _("no")))
        if key in CHOICE_DETAILS and isinstance(value, str):
            return cls(label, _choice(CHOICE_DETAILS[key](), value))
        if key == "fields" and isinstance(value, list):
            return cls(label, ", ".join(field_label(str(name)) for name in value))
        if isinstance(value, list) and all(_scalar(item) for item in value):
            return cls(label, ", ".join(str(item) for item in value))
        if isinstance(value, dict) and all(_scalar(item) for item in value.values()):
            return cls(label, "; ".join(f"{k}: {v}" for k, v in value.items()))
        if isinstance(value, dict) and all(_is_change(item) for item in value.values()):
            lines = [
                f"{field_label(k)}: {_shown(k, v['from'])} → {_shown(k, v['to'])}"
                for k, v in value.items()
            ]
            return cls(label, "\n".join(lines), block=True)
        if isinstance(value, list | dict):
            return cls(label, json.dumps(value, indent=2, ensure_ascii=False), block=True)
        return cls(label, str(value))


# The stored detail keeps codes ("xledger", "daily", True); the trail shows them in the
# reader's language. Looked up when shown: the apps below are imported only then.
def _connectors() -> list[tuple[str, Any]]:
    from integrations.models import Integration

    return list(Integration.Connector.choices)


def _triggers() -> list[tuple[str, Any]]:
    from accounting_sync.models import SyncRun

    return list(SyncRun.Trigger.choices)


def _roles() -> list[tuple[str, Any]]:
    from organizations.models import Membership

    return list(Membership.Role.choices)


CHOICE_DETAILS = {
    "connector": _connectors,
    "trigger": _triggers,
    "role": _roles,
    "previous_role": _roles,
}


def _choice(choices: list[tuple[str, Any]], value: str) -> str:
    return next((str(label) for code, label in choices if code == value), value)


def _integration_labels() -> dict[str, Any]:
    """Each integration field's name as its form labels it, else its verbose name."""
    from integrations.forms import IntegrationSettingsForm, ScheduleForm
    from integrations.models import Integration

    labels: dict[str, Any] = {
        field.name: field.verbose_name
        for field in Integration._meta.get_fields()
        if hasattr(field, "verbose_name")
    }
    labels.update(IntegrationSettingsForm.Meta.labels)
    labels.update(ScheduleForm.Meta.labels)
    labels.update(FIELD_LABELS)
    return labels


# Fields whose label is not in a form's Meta (declared on the form, or said another way there).
FIELD_LABELS = {
    "api_token": _("API token"),
    "client_secret": _("Client secret"),
    "client_id": _("Client ID"),
    "base_url": _("Address of the accounting system"),
    "schedule_weekday": _("Day of the week"),
    "payable_account": _("Payable account (credited)"),
}


def field_label(name: str) -> str:
    label = _integration_labels().get(name)
    return str(label) if label else name.replace("_", " ")


def _shown(name: str, value: Any) -> str:
    """A changed field's value as the reader knows it: a choice's label, Yes/No, the day."""
    if isinstance(value, bool):
        return str(_("Yes") if value else _("No"))
    if value in (None, "", []):
        return "—"
    from integrations.models import Integration

    try:
        field = Integration._meta.get_field(name)
    except Exception:  # FieldDoesNotExist: a key of another kind of change
        return _pair(value)
    if name == "schedule_weekday" and isinstance(value, int):
        from integrations import schedule

        return _choice([(str(k), v) for k, v in schedule.weekday_choices()], str(value))
    choices = getattr(field, "choices", None)
    if choices and isinstance(value, str):
        return _choice(list(choices), value)
    return _pair(value)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _is_change(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"from", "to"}


def _pair(value: Any) -> str:
    if not value:
        return "—"
    return " / ".join(str(item) for item in value) if isinstance(value, list) else str(value)


class ChainCheckpoint(models.Model):
    """The last verification of one organization's hash chain (S8.6).

    Walking a million rows on every page load would be too slow, so a worker walks
    the chain (the beat task, the verify command, or Verify now) and keeps here how
    far it got, when, and the first broken row. The next run goes on from the last
    verified row; a whole walk from the first row runs nightly and on request, because
    only a whole walk finds a row changed before the last checkpoint.
    """

    class Chain(models.TextChoices):
        SYNC_LOG = "sync_log", _("Sync audit log")
        ADMIN_TRAIL = "admin_trail", _("Administrative trail")

    # A requested verification that never finished (its worker died) may be asked again.
    REQUEST_EXPIRES = timedelta(hours=1)

    organization = models.ForeignKey(
        "organizations.Organization",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    chain = models.CharField(max_length=20, choices=Chain.choices)
    # Every row from the first up to this one was found intact.
    last_row_id = models.PositiveBigIntegerField(default=0)
    last_row_hash = models.CharField(max_length=64, default=GENESIS)
    rows_verified = models.PositiveBigIntegerField(default=0)
    broken_row_id = models.PositiveBigIntegerField(null=True, blank=True)
    broken_kind = models.CharField(max_length=10, blank=True)  # see chain.Break
    verified_at = models.DateTimeField(null=True, blank=True)  # the last verification's end
    walked_at = models.DateTimeField(null=True, blank=True)  # the last whole walk's end
    # Verify now: when it was asked for, and how far it has got while it runs.
    requested_at = models.DateTimeField(null=True, blank=True)
    progress = models.PositiveBigIntegerField(default=0)
    progress_total = models.PositiveBigIntegerField(default=0)
    # Goes up with every change: the badge's live part compares it and stops there.
    version = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "chain"], name="one_checkpoint"),
            models.UniqueConstraint(
                fields=["chain"],
                condition=models.Q(organization__isnull=True),
                name="one_platform_checkpoint",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization_id or 'platform'} {self.chain} up to {self.last_row_id}"

    @classmethod
    def for_chain(cls, organization_id: int | None, chain: str) -> ChainCheckpoint:
        try:
            with transaction.atomic():
                checkpoint, _created = cls.objects.get_or_create(
                    organization_id=organization_id, chain=chain
                )
        except IntegrityError:  # made at the same moment by another worker
            checkpoint = cls.objects.get(organization_id=organization_id, chain=chain)
        return checkpoint

    @classmethod
    def shown(cls, organization_id: int, chain: str) -> ChainCheckpoint:
        """For a page: the stored checkpoint, or an unsaved blank one (never verified)."""
        found = cls.objects.filter(organization_id=organization_id, chain=chain).first()
        return found or cls(organization_id=organization_id, chain=chain)

    @property
    def model(self) -> type[SyncLog] | type[AdminAction]:
        from accounting_sync.models import SyncLog

        return SyncLog if self.chain == self.Chain.SYNC_LOG else AdminAction

    @property
    def is_broken(self) -> bool:
        return self.broken_row_id is not None

    @property
    def is_requested(self) -> bool:
        return (
            self.requested_at is not None
            and timezone.now() - self.requested_at < self.REQUEST_EXPIRES
        )

    @property
    def found_break(self) -> Break | None:
        if self.broken_row_id is None:  # not is_broken
            return None
        return Break(self.broken_row_id, self.broken_kind)

    @property
    def broken_reason(self) -> str:
        if self.broken_kind == "removed":
            return str(_("a row before it was removed or changed"))
        return str(_("its content was changed after it was written"))

    # --- verifying ------------------------------------------------------------------

    def request(self) -> bool:
        """Verify now was pressed: mark it asked for; False if it already is."""
        if self.is_requested:
            return False
        type(self).objects.filter(pk=self.pk).update(
            requested_at=timezone.now(), progress=0, progress_total=0, version=F("version") + 1
        )
        self.refresh_from_db()
        return True

    def verify(self, *, whole: bool = False, requested: bool = False) -> Walk:
        """Walk the chain from the last verified row (or from its first row) and keep
        the result. A broken chain stays broken until a whole walk finds it intact."""
        if not whole and self.is_broken:
            return Walk(0, self.last_row_id, self.last_row_hash, self.found_break)
        resume = not whole and self.last_row_id > 0 and self._checkpoint_row_intact()
        after_id, expected = (self.last_row_id, self.last_row_hash) if resume else (0, GENESIS)
        progress = None
        if requested:
            total = self.model.objects.filter(
                organization_id=self.organization_id, id__gt=after_id
            ).count()
            self._set_progress(0, total)
            progress = self._set_progress
        result = walk(
            self.model,
            self.organization_id,
            after_id=after_id,
            expected_prev=expected,
            progress=progress,
        )
        self._keep(result, base=self.rows_verified if resume else 0, whole=not resume)
        if requested:
            type(self).objects.filter(pk=self.pk).update(
                requested_at=None, progress=0, progress_total=0, version=F("version") + 1
            )
            self.refresh_from_db()
        return result

    def _checkpoint_row_intact(self) -> bool:
        """The last verified row still carries the hash it had: otherwise the chain was
        rewritten from some earlier row on, and only a whole walk finds where."""
        row = (
            self.model.objects.filter(pk=self.last_row_id, organization_id=self.organization_id)
            .values_list("prev_hash", "row_hash", *hashed_fields(self.model))
            .first()
        )
        if row is None:
            return False
        prev_hash, row_hash, *values = row
        return row_hash == self.last_row_hash and row_hash == digest(
            prev_hash, content_of(self.model, values)
        )

    def _set_progress(self, checked: int, total: int | None = None) -> None:
        changes: dict[str, Any] = {"progress": checked, "version": F("version") + 1}
        if total is not None:
            changes["progress_total"] = total
        type(self).objects.filter(pk=self.pk).update(**changes)

    def _keep(self, result: Walk, *, base: int, whole: bool) -> None:
        now = timezone.now()
        changes: dict[str, Any] = {
            "last_row_id": result.last_id,
            "last_row_hash": result.last_hash,
            "rows_verified": base + result.checked,
            "broken_row_id": result.broken.row_id if result.broken else None,
            "broken_kind": result.broken.kind if result.broken else "",
            "verified_at": now,
            "version": F("version") + 1,
        }
        if whole:
            changes["walked_at"] = now
        # Only these fields: a Verify now running at the same time keeps its progress.
        type(self).objects.filter(pk=self.pk).update(**changes)
        self.refresh_from_db()
