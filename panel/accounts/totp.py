"""Two-factor authentication: a TOTP authenticator app (django-otp's `TOTPDevice`) plus one-time recovery
codes (a django-otp `StaticDevice`).

- Enrolment: `pending_device` makes (or finds) the user's unconfirmed TOTP device, whose secret the user
  scans as a QR code (`qr_svg`) or types in (`secret`); `confirm` checks a first code, confirms the device
  and makes the recovery codes, which are shown once and stored only as salted hashes.
- Verification: `verify` checks a 6-digit code against the TOTP device or a recovery code against the
  static device (used once), under django-otp's own throttling (exponential back-off per device).
- New recovery codes (`regenerate_recovery_codes`) and removal (`remove`), each after a current code or
  the password, and the operator's `enrol_from_shell` and `reset`.

Every change locks the user's row first, so two requests (or two workers) never make two devices or two
sets of codes, and records its activity event in the same transaction.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import secrets
from dataclasses import dataclass

import segno
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from django_otp.models import Device
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from panel.accounts import throttling
from panel.activity import log as activity
from panel.models import ActivityEvent, User

TOTP_DEVICE_NAME = "Authenticator app"
RECOVERY_DEVICE_NAME = "Recovery codes"
RECOVERY_CODE_COUNT = 10
_RECOVERY_CODE_CHARS = 12  # base32 characters: 60 random bits
_TOTP_CODE = re.compile(r"^\d{6}$")


class TwoFactorError(Exception):
    """A refused change, with a message for the user (already translated)."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.message = message
        self.code = code


class CodeThrottled(Exception):
    """Too many wrong codes in a row: the device accepts none for `retry_after` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(retry_after)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Status:
    enabled: bool
    recovery_codes_left: int


# Reading.


def has_totp(user: User) -> bool:
    """Whether the user has a confirmed second factor, read from the database now. Requests ask the
    `user.totp_enabled` flag of the user they loaded instead (kept in step by `panel.activity.receivers`)."""
    if not getattr(user, "pk", None):
        return False
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def sync_flag(user_id: int) -> None:
    """Set the user's `totp_enabled` from their devices (called whenever a device is saved or deleted)."""
    User.objects.filter(pk=user_id).update(
        totp_enabled=Exists(TOTPDevice.objects.filter(user_id=OuterRef("pk"), confirmed=True))
    )


def status(user: User) -> Status:
    enabled = has_totp(user)
    left = StaticToken.objects.filter(device__user=user, device__confirmed=True).count() if enabled else 0
    return Status(enabled=enabled, recovery_codes_left=left)


def secret(device: TOTPDevice, grouped: bool = False) -> str:
    """The device's key in base32 (what authenticator apps take), in groups of four when `grouped`."""
    text = base64.b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4)) if grouped else text


def qr_svg(device: TOTPDevice) -> str:
    """The device's otpauth:// URI as an inline SVG QR code (made here, no external service)."""
    return segno.make(device.config_url, error="m").svg_inline(
        scale=5, border=2, dark="#0f172a", light="#ffffff", omitsize=True
    )


def current_code(secret_base32: str) -> str:
    """The code an authenticator app shows now for that base32 secret (for tests and scripts)."""
    text = secret_base32.replace(" ", "").upper()
    key = base64.b32decode(text + "=" * (-len(text) % 8))
    return f"{TOTP(key).token():06d}"


# Enrolment.


def _lock(user: User) -> User:
    return User.objects.select_for_update().get(pk=user.pk)


def pending_device(user: User) -> TOTPDevice:
    """The unconfirmed device whose secret the user is scanning (made on first use, then the same one)."""
    with transaction.atomic():
        _lock(user)
        if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
            raise TwoFactorError(_("Two-factor authentication is enabled already."), "totp_enabled")
        device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
        if device is None:
            device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)
        return device


def confirm(user: User, code: str, *, actor: User | None = None) -> tuple[TOTPDevice, list[str]]:
    """Confirm the pending device with a first code from the app; returns it and the new recovery codes
    (shown once). A wrong code raises TwoFactorError and changes nothing but the device's throttle."""
    actor = actor or user
    code = normalise(code)
    with transaction.atomic():
        _lock(user)
        if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
            raise TwoFactorError(_("Two-factor authentication is enabled already."), "totp_enabled")
        device = (
            TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).order_by("pk").first()
        )
        if device is None:
            raise TwoFactorError(
                _("Start the set-up again: no secret is waiting to be confirmed."), "no_pending"
            )
        _check_throttle(device)
        # A wrong code only counts against the device's throttle (committed: no exception in this block).
        accepted = bool(_TOTP_CODE.match(code)) and device.verify_token(code)
        codes: list[str] = []
        if accepted:
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            TOTPDevice.objects.filter(user=user, confirmed=False).delete()
            activity.record(
                ActivityEvent.Type.TOTP_ENABLED,
                summary=gettext_noop("Two-factor authentication was enabled."),
                account=user,
                actor=actor,
                target=f"user:{user.pk}",
                staff_action=user.is_panel_staff,
            )
            codes = _replace_recovery_codes(user, actor)
    if not accepted:
        raise TwoFactorError(
            _("That code is not right. Check the time on your phone and enter the current code."),
            "wrong_code",
        )
    return device, codes


def regenerate_recovery_codes(
    user: User, *, code: str = "", password: str = "", actor: User | None = None
) -> list[str]:
    """New recovery codes (the old ones stop working); shown once. Like `remove`, only after a current
    code (or recovery code) or the account's password, under the same throttling: a stolen session alone
    cannot mint lasting codes."""
    _reauthenticate(user, code=code, password=password)
    return _new_recovery_codes(user, actor or user)


def _new_recovery_codes(user: User, actor: User) -> list[str]:
    with transaction.atomic():
        _lock(user)
        if not TOTPDevice.objects.filter(user=user, confirmed=True).exists():
            raise TwoFactorError(_("Two-factor authentication is not enabled."), "totp_disabled")
        return _replace_recovery_codes(user, actor)


def _replace_recovery_codes(user: User, actor: User | None) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    codes = [_new_recovery_code() for _i in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=_hash_recovery(user, c)) for c in codes)
    activity.record(
        ActivityEvent.Type.RECOVERY_CODES,
        summary=gettext_noop("%(count)s new recovery codes were made; the old ones no longer work."),
        data={"count": len(codes)},
        account=user,
        actor=actor,
        target=f"user:{user.pk}",
        staff_action=user.is_panel_staff,
    )
    return codes


def _new_recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()[:_RECOVERY_CODE_CHARS]
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def _hash_recovery(user: User, code: str) -> str:
    """What is stored for a recovery code: a hash salted with the user, 16 base32 characters (80 bits)."""
    digest = hashlib.sha256(f"panel-recovery-code:{user.pk}:{normalise(code)}".encode()).digest()
    return base64.b32encode(digest).decode().lower()[:16]


def normalise(code: str) -> str:
    """Codes as typed: spaces and dashes dropped, lower case."""
    return re.sub(r"[\s-]+", "", code or "").lower()


# Verification.


def _check_throttle(device: Device) -> None:
    allowed, details = device.verify_is_allowed()
    if not allowed:
        locked_until = (details or {}).get("locked_until")
        wait = (locked_until - timezone.now()).total_seconds() if locked_until else 1
        raise CodeThrottled(max(1, math.ceil(wait)))


def verify(user: User, code: str) -> Device | None:
    """The device that accepts `code` (a 6-digit TOTP code, or a recovery code, which is then used up), or
    None. Raises CodeThrottled while the device waits after wrong codes (django-otp's back-off)."""
    code = normalise(code)
    if not code or len(code) > 32:
        return None
    with transaction.atomic():
        if _TOTP_CODE.match(code):
            device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
            if device is None:
                return None
            _check_throttle(device)
            return device if device.verify_token(code) else None
        device = StaticDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
        if device is None or not has_totp(user):
            return None
        _check_throttle(device)
        if not device.verify_token(_hash_recovery(user, code)):
            return None
        left = device.token_set.count()
        activity.record(
            ActivityEvent.Type.RECOVERY_CODE_USED,
            summary=gettext_noop("A recovery code was used to log in; %(left)s left."),
            data={"left": left},
            account=user,
            actor=user,
            target=f"user:{user.pk}",
            staff_action=user.is_panel_staff,
        )
        return device


def record_wrong_code(user: User) -> None:
    activity.record(
        ActivityEvent.Type.LOGIN_FAILED,
        summary=gettext_noop("Failed login: wrong two-factor code."),
        account=user,
        target=f"user:{user.pk}",
    )


# Removal and the operator's commands.


def remove(user: User, *, code: str = "", password: str = "", actor: User | None = None) -> None:
    """Remove the second factor and the recovery codes, after a current code (or recovery code) or the
    account's password. Wrong passwords count as failed logins (and the lock-out refuses the right one),
    wrong codes against the device's throttle."""
    _reauthenticate(user, code=code, password=password)
    _remove(user, actor or user)


def _reauthenticate(user: User, *, code: str = "", password: str = "") -> None:
    """Check that the user is present: the account's password, or a current code or recovery code (which
    is then used up). Wrong passwords count as failed logins (and a lock-out refuses the right one too),
    wrong codes against the device's throttle. Raises CodeThrottled or TwoFactorError."""
    if password:
        wait = throttling.login_locked_for(user.email, None)
        if wait:
            raise CodeThrottled(wait)
        if user.check_password(password):
            return
        throttling.login_failed(user.email, None)
    if code and verify(user, code) is not None:
        return
    raise TwoFactorError(
        _("Enter a current code from your app, a recovery code or your password."), "wrong_code"
    )


def reset(user: User) -> bool:
    """Remove the user's second factor without asking (the operator's `totp_enroll --reset`). Returns
    whether there was one."""
    return _remove(user, None)


def _remove(user: User, actor: User | None) -> bool:
    with transaction.atomic():
        _lock(user)
        had = TOTPDevice.objects.filter(user=user, confirmed=True).exists()
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()
        if had:
            activity.record(
                ActivityEvent.Type.TOTP_DISABLED,
                summary=gettext_noop("Two-factor authentication was removed."),
                account=user,
                actor=actor,
                target=f"user:{user.pk}",
                staff_action=user.is_panel_staff or actor is None,
            )
    return had


def enrol_from_shell(user: User) -> TOTPDevice:
    """Enrol a confirmed device at once (the operator's `totp_enroll`); the caller prints its secret."""
    with transaction.atomic():
        _lock(user)
        if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
            raise TwoFactorError(
                "This user has two-factor authentication already; use --reset to remove it first.",
                "totp_enabled",
            )
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=True)
        activity.record(
            ActivityEvent.Type.TOTP_ENABLED,
            summary=gettext_noop("Two-factor authentication was enabled by an operator."),
            account=user,
            target=f"user:{user.pk}",
            staff_action=True,
        )
        return device
