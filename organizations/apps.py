from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OrganizationsConfig(AppConfig):
    """The tenants: organizations, memberships and API keys (docs/architecture.md)."""

    name = "organizations"
    verbose_name = _("Organizations")
