from django.contrib import admin

from audit.models import AdminAction
from core.admin import ReadOnlyAdmin


@admin.register(AdminAction)
class AdminActionAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "organization", "actor_username", "kind")
    list_filter = ("kind", "organization")
