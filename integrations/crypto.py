"""Encryption at rest for ERP credentials (MultiFernet over FIELD_ENCRYPTION_KEYS).

The first key encrypts; every key decrypts, so a new key can be put first and the
old ones kept until `manage.py reencrypt_credentials` has rewritten every value.
"""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class CredentialsUnreadable(Exception):
    """No configured key decrypts the stored value (a key was removed too early)."""


def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in settings.FIELD_ENCRYPTION_KEYS])


def encrypt(secrets: dict[str, str]) -> str:
    return _fernet().encrypt(json.dumps(secrets, sort_keys=True).encode()).decode()


def decrypt(ciphertext: str) -> dict[str, str]:
    if not ciphertext:
        return {}
    try:
        return json.loads(_fernet().decrypt(ciphertext.encode()))
    except InvalidToken:
        # Said on the page by its note (NoteCode.CREDENTIALS_UNREADABLE); this is for logs.
        raise CredentialsUnreadable(
            "The stored credentials cannot be decrypted with the configured keys."
        ) from None


def reencrypt(ciphertext: str) -> str:
    """The same secrets under the newest key."""
    try:
        return _fernet().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise CredentialsUnreadable(
            "The stored credentials cannot be decrypted with the configured keys."
        ) from None
