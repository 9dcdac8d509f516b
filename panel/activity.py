"""The activity log: `record` appends an event, in the caller's transaction, with the IP address and user
agent of the request being served (set by `RequestContextMiddleware`; none in workers and commands).

Summaries are English messages marked with `gettext_noop` plus their values, rendered in the reader's
language when shown (`ActivityEvent.text`):

    activity.record(ActivityEvent.Type.SERVER_ORDERED, account=user, actor=user,
                    summary=gettext_noop("Ordered server %(name)s."), data={"name": server.name},
                    target=f"server:{server.id}")
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse

from .models import ActivityEvent, User


@dataclass(frozen=True)
class RequestInfo:
    ip: str | None
    user_agent: str


_current: ContextVar[RequestInfo | None] = ContextVar("panel_activity_request", default=None)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR (behind a proxy, the proxy sets it; see SECURE_PROXY_SSL_HEADER
    and the README's deployment notes)."""
    return request.META.get("REMOTE_ADDR") or None


def request_info(request: HttpRequest) -> RequestInfo:
    return RequestInfo(client_ip(request), (request.META.get("HTTP_USER_AGENT") or "")[:300])


class RequestContextMiddleware:
    """Makes the request's IP address and user agent available to `record` for the request's duration."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _current.set(request_info(request))
        try:
            return self.get_response(request)
        finally:
            _current.reset(token)


def record(
    type: str,
    *,
    summary: str,
    data: dict | None = None,
    account: User | None = None,
    actor: User | None = None,
    target: str = "",
    staff_action: bool = False,
    request: HttpRequest | None = None,
) -> ActivityEvent:
    """Append one event. `account` is whose log it belongs to; `actor` who did it; `staff_action` puts it
    on the admins' audit log too (set it for what staff and admins do)."""
    info = request_info(request) if request is not None else _current.get()
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    return ActivityEvent.objects.create(
        type=type,
        summary=summary,
        data=data or {},
        account=account,
        actor=actor,
        target=target[:200],
        staff_action=staff_action,
        ip=info.ip if info else None,
        user_agent=info.user_agent if info else "",
    )
