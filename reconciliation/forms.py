"""The reconciliation page's forms (issue 15 item 3): the period to read, the items' filters."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from reconciliation.models import Item

# A year and a day: a leap year's whole year fits, a longer reading is refused (the ERP is
# read page by page within its rate limits; a decade would take hours and starve syncs).
MAX_DAYS = 366


def previous_month(today: date) -> tuple[date, date]:
    """The calendar month before `today`'s: what an auditor reconciles most often."""
    end = today.replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


def _date_input() -> forms.DateInput:
    return forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


class RunForm(forms.Form):
    """A period of posting dates, checked against the organization's today."""

    start = forms.DateField(label=_("Posting date from"), widget=_date_input())
    end = forms.DateField(label=_("Posting date to (inclusive)"), widget=_date_input())

    def __init__(self, *args: Any, today: date, **kwargs: Any) -> None:
        start, end = previous_month(today)
        kwargs.setdefault("initial", {"start": start, "end": end})
        super().__init__(*args, **kwargs)
        self.today = today

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("start"), cleaned.get("end")
        if start is None or end is None:
            return cleaned  # the field's own error says what is wrong
        if start > end:
            self.add_error("end", _("The end date is before the start date."))
        elif end > self.today:
            self.add_error(
                "end",
                _("The end date is in the future: the accounting system cannot hold it yet."),
            )
        elif (end - start).days + 1 > MAX_DAYS:
            self.add_error(
                "end",
                _("A reconciliation covers at most %(days)d days; choose a shorter period.")
                % {"days": MAX_DAYS},
            )
        return cleaned


def _class_choices() -> list[tuple[str, Any]]:
    return [("", _("Every class")), *Item.Klass.choices]


class ItemFilter(forms.Form):
    """The items shown: by class and by reference; a GET form, so the URL keeps it."""

    klass = forms.ChoiceField(label=_("Class"), required=False, choices=_class_choices)
    q = forms.CharField(
        label=_("Reference contains"),
        required=False,
        max_length=Item._meta.get_field("reference").max_length,
    )

    def values(self) -> dict[str, str]:
        """The valid, non-empty filters (invalid ones are ignored, as on the overview)."""
        if not self.is_bound:
            return {}
        self.is_valid()
        cleaned = getattr(self, "cleaned_data", {})
        return {name: value.strip() for name, value in cleaned.items() if value and value.strip()}
