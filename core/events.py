"""The event seam: how the lower layers tell the audit trail and the alerts what happened
without importing them (docs/architecture.md, "Layers").

Receivers are connected in `audit.apps` and `alerts.apps`. Django signals are sent
synchronously, so a trail row is written in the caller's transaction: it commits or rolls
back with the change it describes.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.dispatch import Signal
from django.utils.translation import gettext_lazy as _


class TrailKind(models.TextChoices):
    """What a person did, as the administrative trail names it (audit.AdminAction.kind)."""

    API_KEY_ISSUED = "api_key_issued", _("API key issued")
    INTEGRATION_CHANGED = "integration_changed", _("Connection settings changed")
    CREDENTIALS_CHANGED = "credentials_changed", _("Credentials changed")
    MAPPINGS_CHANGED = "mappings_changed", _("Mappings changed")
    CONNECTOR_ENABLED = "connector_enabled", _("Connector enabled")
    CONNECTOR_DISABLED = "connector_disabled", _("Connector disabled")
    CONNECTION_TESTED = "connection_tested", _("Connection test started")
    SYNC_TRIGGERED = "sync_triggered", _("Sync triggered")
    SCHEDULE_CHANGED = "schedule_changed", _("Schedule changed")
    AUDIT_EXPORTED = "audit_exported", _("Audit log exported")
    RECONCILIATION_REQUESTED = "reconciliation_requested", _("Reconciliation started")
    RECONCILIATION_EXPORTED = "reconciliation_exported", _("Reconciliation exported")
    DIFFERENCE_ACCEPTED = "difference_accepted", _("Reconciliation difference accepted")
    RECORD_RESENT = "record_resent", _("Record missing in the accounting system sent again")
    # Logging in (accounts/): platform entries, no organization.
    LOGIN_LOCKED = "login_locked", _("Login locked after failed attempts")
    LOGIN_UNLOCKED = "login_unlocked", _("Login unlocked")
    TWO_FACTOR_ENABLED = "two_factor_enabled", _("Two-factor authentication turned on")
    TWO_FACTOR_DISABLED = "two_factor_disabled", _("Two-factor authentication turned off")
    RECOVERY_CODES_RENEWED = "recovery_codes_renewed", _("New recovery codes made")
    TWO_FACTOR_REQUIRED = "two_factor_required", _("Two-factor requirement changed")
    # Who may see and change an organization: granted in Django's admin
    # (organizations/admin.py).
    MEMBERSHIP_CHANGED = "membership_changed", _("Membership changed")


# Sent with actor, organization, kind (a TrailKind) and detail (a dict without secrets).
action_taken = Signal()


def record_action(actor: Any, organization: Any, kind: str, **detail: Any) -> None:
    """Put a person's action in the administrative trail (S3.6, S8).

    A change whose trail row nobody writes would go unrecorded without a sound, so a
    missing listener is an error rather than a no-op.
    """
    answers = action_taken.send(
        sender=TrailKind, actor=actor, organization=organization, kind=kind, detail=detail
    )
    if not answers:
        raise ImproperlyConfigured("Nothing records the administrative trail: is audit installed?")


# What the sync engine tells the alerts (alerts/hooks.py); their receivers never raise.
attempts_recorded = Signal()  # organization_id, attempts (SyncLog rows just written)
run_ended = Signal()  # run_id
event_recorded = Signal()  # event (a SyncEvent row)

# What the operations' metrics count (ops/metrics.py); nothing else needs to listen, and a
# missing listener (a test settings module without ops) only means nothing is counted.
records_received = Signal()  # organization_id, created (new records stored by the API)
erp_called = Signal()  # erp (display name), operation, status, seconds: one ERP request
erp_paced = Signal()  # seconds (waited for a slot of the shared window), refused (bool)
