"""Activity log entries for Django's auth signals: logins, failed logins (for accounts that exist) and
logouts, with the request's IP address and user agent; and the second factor's cached answers dropped
whenever a device changes (also from the Django admin). Connected in `PanelConfig.ready`."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils.translation import gettext_noop
from django_otp.plugins.otp_totp.models import TOTPDevice

from panel.accounts import totp
from panel.activity import log as activity
from panel.models import ActivityEvent


@receiver(user_logged_in, dispatch_uid="panel.activity.login")
def record_login(sender, request, user, **kwargs) -> None:
    two_factor = getattr(user, "otp_device", None) is not None
    activity.record(
        ActivityEvent.Type.LOGIN,
        summary=gettext_noop("Logged in with a second factor.") if two_factor else gettext_noop("Logged in."),
        account=user,
        actor=user,
        target=f"user:{user.pk}",
        request=request,
    )


@receiver(user_login_failed, dispatch_uid="panel.activity.login_failed")
def record_login_failed(sender, credentials, request=None, **kwargs) -> None:
    email = (credentials or {}).get("username") or (credentials or {}).get("email") or ""
    if not isinstance(email, str) or not email.strip():
        return
    user = get_user_model().objects.filter(email__iexact=email.strip()).first()
    if user is None:
        return
    activity.record(
        ActivityEvent.Type.LOGIN_FAILED,
        summary=gettext_noop("Failed login: wrong password."),
        account=user,
        target=f"user:{user.pk}",
        request=request,
    )


@receiver(user_logged_out, dispatch_uid="panel.activity.logout")
def record_logout(sender, request, user, **kwargs) -> None:
    if user is None or not getattr(user, "pk", None):
        return
    activity.record(
        ActivityEvent.Type.LOGOUT,
        summary=gettext_noop("Logged out."),
        account=user,
        actor=user,
        target=f"user:{user.pk}",
        request=request,
    )


@receiver(post_save, sender=TOTPDevice, dispatch_uid="panel.accounts.totp.saved")
@receiver(post_delete, sender=TOTPDevice, dispatch_uid="panel.accounts.totp.deleted")
def keep_the_totp_flag(sender, instance, **kwargs) -> None:
    """Every device change (the panel's services, the operator command, the Django admin) sets the user's
    `totp_enabled` flag in the same transaction."""
    totp.sync_flag(instance.user_id)
