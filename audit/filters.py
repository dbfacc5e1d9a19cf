from __future__ import annotations

from datetime import datetime, time, timedelta

import django_filters
from django.core.validators import RegexValidator
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounting_sync.models import FinancialRecord, SyncLog
from audit.models import AdminAction
from integrations.models import Integration
from organizations.models import Organization


def _start_of(day) -> datetime:
    """Midnight in Oslo: a date range means whole days where the auditor is."""
    return timezone.make_aware(datetime.combine(day, time.min))


def _date_input():
    return django_filters.widgets.forms.DateInput(attrs={"type": "date"})


class ScopedFilterSet(django_filters.FilterSet):
    """A date range in whole days, and an organization choice for global admins only."""

    date_from = django_filters.DateFilter(
        label=_("From date"), method="filter_from", widget=_date_input()
    )
    date_to = django_filters.DateFilter(
        label=_("To date (inclusive)"), method="filter_to", widget=_date_input()
    )
    organization = django_filters.ModelChoiceFilter(
        label=_("Organization"),
        queryset=Organization.objects.all(),
        to_field_name="slug",
        empty_label=_("All organizations"),
    )

    def __init__(self, *args, show_organization: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        organization = self.filters.pop("organization")
        if show_organization:
            self.filters["organization"] = organization  # last in the form

    def filter_from(self, queryset: QuerySet, name: str, value) -> QuerySet:
        return queryset.filter(created_at__gte=_start_of(value))

    def filter_to(self, queryset: QuerySet, name: str, value) -> QuerySet:
        return queryset.filter(created_at__lt=_start_of(value + timedelta(days=1)))


class AuditLogFilter(ScopedFilterSet):
    """The audit log's filters (S8.2, S8.3, S8.7), all kept in the URL."""

    status = django_filters.ChoiceFilter(
        label=_("Status"), choices=SyncLog.Status.choices, empty_label=_("Any status")
    )
    record_type = django_filters.ChoiceFilter(
        field_name="record__kind",
        choices=FinancialRecord.Kind.choices,
        label=_("Record type"),
        empty_label=_("Any type"),
    )
    connector = django_filters.ChoiceFilter(
        label=_("Accounting system"),
        choices=Integration.Connector.choices,
        empty_label=_("Any accounting system"),
    )
    # Bounded to what a reference can be: the filter is named in the export's trail
    # entry, which must describe an export, not carry a message.
    reference = django_filters.CharFilter(
        label=_("Record reference"),
        lookup_expr="startswith",
        help_text=_("The whole reference (VH-1-42) or its start (VH-1-)."),
        max_length=SyncLog._meta.get_field("reference").max_length,
        validators=[
            RegexValidator(
                r"\A[A-Za-z0-9-]*\Z",
                _("A reference holds only letters, digits and hyphens, such as VH-1-42."),
            )
        ],
    )

    class Meta:
        model = SyncLog
        fields: list[str] = []


class AdminTrailFilter(ScopedFilterSet):
    """The administrative trail's filters: when, what, who (and where, for global admins)."""

    kind = django_filters.ChoiceFilter(
        label=_("Action"),
        choices=[
            *AdminAction.Kind.choices,
            (AdminAction.RETRY_REQUESTED, _("Retry requested")),
        ],
        empty_label=_("Any action"),
        method="filter_kind",
    )
    actor = django_filters.ChoiceFilter(
        label=_("Done by"),
        field_name="actor_username",
        empty_label=_("Anyone"),
        choices=[],
    )

    class Meta:
        model = AdminAction
        fields: list[str] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Only the people who appear in this trail: the list stays short and names no one
        # from elsewhere.
        names = (
            self.queryset.exclude(actor_username="")
            .order_by("actor_username")
            .values_list("actor_username", flat=True)
            .distinct()
        )
        self.filters["actor"].extra["choices"] = [(name, name) for name in names]

    def filter_kind(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        retries = {"kind": AdminAction.Kind.SYNC_TRIGGERED, "detail__trigger": "retry"}
        if value == AdminAction.RETRY_REQUESTED:
            return queryset.filter(**retries)
        if value == AdminAction.Kind.SYNC_TRIGGERED:
            return queryset.filter(kind=value).exclude(detail__trigger="retry")
        return queryset.filter(kind=value)
