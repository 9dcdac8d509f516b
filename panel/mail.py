"""Mail through a Celery task. A slow or unreachable SMTP server then never holds up an order, a payment or
a billing run, and a delivery that fails is tried again later, from the message that failed on.

EMAIL_BACKEND = "panel.mail.QueuedEmailBackend" hands messages to the worker, which sends them with
MAIL_DELIVERY_BACKEND (SMTP in production). Messages travel as plain data (JSON), attachments in base64.

Mail to a user is written in the user's language (`User.language`): the caller renders subject and body
under `translation.override(user.language)` and sends them with `send_in_language`, whose Content-Language
header names it.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence

from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend

from billing.texts import mail_in
from panel import dispatch

log = logging.getLogger(__name__)


def to_data(message: EmailMessage) -> dict | None:
    """The message as JSON-able data; None for what cannot travel so (a prepared MIME attachment)."""
    attachments = []
    for attachment in message.attachments:
        if not isinstance(attachment, tuple):
            return None
        filename, content, mimetype = attachment
        raw = content.encode() if isinstance(content, str) else content
        attachments.append([filename, base64.b64encode(raw).decode(), mimetype])
    return {
        "subject": str(message.subject),
        "body": str(message.body),
        "from_email": message.from_email,
        "to": list(message.to),
        "cc": list(message.cc),
        "bcc": list(message.bcc),
        "reply_to": list(message.reply_to),
        "headers": dict(message.extra_headers),
        "alternatives": [
            [str(content), mimetype] for content, mimetype in getattr(message, "alternatives", [])
        ],
        "attachments": attachments,
        "content_subtype": message.content_subtype,
    }


def from_data(data: dict) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject=data["subject"],
        body=data["body"],
        from_email=data["from_email"],
        to=data["to"],
        cc=data["cc"],
        bcc=data["bcc"],
        reply_to=data["reply_to"],
        headers=data["headers"],
    )
    message.content_subtype = data.get("content_subtype", "plain")
    for content, mimetype in data["alternatives"]:
        message.attach_alternative(content, mimetype)
    for filename, content, mimetype in data["attachments"]:
        message.attach(filename, base64.b64decode(content), mimetype)
    return message


def send_in_language(
    language: str, subject: str, body: str, to: list[str], *, fail_silently: bool = False
) -> int:
    """One plain-text mail written in `language` (its Content-Language header), from DEFAULT_FROM_EMAIL."""
    return mail_in(language, subject, body, to).send(fail_silently=fail_silently)


def delivery_connection(fail_silently: bool = False):
    return get_connection(settings.MAIL_DELIVERY_BACKEND, fail_silently=fail_silently)


class QueuedEmailBackend(BaseEmailBackend):
    """Queues the messages as one Celery task; the worker delivers them."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        queued, direct = [], []
        for message in email_messages:
            if not message.recipients():
                continue
            data = to_data(message)
            (queued if data is not None else direct).append(data or message)
        try:
            if queued:
                dispatch.send(dispatch.DELIVER_MAIL, [queued])
            if direct:  # rare: a message with prepared MIME parts goes out at once
                delivery_connection(self.fail_silently).send_messages(direct)
        except Exception:
            if not self.fail_silently:
                raise
            log.exception("could not queue %s mails", len(queued) + len(direct))
            return 0
        return len(queued) + len(direct)
