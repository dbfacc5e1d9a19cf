from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _


def validate_erp_url(value: str) -> None:
    """An ERP address must be https on an allow-listed host.

    The server makes requests to whatever is saved here, so an arbitrary address
    would let an admin point it at internal services (SSRF).
    """
    parts = urlsplit(value)
    if parts.scheme != "https":
        raise ValidationError(_("The address must start with https://."))
    if parts.username or parts.password:
        raise ValidationError(_("The address must not contain a user name or password."))
    host = (parts.hostname or "").lower()
    allowed = [name.lower() for name in settings.ERP_ALLOWED_HOSTS]
    if host not in allowed:
        said = {"host": host, "allowed": ", ".join(allowed)}
        raise ValidationError(
            _(
                "%(host)s is not an accounting system host this service may contact. "
                "Allowed: %(allowed)s."
            )
            % said
            if host
            else _(
                "This address is not an accounting system host this service may contact. "
                "Allowed: %(allowed)s."
            )
            % said
        )
