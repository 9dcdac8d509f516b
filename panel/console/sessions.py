"""Console tokens: minted for a user, a server and a console type (`open_console`, from the page or the
API), redeemed once by the console proxy (`redeem`), and watched while the console is open
(`why_closed`). Only the token's SHA-256 is stored; a token is a URL-safe 256-bit random string.

Redeeming is a compare-and-swap on `connected_at`, so two connections racing with one token get one
console between them. A token is good for `CONSOLE_TOKEN_TTL` seconds (at most 60) after it is minted.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from panel.activity import log as activity
from panel.console.models import ConsoleSession
from panel.models import ActivityEvent, User
from panel.request_context import client_ip
from panel.servers.actions import Conflict
from panel.servers.models import Server
from panel.servers.states import Status

__all__ = [
    "OPEN_STATUSES",
    "Closing",
    "Grant",
    "Refused",
    "closing",
    "end",
    "open_console",
    "redeem",
    "why_closed",
]

MAX_TTL = 60
# The statuses a server's console may be opened in and stays open in.
OPEN_STATUSES = frozenset({Status.RUNNING, Status.RESCUE})

SUMMARIES = {
    ConsoleSession.Type.VNC: gettext_noop("Opened the graphical console of server %(name)s."),
    ConsoleSession.Type.SERIAL: gettext_noop("Opened the serial console of server %(name)s."),
}
NOT_RUNNING = _("The server is not running: start it to open its console.")


class Refused(Exception):
    """The proxy refuses a connection (the message says why; it names no other account's objects)."""


@dataclass(frozen=True)
class Grant:
    """What a redeemed token opens: the session and the server's domain."""

    session_id: int
    server_id: str
    type: str
    user_id: int


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ttl() -> int:
    return max(1, min(int(settings.CONSOLE_TOKEN_TTL), MAX_TTL))


def page_origin(request: HttpRequest) -> str:
    """The origin of the page a request comes from, as a browser writes it in an Origin header."""
    return f"{request.scheme}://{request.get_host()}"


def proxy_url(request: HttpRequest) -> str:
    """The ws:// or wss:// base URL of the console proxy: CONSOLE_URL, or the proxy's port on the host the
    request came to (the demo and a single machine)."""
    if settings.CONSOLE_URL:
        return settings.CONSOLE_URL.rstrip("/")
    host = urlsplit(f"//{request.get_host()}").hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    port = settings.CONSOLE_BIND.rsplit(":", 1)[-1]
    scheme = "wss" if request.is_secure() else "ws"
    return f"{scheme}://{host}:{port}/console"


def may_open(user: User, server: Server) -> bool:
    """Whether the user may open this server's console: its owner, or staff."""
    return server.owner_id == user.pk or user.is_panel_staff


def open_console(server: Server, user: User, console_type: str, request: HttpRequest) -> tuple[str, datetime]:
    """Mint a single-use token for the server's console of `console_type` (vnc or serial) and record it in
    the activity log; returns the URL to connect to and when the token expires. Conflict when the server
    is not running. The caller has checked that `user` may see the server."""
    if console_type not in ConsoleSession.Type.values:
        raise ValueError(f"unknown console type {console_type!r}")
    if server.status not in OPEN_STATUSES:
        raise Conflict(str(NOT_RUNNING))
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        session = ConsoleSession.objects.create(
            token_hash=token_hash(token),
            server=server,
            user=user,
            type=console_type,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl()),
            ip=client_ip(request),
            origin=page_origin(request),
        )
        activity.record(
            ActivityEvent.Type.CONSOLE_OPENED,
            account=server.owner,
            actor=user,
            summary=SUMMARIES[console_type],
            data={"name": server.name, "type": console_type},
            target=f"server:{server.id}",
            staff_action=user.pk != server.owner_id or user.is_panel_staff,
            request=request,
        )
    return f"{proxy_url(request)}/{token}", session.expires_at


def allowed_origins(session: ConsoleSession) -> set[str]:
    return {session.origin, *settings.CONSOLE_ALLOWED_ORIGINS} - {""}


def redeem(token: str, origin: str | None, ip: str | None) -> Grant:
    """Use a token, once: the proxy calls this when a websocket arrives. A browser's connection (one with
    an Origin header) must come from the page's origin or one of CONSOLE_ALLOWED_ORIGINS; clients that are
    not browsers send none. Raises Refused with the reason."""
    session = (
        ConsoleSession.objects.select_related("server", "user").filter(token_hash=token_hash(token)).first()
    )
    now = timezone.now()
    if session is None:
        raise Refused("unknown console token")
    if origin is not None and origin not in allowed_origins(session):
        raise Refused("the console token was not issued to this origin")
    if session.connected_at is not None:
        raise Refused("the console token was used already")
    if session.expires_at <= now:
        raise Refused("the console token has expired")
    closed = why_closed(session)
    if closed is not None:
        raise Refused(closed.reason)
    if session.server.status not in OPEN_STATUSES:
        raise Refused("the server is not running")
    used = ConsoleSession.objects.filter(pk=session.pk, connected_at__isnull=True).update(
        connected_at=now, connected_ip=ip
    )
    if not used:
        raise Refused("the console token was used already")
    return Grant(session.pk, str(session.server_id), session.type, session.user_id)


class Closing(NamedTuple):
    """Why the panel closes an open console: the websocket close code (the page words each in the reader's
    language) and a reason in English (the close frame's reason, the session's `end_reason`)."""

    code: int
    reason: str


SUSPENDED = Closing(4001, "the server was suspended")
DELETED = Closing(4002, "the server was deleted")
NOT_YOURS = Closing(4003, "the server is no longer this account's")
INACTIVE = Closing(4003, "the account is no longer active")
# Not the panel's doing: the guest's end went away (the server stopped or restarted).
GUEST_ENDED = Closing(4004, "the server's console ended")


def why_closed(session: ConsoleSession | int) -> Closing | None:
    """Why an open console must close now (the server was suspended or deleted, or is no longer the
    user's, or the user was deactivated), or None while it may stay open."""
    if not isinstance(session, ConsoleSession):
        session = ConsoleSession.objects.select_related("server", "user").get(pk=session)
    server, user = session.server, session.user
    if not user.is_active:
        return INACTIVE
    if server.status == Status.SUSPENDED:
        return SUSPENDED
    if server.status in (Status.DELETING, Status.DELETED):
        return DELETED
    if not may_open(user, server):
        return NOT_YOURS
    return None


def closing(session_ids) -> dict[int, Closing]:
    """Of these open consoles, the ones that must close now and why (one query)."""
    session_ids = set(session_ids)
    sessions = ConsoleSession.objects.select_related("server", "user").filter(pk__in=session_ids)
    reasons = {session.pk: why_closed(session) for session in sessions}
    # A session that is gone went with its server (or its user).
    reasons.update({pk: DELETED for pk in session_ids - set(reasons)})
    return {pk: reason for pk, reason in reasons.items() if reason is not None}


def end(session_id: int, reason: str) -> None:
    """Record that an open console ended (once)."""
    ConsoleSession.objects.filter(pk=session_id, ended_at__isnull=True).update(
        ended_at=timezone.now(), end_reason=reason[:200]
    )
