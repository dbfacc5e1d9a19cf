"""Amounts in the reader's locale: `{{ record.amount|money:record.currency }}`.

Django localizes a Decimal's decimal mark by itself but groups thousands only when
USE_THOUSAND_SEPARATOR is on, which would also group ids written into forms and URLs;
amounts are grouped here instead ("1 234,50 NOK" in Norwegian, "1,234.50 NOK" in English).
"""

from __future__ import annotations

from decimal import Decimal

from django import template
from django.utils.formats import number_format

register = template.Library()


@register.filter
def money(value: Decimal | int | float | None, currency: str = "") -> str:
    if value is None or value == "":
        return ""
    text = number_format(value, decimal_pos=2, use_l10n=True, force_grouping=True)
    return f"{text} {currency}".strip()
