"""What the panel knows about the request being served, for the activity log and the abuse limits: the
client's address (`client_ip`, which believes X-Forwarded-For only from TRUSTED_PROXIES), its user agent
and user. `panel.activity.log.RequestContextMiddleware` sets it for the request's duration; workers and
commands have none. It imports no models, so that models may ask it too."""

from __future__ import annotations

import ipaddress
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class RequestInfo:
    ip: str | None
    user_agent: str
    user: Any = None  # the request's user (possibly anonymous)


current: ContextVar[RequestInfo | None] = ContextVar("panel_activity_request", default=None)


def _address(text: str | None) -> Address | None:
    """An address as written in REMOTE_ADDR or X-Forwarded-For, or None when it is not one."""
    try:
        address = ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@cache
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"TRUSTED_PROXIES: {entry!r} is not an address or network (e.g. 127.0.0.1, 10.0.0.0/8)."
            ) from None
    return tuple(networks)


def trusted_proxies() -> tuple[Network, ...]:
    """The TRUSTED_PROXIES setting as networks."""
    return _networks(tuple(entry for entry in settings.TRUSTED_PROXIES if entry.strip()))


def _trusted(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address. REMOTE_ADDR, unless it is one of TRUSTED_PROXIES: then the right-most
    X-Forwarded-For entry that is not a trusted proxy (each proxy appends the address it saw, so entries
    left of the first untrusted one may be made up by the client). Malformed entries are skipped."""
    remote = _address(request.META.get("REMOTE_ADDR"))
    if remote is None:
        return None
    networks = trusted_proxies()
    if not networks or not _trusted(remote, networks):
        return str(remote)
    for hop in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        address = _address(hop)
        if address is not None and not _trusted(address, networks):
            return str(address)
    return str(remote)


def request_info(request: HttpRequest) -> RequestInfo:
    return RequestInfo(
        client_ip(request), (request.META.get("HTTP_USER_AGENT") or "")[:300], getattr(request, "user", None)
    )


def current_user() -> Any:
    """The authenticated user of the request being served, or None (workers, commands, anonymous)."""
    info = current.get()
    user = info.user if info else None
    return user if getattr(user, "is_authenticated", False) else None
