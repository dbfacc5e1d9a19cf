"""Reading settings from the environment, strictly.

django-environ parses the values; this module adds the checks it does not make
(a boolean that is neither true nor false, a URL with an unknown scheme, a key
that is not a Fernet key), so that a malformed value stops start-up with a
message naming the variable instead of silently becoming a default.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def bad(name: str, message: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"Environment variable {name}: {message}")


def get_bool(name: str, default: bool) -> bool:
    raw = env.str(name, default="").strip().lower()
    if raw == "":
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise bad(name, f"expected true or false, got {raw!r}")


def get_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.str(name, default="").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad(name, f"expected a whole number, got {raw!r}") from None
    if value < minimum:
        raise bad(name, f"must be at least {minimum}, got {value}")
    return value


def get_list(name: str, default: Iterable[str]) -> list[str]:
    raw = env.str(name, default="")
    if raw.strip() == "":
        return list(default)
    items = [item.strip() for item in raw.split(",")]
    if any(item == "" for item in items):
        raise bad(name, "empty item in the comma-separated list")
    return items


def get_url(name: str, default: str, schemes: set[str]) -> str:
    raw = env.str(name, default="").strip() or default
    scheme = urlsplit(raw).scheme
    if scheme not in schemes:
        allowed = ", ".join(sorted(schemes))
        raise bad(name, f"scheme {scheme or '(none)'!r} is not one of: {allowed}")
    return raw


def get_networks(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Comma-separated networks (10.0.0.0/8) or single addresses (192.0.2.7)."""
    networks = []
    for item in get_list(name, []):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise bad(name, f"{item!r} is not an IP address or network") from None
    return networks


def get_database(name: str, default: str) -> dict:
    url = get_url(name, default, {"sqlite", "postgres", "postgresql", "pgsql"})
    try:
        config = environ.Env.db_url_config(url)
    except Exception as exc:  # django-environ raises several types for a bad URL
        raise bad(name, f"not a valid database URL ({exc})") from None
    if not config.get("NAME"):
        raise bad(name, "the URL names no database")
    return config


def get_fernet_keys(name: str, fallback_secret: str | None) -> list[str]:
    """Comma-separated Fernet keys, newest first (MultiFernet encrypts with the first).

    With no value and a fallback secret (development only), one key is derived
    from it so that a fresh checkout works without configuration.
    """
    keys = get_list(name, [])
    if not keys:
        if fallback_secret is None:
            raise bad(
                name,
                "required when DEBUG is false (generate one with "
                "`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)",
            )
        digest = hashlib.sha256(f"field-encryption:{fallback_secret}".encode()).digest()
        return [base64.urlsafe_b64encode(digest).decode()]
    for position, key in enumerate(keys, start=1):
        try:
            decoded = base64.urlsafe_b64decode(key.encode())
        except (binascii.Error, ValueError):
            decoded = b""
        if len(decoded) != 32:
            raise bad(name, f"key {position} is not a Fernet key (32 url-safe base64 bytes)")
    return keys
