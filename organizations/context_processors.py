from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from organizations.access import is_global_admin, organizations_for


def navigation(request: HttpRequest) -> dict[str, object]:
    """What the header needs: whether to show the organization switcher, and its choices.

    Lazy, so pages that never show the header (the API, the login page) pay nothing.
    """
    user = request.user
    return {
        "is_global_admin": SimpleLazyObject(lambda: is_global_admin(user)),
        "nav_organizations": SimpleLazyObject(
            lambda: list(organizations_for(user).only("name", "slug"))
        ),
    }
