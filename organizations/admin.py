from django.contrib import admin
from django.http import HttpRequest

from core.admin import ReadOnlyAdmin
from core.events import TrailKind, record_action
from organizations.models import ApiKey, Membership, Organization


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
        record_action(
            request.user,
            organization,
            TrailKind.MEMBERSHIP_CHANGED,
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
            record_action(
                request.user,
                obj,
                TrailKind.TWO_FACTOR_REQUIRED,
                required=obj.require_two_factor,
                via="admin",
            )


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
