"""The nightly reconciliation (issue 15 item 4): once per organization per local night.

Beat asks every quarter of an hour (settings: "reconciliation-nightly"); an organization is
due once its local clock has passed the nightly hour, or one hour after its own scheduled
sync when that sync runs later in the night, and it has had no nightly reading that local
day. It reads the last RECONCILIATION_NIGHTLY_DAYS days of posting dates up to yesterday,
so a journal line deleted or a voucher rejected days after its send is still seen.
"""

from __future__ import annotations

import logging
import zoneinfo
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.utils import timezone

from integrations.models import Integration
from reconciliation import engine
from reconciliation.models import Reconciliation

logger = logging.getLogger(__name__)

# A scheduled sync this late or later is a day-time sync: the night does not wait for it.
NIGHT_ENDS = time(8, 0)


def start_due(now: datetime | None = None) -> list[Reconciliation]:
    """Queue the nightly reading of every organization that is due; returns them."""
    now = now or timezone.now()
    queued = []
    ready = Integration.objects.filter(enabled=True, connection_verified_at__isnull=False)
    for integration in ready.select_related("organization"):
        local = now.astimezone(zoneinfo.ZoneInfo(integration.organization.time_zone))
        if not _due(integration, local):
            continue
        yesterday = local.date() - timedelta(days=1)
        first = yesterday - timedelta(days=settings.RECONCILIATION_NIGHTLY_DAYS - 1)
        try:
            queued.append(
                engine.request(
                    integration.organization,
                    first,
                    yesterday,
                    trigger=Reconciliation.Trigger.NIGHTLY,
                )
            )
        except engine.AlreadyReconciling:
            continue  # one is running: the next check sees whether tonight's is still due
    return queued


def starts_at(integration: Integration) -> time:
    """The local time an organization's nightly reading is due from."""
    hour = time(settings.RECONCILIATION_NIGHTLY_HOUR, 0)
    synced = integration.schedule_time
    if integration.schedule != Integration.Schedule.MANUAL and synced and synced < NIGHT_ENDS:
        after_sync = (datetime.combine(date.min, synced) + timedelta(hours=1)).time()
        return max(hour, after_sync)
    return hour


def _due(integration: Integration, local: datetime) -> bool:
    if local.time() < starts_at(integration):
        return False
    zone = local.tzinfo
    midnight = datetime.combine(local.date(), time.min, tzinfo=zone)
    return not Reconciliation.objects.filter(
        organization=integration.organization,
        trigger=Reconciliation.Trigger.NIGHTLY,
        created_at__gte=midnight,
    ).exists()
