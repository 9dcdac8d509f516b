"""Validating OpenSSH public keys and computing their SHA256 fingerprints."""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

KEY_TYPES = {
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
}
MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class PublicKey:
    key_type: str
    blob: bytes
    comment: str

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    @property
    def line(self) -> str:
        encoded = base64.b64encode(self.blob).decode()
        return " ".join(part for part in (self.key_type, encoded, self.comment) if part)


def _read_string(blob: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(blob):
        raise ValueError("truncated")
    (length,) = struct.unpack(">I", blob[offset : offset + 4])
    end = offset + 4 + length
    if end > len(blob):
        raise ValueError("truncated")
    return blob[offset + 4 : end], end


def parse_public_key(text: str) -> PublicKey:
    """Parse one OpenSSH public key line; raise ValidationError with a clear message if it is not one."""
    parts = (text or "").strip().split(None, 2)
    if len(parts) < 2:
        raise ValidationError(
            _("This is not an OpenSSH public key: expected a line like 'ssh-ed25519 AAAA… comment'."),
            code="invalid_key",
        )
    key_type, encoded = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) > 2 else ""
    if key_type not in KEY_TYPES:
        raise ValidationError(
            _("Unsupported key type %(type)s. Use ssh-ed25519, ssh-rsa or ecdsa."),
            params={"type": key_type[:40]},
            code="invalid_key",
        )
    try:
        blob = base64.b64decode(encoded, validate=True)
        embedded_type, offset = _read_string(blob, 0)
    except (binascii.Error, ValueError):
        raise ValidationError(
            _("The key data is not valid base64-encoded key material."), code="invalid_key"
        ) from None
    if embedded_type.decode(errors="replace") != key_type:
        raise ValidationError(
            _("The key data does not match its type %(type)s."), params={"type": key_type}, code="invalid_key"
        )
    if key_type == "ssh-rsa":
        try:
            _exponent, offset = _read_string(blob, offset)
            modulus, _end = _read_string(blob, offset)
        except ValueError:
            raise ValidationError(_("The RSA key is truncated."), code="invalid_key") from None
        bits = int.from_bytes(modulus, "big").bit_length()
        if bits < MIN_RSA_BITS:
            raise ValidationError(
                _("RSA keys must have at least %(min)s bits; this one has %(bits)s."),
                params={"min": MIN_RSA_BITS, "bits": bits},
                code="invalid_key",
            )
    return PublicKey(key_type=key_type, blob=blob, comment=comment)
