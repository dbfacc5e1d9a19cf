from __future__ import annotations

from datetime import datetime, time, timedelta

import django_filters
from django.db.models import QuerySet
from django.utils import timezone

from accounting_sync.models import FinancialRecord, SyncLog
from integrations.models import Integration, Organization


def _start_of(day) -> datetime:
    """Midnight in Oslo: a date range means whole days where the auditor is."""
    return timezone.make_aware(datetime.combine(day, time.min))


class AuditLogFilter(django_filters.FilterSet):
    """The audit log's filters (S8.2, S8.3, S8.7), all kept in the URL."""

    date_from = django_filters.DateFilter(
        label="From date",
        method="filter_from",
        widget=django_filters.widgets.forms.DateInput(attrs={"type": "date"}),
    )
    date_to = django_filters.DateFilter(
        label="To date (inclusive)",
        method="filter_to",
        widget=django_filters.widgets.forms.DateInput(attrs={"type": "date"}),
    )
    status = django_filters.ChoiceFilter(choices=SyncLog.Status.choices, empty_label="Any status")
    record_type = django_filters.ChoiceFilter(
        field_name="record__kind",
        choices=FinancialRecord.Kind.choices,
        label="Record type",
        empty_label="Any type",
    )
    connector = django_filters.ChoiceFilter(
        choices=Integration.Connector.choices, empty_label="Any accounting system"
    )
    reference = django_filters.CharFilter(
        label="Record reference",
        lookup_expr="startswith",
        help_text="The whole reference (VH-1-42) or its start (VH-1-).",
    )
    organization = django_filters.ModelChoiceFilter(
        queryset=Organization.objects.all(), to_field_name="slug", empty_label="All organizations"
    )

    class Meta:
        model = SyncLog
        fields: list[str] = []

    def __init__(self, *args, show_organization: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not show_organization:
            del self.filters["organization"]

    def filter_from(self, queryset: QuerySet, name: str, value) -> QuerySet:
        return queryset.filter(created_at__gte=_start_of(value))

    def filter_to(self, queryset: QuerySet, name: str, value) -> QuerySet:
        return queryset.filter(created_at__lt=_start_of(value + timedelta(days=1)))
