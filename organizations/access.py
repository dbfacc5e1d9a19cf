"""Who may see and change what. Every view goes through one of these helpers.

Rules: a global admin (a Django superuser) may do anything anywhere. An org
admin may read and write their organization; an auditor may only read it.
Anyone else gets a 404 for an organization that is not theirs, so that
other tenants' names cannot be discovered by guessing URLs.
"""

from __future__ import annotations

from typing import NamedTuple

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404
from django.utils.translation import gettext as _

from organizations.models import Membership, Organization


def is_global_admin(user) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_superuser)


def require_global_admin(user) -> None:
    if not is_global_admin(user):
        raise PermissionDenied(_("Only a global admin may do this."))


def organizations_for(user) -> QuerySet[Organization]:
    if is_global_admin(user):
        return Organization.objects.all()
    if not user.is_authenticated:
        return Organization.objects.none()
    return Organization.objects.filter(memberships__user=user)


def role_in(user, organization: Organization) -> str | None:
    """The user's role there: "global_admin", "admin", "auditor" or None."""
    if is_global_admin(user):
        return "global_admin"
    if not user.is_authenticated:
        return None
    return (
        Membership.objects.filter(user=user, organization=organization)
        .values_list("role", flat=True)
        .first()
    )


class Access(NamedTuple):
    """What a view needs to know: which organization, and whether the viewer may change it."""

    organization: Organization
    can_write: bool


def organization_for(user, slug: str, *, write: bool = False) -> Access:
    """The organization named by `slug` if the user may see it (404 if not), and whether
    they may change it (an auditor may not).

    With `write=True` an auditor is refused with 403: they may know the page
    exists (they can read it) but not change anything on it.
    """
    try:
        organization = Organization.objects.get(slug=slug)
    except Organization.DoesNotExist:
        raise Http404(_("No such organization.")) from None
    role = role_in(user, organization)
    if role is None:
        raise Http404(_("No such organization."))
    if write and role == Membership.Role.AUDITOR:
        raise PermissionDenied(_("Auditors have read-only access."))
    return Access(organization, can_write=role != Membership.Role.AUDITOR)


def organization_for_global_admin(user, slug: str) -> Organization:
    """For platform tasks on one organization (its API key): global admins only.

    Members of the organization get 403 (they know it exists); others 404.
    """
    organization = organization_for(user, slug).organization
    require_global_admin(user)
    return organization
