"""Credentials encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256).

Keys come from ``CONCORD_ENCRYPTION_KEYS``: a comma-separated list of Fernet keys, the
first one encrypts, all of them decrypt. To rotate: put a new key first, keep the old
one after it, run ``python manage.py rotate_credentials``, then drop the old key.
Without the variable (local demo and tests) a key is derived from SECRET_KEY; production
settings refuse to start without it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class CredentialsError(Exception):
    pass


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        derived = hashlib.sha256(f"concord-credentials:{secret_key}".encode()).digest()
        keys = (base64.urlsafe_b64encode(derived).decode(),)
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except ValueError as exc:
        raise CredentialsError(f"CONCORD_ENCRYPTION_KEYS holds an invalid key: {exc}") from None


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.CONCORD_ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt(data: dict[str, Any]) -> str:
    if not data:
        return ""
    return fernet().encrypt(json.dumps(data, sort_keys=True).encode()).decode()


def decrypt(token: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        return json.loads(fernet().decrypt(token.encode()))
    except InvalidToken:
        raise CredentialsError(
            "stored credentials cannot be decrypted with CONCORD_ENCRYPTION_KEYS "
            "(was a key removed before `rotate_credentials` ran?)"
        ) from None


def rotate(token: str) -> str:
    return fernet().rotate(token.encode()).decode() if token else ""


def masked(data: dict[str, Any]) -> dict[str, str]:
    """For display: the names of the secrets and their last characters only."""
    return {k: ("…" + str(v)[-4:] if len(str(v)) > 8 else "…") for k, v in data.items()}
