"""Amounts in the reader's locale: `{{ record.amount|money:record.currency }}`; how long ago
something happened: `{{ heartbeat.seen_at|ago }}` ("just now", "5 minutes ago").

Django localizes a Decimal's decimal mark by itself but groups thousands only when
USE_THOUSAND_SEPARATOR is on, which would also group ids written into forms and URLs;
amounts are grouped here instead ("1 234,50 NOK" in Norwegian, "1,234.50 NOK" in English).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django import template
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.timesince import timesince
from django.utils.translation import gettext

register = template.Library()


@register.filter
def money(value: Decimal | int | float | None, currency: str = "") -> str:
    if value is None or value == "":
        return ""
    text = number_format(value, decimal_pos=2, use_l10n=True, force_grouping=True)
    return f"{text} {currency}".strip()


@register.filter
def ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago, in words; under a minute is "just now" (timesince says "0 minutes")."""
    if value is None:
        return ""
    now = now or timezone.now()
    if now - value < timedelta(minutes=1):
        return gettext("just now")
    return gettext("%(time)s ago") % {"time": timesince(value, now)}
