from typing import Any

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = _("Audit")

    def ready(self) -> None:
        from core import events

        events.action_taken.connect(_record_action, dispatch_uid="audit.record_action")


def _record_action(
    *, actor: Any, organization: Any, kind: str, detail: dict, **signal_args: Any
) -> None:
    """Writes the trail row the lower layers ask for through core.events.record_action."""
    from audit.models import AdminAction

    AdminAction.record(actor, organization, kind, **detail)
