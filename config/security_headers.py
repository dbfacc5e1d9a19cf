"""The Permissions-Policy header (issue 12 item 8).

Django has settings for Referrer-Policy and Cross-Origin-Opener-Policy but none for
Permissions-Policy, and this needs no more than one header built from one setting, so
it is this small middleware rather than another dependency.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

HEADER = "Permissions-Policy"


def permissions_policy(features: Mapping[str, Iterable[str]]) -> str:
    """The header's value: `camera=(), payment=(self "https://pay.example")`.

    Each feature maps to its allow-list: empty denies it everywhere; "self" is the
    keyword, anything else an origin (quoted, as the header's syntax wants).
    """
    parts = []
    for feature, allowed in features.items():
        origins = " ".join(
            origin if origin in ("self", "*") else f'"{origin}"' for origin in allowed
        )
        parts.append(f"{feature}=({origins})")
    return ", ".join(parts)


class PermissionsPolicyMiddleware:
    """Adds Permissions-Policy from settings.PERMISSIONS_POLICY to every response that
    has none yet (a view may set its own)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        # Read per response, not once at start-up, so a test's `settings` override applies.
        features = getattr(settings, "PERMISSIONS_POLICY", None)
        if features and HEADER not in response:
            response[HEADER] = permissions_policy(features)
        return response
