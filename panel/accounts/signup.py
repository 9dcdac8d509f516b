"""A browser sign-up: an unverified account held to the new-account limits, and its verification mail.
(A password change revokes the account's API tokens in `User.save`, whichever way it is made.)"""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest
from django.utils.translation import gettext_noop

from panel.accounts import email_verification
from panel.activity import log as activity
from panel.models import ActivityEvent, User


def sign_up(request: HttpRequest, form) -> User:
    """Create the account of a valid `SignupForm`: unverified and held to the new-account limits until
    its first payment; the verification link is mailed when the account is committed."""
    with transaction.atomic():
        form.instance.email_verified = False
        form.instance.new_account_limits = True
        user = form.save()
        activity.record(
            ActivityEvent.Type.SIGNUP,
            summary=gettext_noop("Signed up as %(email)s."),
            data={"email": user.email},
            account=user,
            actor=user,
            target=f"user:{user.pk}",
            request=request,
        )
        email_verification.send(request, user)
    return user
