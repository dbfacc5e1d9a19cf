"""Which shared window paces a connector's requests (integrations/clients/limits.py).

Redis when `ERP_PACING_URL` names one (by default the broker, when the broker is Redis);
else the database, so the embedded default (SQLite, folder broker) is paced too; none when
`ERP_PACING_URL` is "off".
"""

from __future__ import annotations

import hashlib
import time
from functools import cache

from django.conf import settings
from django.db import transaction

from integrations.clients.limits import Limiter, Pacer, Rate, RedisLimiter
from integrations.models import RateSlot, RateWindow


class DatabaseLimiter:
    """The same sliding window as RedisLimiter, in two tables, on this machine's clock."""

    def admit(self, key: str, rate: Rate) -> float:
        now = time.time()
        with transaction.atomic():
            window, _created = RateWindow.objects.get_or_create(key=key)
            # Serializes the workers taking a slot of this window (SQLite already does).
            RateWindow.objects.select_for_update().filter(pk=window.pk).exists()
            window.slots.filter(at__lte=now - rate.per_seconds).delete()
            slots = window.slots.order_by("at").values_list("at", flat=True)
            if slots.count() < rate.requests:
                RateSlot.objects.create(window=window, at=now)
                return 0.0
            oldest = slots.first()
            assert oldest is not None  # the window is full
            return max(0.0, oldest + rate.per_seconds - now)


@cache
def _limiter(url: str) -> Limiter | None:
    if url == "off":
        return None
    if url:
        return RedisLimiter(url)
    return DatabaseLimiter()


def in_database() -> bool:
    """Whether a pacer takes its slots in the database: then whatever paces a request must
    run on a thread that may use the database (accounting_sync/lane.py)."""
    return isinstance(_limiter(settings.ERP_PACING_URL), DatabaseLimiter)


def pacer(credential: str, rate: Rate) -> Pacer | None:
    """A pacer for one credential. The key is a digest: it names no secret."""
    limiter = _limiter(settings.ERP_PACING_URL)
    if limiter is None:
        return None
    key = hashlib.sha256(credential.encode()).hexdigest()[:40]
    return Pacer(limiter, key, rate, max_wait=settings.ERP_PACING_MAX_WAIT_SECONDS)
