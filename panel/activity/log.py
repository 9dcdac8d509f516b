"""The activity log: `record` appends an event, in the caller's transaction, with the IP address and user
agent of the request being served (set by `RequestContextMiddleware`; none in workers and commands). The
address is `client_ip`'s (see `panel.request_context`: X-Forwarded-For only from TRUSTED_PROXIES).

Summaries are English messages marked with `gettext_noop` plus their values, rendered in the reader's
language when shown (`ActivityEvent.text`):

    activity.record(ActivityEvent.Type.SERVER_ORDERED, account=user, actor=user,
                    summary=gettext_noop("Ordered server %(name)s."), data={"name": server.name},
                    target=f"server:{server.id}")
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from panel.models import ActivityEvent, User
from panel.raw_rows import insert
from panel.request_context import client_ip, current, request_info

__all__ = ["RequestContextMiddleware", "client_ip", "ip_shown_to_account", "record", "request_info"]


class RequestContextMiddleware:
    """Makes the request's IP address and user agent available to `record` for the request's duration."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = current.set(request_info(request))
        try:
            return self.get_response(request)
        finally:
            current.reset(token)


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
    info = request_info(request) if request is not None else current.get()
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    event = ActivityEvent(
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
    insert(event)  # appended in a statement compiled once: every order and action records one
    return event


def ip_shown_to_account(event: ActivityEvent) -> str | None:
    """The event's address as the account holder may see it: only their own requests' (or those with no
    actor); the addresses of staff and admins acting on the account stay on the audit log."""
    if event.actor_id is None or event.actor_id == event.account_id:
        return event.ip
    return None


def record_host_change(host, actor: User, summary: str, data: dict | None = None) -> ActivityEvent:
    """A host change on the admins' audit log (hosts belong to no account); `host` is a hypervisor Host."""
    return record(
        ActivityEvent.Type.HOST_CHANGED,
        summary=summary,
        data={"host": host.name, **(data or {})},
        actor=actor,
        target=f"host:{host.pk}",
        staff_action=True,
    )
