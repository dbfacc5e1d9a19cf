from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from audit.models import AdminAction
from integrations.models import ApiKey, Integration, Membership, Organization


class ReadOnlyAdmin(admin.ModelAdmin):
    """For what the application writes itself (records, keys, trails): nobody edits it here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "time_zone", "require_two_factor", "created_at")
    list_filter = ("require_two_factor",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MembershipInline]

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        """Memberships are granted here: who gave whom which role, or took it, is trailed."""
        # By person: a deleted membership has lost its primary key by the time it is trailed.
        before = {m.user_id: m.role for m in Membership.objects.filter(organization=form.instance)}
        super().save_formset(request, form, formset, change)
        if formset.model is not Membership:
            return
        for membership in formset.new_objects:
            self._trail(request, form.instance, membership, "added", membership.role)
        for membership, _fields in formset.changed_objects:
            self._trail(
                request,
                form.instance,
                membership,
                "changed",
                membership.role,
                before.get(membership.user_id, ""),
            )
        for membership in formset.deleted_objects:
            self._trail(
                request,
                form.instance,
                membership,
                "removed",
                "",
                before.get(membership.user_id, ""),
            )

    @staticmethod
    def _trail(
        request: HttpRequest,
        organization: Organization,
        membership: Membership,
        change: str,
        role: str,
        was: str = "",
    ) -> None:
        AdminAction.record(
            request.user,
            organization,
            AdminAction.Kind.MEMBERSHIP_CHANGED,
            user=membership.user.username,
            change=change,
            role=role,
            previous_role=was,
            via="admin",
        )

    def save_model(self, request: HttpRequest, obj: Organization, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        # Who asked for (or dropped) the second factor goes in the organization's trail.
        if "require_two_factor" in form.changed_data:
            AdminAction.record(
                request.user,
                obj,
                AdminAction.Kind.TWO_FACTOR_REQUIRED,
                required=obj.require_two_factor,
                via="admin",
            )


@admin.register(Integration)
class IntegrationAdmin(ReadOnlyAdmin):
    """Shown, never edited here: the integration pages check the ERP address, turn the
    connector off when it changes and write the administrative trail; this admin would
    save around all three."""

    # The read-only view still builds the form: https, as the integration pages assume.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("organization", "connector", "enabled", "updated_at")
    list_filter = ("connector", "enabled")


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    """Keys are issued on the organization's API key page, where the key is shown once."""

    list_display = (
        "__str__",
        "organization",
        "created_by",
        "created_at",
        "revoked_at",
        "last_used_at",
    )
    list_filter = ("organization",)
    exclude = ("key_hash",)
