from django.contrib import admin

from accounting_sync.models import FinancialRecord, WorkerHeartbeat
from core.admin import ReadOnlyAdmin


@admin.register(FinancialRecord)
class FinancialRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "reference",
        "organization",
        "source_id",
        "kind",
        "category",
        "amount",
        "currency",
        "claimant_name",
        "approved_at",
        "state",
    )
    list_filter = ("organization", "kind", "state", "currency")
    search_fields = ("source_id", "claimant_reference", "claimant_name", "category")
    date_hierarchy = "approved_at"
    list_select_related = ("organization",)


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = ("hostname", "seen_at")
