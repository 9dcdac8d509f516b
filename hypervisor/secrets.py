"""Encryption at rest for connection secrets (the panel's SSH private key, TLS client keys).

The key comes from PANEL_ENCRYPTION_KEY when set (any long random string), else it is derived from
SECRET_KEY; either way it is stretched with HKDF into a Fernet key. Changing it makes stored secrets
unreadable, so set PANEL_ENCRYPTION_KEY once in production and keep it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

PREFIX = "fernet:"


class SecretUnreadable(Exception):
    """A stored secret could not be decrypted (the encryption key changed)."""


@lru_cache(maxsize=4)
def _fernet(material: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"vpspanel-secrets", info=b"fernet").derive(
        material.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def _current() -> Fernet:
    return _fernet(settings.PANEL_ENCRYPTION_KEY or settings.SECRET_KEY)


def encrypt(plaintext: str) -> str:
    if not plaintext:
        return ""
    return PREFIX + _current().encrypt(plaintext.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored:
        return ""
    if not stored.startswith(PREFIX):
        raise SecretUnreadable("the stored value is not an encrypted secret")
    try:
        return _current().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("the stored secret cannot be decrypted with the current key") from exc


def console_password(domain_uuid) -> str:
    """A domain's VNC password: derived from the panel's key and the domain's UUID, so that nothing needs
    storing and whatever serves the console can compute it again. Eight characters, all VNC uses."""
    material = (settings.PANEL_ENCRYPTION_KEY or settings.SECRET_KEY).encode()
    digest = hmac.new(material, f"vnc-password:{domain_uuid}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode()[:8].lower()
