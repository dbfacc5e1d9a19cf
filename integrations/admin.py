from django.contrib import admin
from django.db import models

from core.admin import ReadOnlyAdmin
from integrations.models import Integration


@admin.register(Integration)
class IntegrationAdmin(ReadOnlyAdmin):
    """Shown, never edited here: the integration pages check the ERP address, turn the
    connector off when it changes and write the administrative trail; this admin would
    save around all three."""

    # The read-only view still builds the form: https, as the integration pages assume.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("organization", "connector", "enabled", "updated_at")
    list_filter = ("connector", "enabled")
