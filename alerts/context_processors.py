from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject


def alerts(request: HttpRequest) -> dict[str, object]:
    """The header badge's count; lazy, so pages without the header never query it."""

    def count() -> int:
        from alerts.views import unread_count

        return unread_count(request.user)

    return {"alert_unread": SimpleLazyObject(count)}
