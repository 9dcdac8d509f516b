"""Email verification of browser sign-ups: a signed link (django.core.signing, valid for
EMAIL_VERIFICATION_MAX_AGE seconds, bound to the address it was sent to) and its check. Verifying is
idempotent; an expired or tampered link raises `LinkInvalid` with a reason the page can explain."""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext_noop

from billing.texts import language_of
from panel import mail
from panel.activity import log as activity
from panel.models import ActivityEvent, User

SALT = "panel.email-verification"


class LinkInvalid(Exception):
    def __init__(self, expired: bool):
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


def make_token(user: User) -> str:
    return signing.dumps({"u": user.pk, "e": user.email}, salt=SALT, compress=True)


def link(request: HttpRequest, user: User) -> str:
    return request.build_absolute_uri(reverse("verify-email", args=[make_token(user)]))


def send(request: HttpRequest, user: User) -> None:
    """Mail the verification link to the user's address, in the user's language (after the current
    transaction commits)."""
    context = {
        "user": user,
        "link": link(request, user),
        "days": settings.EMAIL_VERIFICATION_MAX_AGE // 86400,
    }
    language = language_of(user)
    with translation.override(language):
        subject = render_to_string("registration/verify_email_subject.txt", context).strip()
        body = render_to_string("registration/verify_email.txt", context)
    email = user.email
    transaction.on_commit(lambda: mail.send_in_language(language, subject, body, [email]))


def user_of(token: str) -> User:
    """The user a link was made for; raises LinkInvalid when it expired, was altered, or names an address
    the account no longer has."""
    try:
        data = signing.loads(token, salt=SALT, max_age=settings.EMAIL_VERIFICATION_MAX_AGE)
    except signing.SignatureExpired:
        raise LinkInvalid(expired=True) from None
    except signing.BadSignature:
        raise LinkInvalid(expired=False) from None
    user = User.objects.filter(pk=data.get("u"), is_active=True).first()
    if user is None or user.email != data.get("e"):
        raise LinkInvalid(expired=False)
    return user


def verify(token: str) -> User:
    """Mark the link's address verified (once; a second use changes nothing) and record it."""
    user = user_of(token)
    with transaction.atomic():
        changed = User.objects.filter(pk=user.pk, email_verified=False).update(email_verified=True)
        if changed:
            activity.record(
                ActivityEvent.Type.EMAIL_VERIFIED,
                summary=gettext_noop("Verified the email address %(email)s."),
                data={"email": user.email},
                account=user,
                actor=user,
                target=f"user:{user.pk}",
            )
    user.email_verified = True
    return user
