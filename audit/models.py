from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from audit.chain import ChainedModel


class AdminAction(ChainedModel):
    """Who changed what, when: key rotations now; credentials, mappings, toggles later.

    Values of secrets are never put in `detail`, only the fact of a change.
    """

    class Kind(models.TextChoices):
        API_KEY_ISSUED = "api_key_issued", "API key issued"
        INTEGRATION_CHANGED = "integration_changed", "Connection settings changed"
        CREDENTIALS_CHANGED = "credentials_changed", "Credentials changed"
        MAPPINGS_CHANGED = "mappings_changed", "Mappings changed"
        CONNECTOR_ENABLED = "connector_enabled", "Connector enabled"
        CONNECTOR_DISABLED = "connector_disabled", "Connector disabled"
        CONNECTION_TESTED = "connection_tested", "Connection test started"
        SYNC_TRIGGERED = "sync_triggered", "Sync triggered"
        SCHEDULE_CHANGED = "schedule_changed", "Schedule changed"
        AUDIT_EXPORTED = "audit_exported", "Audit log exported"

    organization = models.ForeignKey(
        "integrations.Organization",
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

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_username} {self.kind}"

    @classmethod
    def record(cls, actor, organization, kind: str, **detail: Any) -> AdminAction:
        return cls.objects.create(
            organization=organization,
            actor=actor if actor is not None and actor.is_authenticated else None,
            actor_username=getattr(actor, "username", "") or "",
            kind=kind,
            detail=detail,
        )
