from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from integrations.clients import business_central as bc
from integrations.clients.http import AllowList, Refusal


def allow_list() -> AllowList:
    return AllowList.parse(settings.ERP_ALLOWED_HOSTS)


def validate_erp_url(value: str) -> None:
    """An ERP address must be https on an allow-listed host and port.

    The server makes requests to whatever is saved here, so an arbitrary address
    would let an admin point it at internal services (SSRF). The connectors check
    the same list again on every request (integrations/clients/http.py).
    """
    allowed = allow_list()
    problem = allowed.problem(value)
    if problem is Refusal.SCHEME:
        raise ValidationError(_("The address must start with https://."))
    if problem is Refusal.USERINFO:
        raise ValidationError(_("The address must not contain a user name or password."))
    host = (urlsplit(value).hostname or "").lower()
    said = {"host": host, "allowed": ", ".join(settings.ERP_ALLOWED_HOSTS)}
    if problem is Refusal.HOST:
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
    if problem is Refusal.PORT:
        raise ValidationError(
            _(
                "Only port 443 may be used on %(host)s (leave the port out), unless the "
                "allowed hosts name another one. Allowed: %(allowed)s."
            )
            % said
        )


def validate_sign_in_url(value: str) -> None:
    """Business Central's sign-in address: an ERP address on ERP_SIGN_IN_HOSTS.

    It receives the client secret, so Microsoft's sign-in host (with DEBUG also the
    ERP sandbox's), not any host that is allowed for another purpose.
    """
    validate_erp_url(value)
    host = (urlsplit(value).hostname or "").lower()
    hosts = [name.lower() for name in settings.ERP_SIGN_IN_HOSTS]
    if host not in hosts:
        raise ValidationError(
            _("The sign-in address must be on %(hosts)s, such as https://%(host)s.")
            % {"hosts": ", ".join(hosts), "host": hosts[0] if hosts else ""}
        )


def validate_tenant_id(value: str) -> None:
    if value and not bc.is_tenant(value):
        raise ValidationError(
            _(
                "Type the tenant ID as a GUID (like 3f2b9c4e-5d6a-4b7c-8e9f-0a1b2c3d4e5f) or as "
                "the tenant's domain name (like contoso.onmicrosoft.com)."
            )
        )


def validate_environment(value: str) -> None:
    if value and not bc.is_environment(value):
        raise ValidationError(
            _(
                "Type the environment's name as Business Central shows it: letters, digits, "
                "'-' and '_', at most 30 characters (like production)."
            )
        )


def validate_company_id(value: str) -> None:
    if value and not bc.is_company_id(value):
        raise ValidationError(
            _(
                "Type the company ID as a GUID (like 8a4c2e6f-1b3d-4a5c-9e7f-6d8b0a2c4e6f), "
                "not the company's name."
            )
        )
