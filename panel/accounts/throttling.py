"""Abuse controls for the browser: failed-login lock-out with back-off, and fixed-window rate limits per
client address (sign-ups, password resets, verification mails). The API's per-user limit is DRF
throttling (`panel.api.throttling`). Client addresses are `panel.activity.log.client_ip`'s, counted per IPv4
address or IPv6 /64 (`address_key`).

Everything lives in the Django cache (Redis when REDIS_URL is set), with atomic `add`/`incr`, so that
several web workers share one count. Entries carry their own deadline (`now()` below, which tests move),
and their cache lifetime is only a clean-up bound.

Login lock-out: LOGIN_FAILURE_LIMIT failures for an account within LOGIN_FAILURE_WINDOW seconds lock the
account for LOGIN_LOCKOUT_SECONDS, doubled on each further lock-out within LOGIN_LOCKOUT_MEMORY seconds,
at most LOGIN_LOCKOUT_MAX_SECONDS. The same applies per client address with LOGIN_IP_FAILURE_LIMIT. While
locked, the right password is refused too. Accounts are keyed by the normalised email address whether or
not such an account exists, so a lock-out reveals nothing.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import ngettext

PREFIX = "panel:throttle:"
_PERIODS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def now() -> float:
    """The throttles' clock (seconds since the epoch). Tests move it with monkeypatch."""
    return time.time()


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _redis_client():
    """The Redis client behind the default cache, or None when the cache is not Redis (the demo's)."""
    backend = getattr(cache, "_cache", None)
    if backend is None or not hasattr(backend, "get_client"):  # django.core.cache.backends.redis
        return None
    return backend.get_client(write=True)


def _increment(key: str, timeout: int) -> int:
    """Atomically add one to a counter, creating it with `timeout` when it does not exist. On Redis, one round
    trip: INCR creates a missing counter at 1, and EXPIRE NX gives it its lifetime (never extends one)."""
    client = _redis_client()
    if client is not None:
        full_key = cache.make_and_validate_key(key)
        pipeline = client.pipeline(transaction=False)
        pipeline.incr(full_key)
        pipeline.expire(full_key, timeout, nx=True)
        count, _expiry_set = pipeline.execute()
        return count
    cache.add(key, 0, timeout)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 0, timeout)
        return cache.incr(key)


@dataclass(frozen=True)
class Rate:
    limit: int
    period: int


@functools.lru_cache(maxsize=64)
def parse_rate(rate: str) -> Rate | None:
    """'5/h', '1200/min', '10/15m' -> Rate; '' or 'none' -> None (no limit)."""
    rate = (rate or "").strip().lower()
    if rate in {"", "none", "off"}:
        return None
    try:
        count, period = rate.split("/", 1)
        digits = "".join(ch for ch in period if ch.isdigit())
        unit = period[len(digits) :]
        return Rate(int(count), int(digits or 1) * _PERIODS[unit])
    except (KeyError, ValueError):
        raise ImproperlyConfigured(f"Bad rate {rate!r}: use e.g. '5/h', '10/min' or '100/15m'.") from None


def hit(scope: str, key: str, rate: str) -> int | None:
    """Count one request of `scope` from `key` against `rate` (a fixed window). Returns None when allowed,
    or the seconds until the window ends when over the limit (the request must then be refused)."""
    parsed = parse_rate(rate)
    if parsed is None:
        return None
    moment = now()
    window = int(moment // parsed.period)
    count = _increment(f"{PREFIX}{scope}:{_digest(key)}:{window}", parsed.period + 60)
    if count <= parsed.limit:
        return None
    return max(1, math.ceil((window + 1) * parsed.period - moment))


def address_key(ip: str | None) -> str:
    """What limits per client address count by: the IPv4 address, or the /64 network of an IPv6 address
    (one customer's line gets a whole /64, so rotating within it must not escape a limit)."""
    if not ip:
        return "unknown"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def hit_ip(scope: str, ip: str | None, rate: str) -> int | None:
    return hit(scope, address_key(ip), rate)


# --- Failed logins -------------------------------------------------------------------------------------


def _login_keys(username: str | None, ip: str | None) -> list[tuple[str, int]]:
    keys = []
    if username:
        keys.append((f"account:{_digest(username.strip().lower())}", settings.LOGIN_FAILURE_LIMIT))
    if ip:
        keys.append((f"ip:{_digest(address_key(ip))}", settings.LOGIN_IP_FAILURE_LIMIT))
    return keys


def login_locked_for(username: str | None, ip: str | None) -> int | None:
    """Seconds until a login for this account from this address is allowed again, or None."""
    moment = now()
    waits = []
    for key, _limit in _login_keys(username, ip):
        until = cache.get(f"{PREFIX}login:lock:{key}")
        if until is not None and until > moment:
            waits.append(math.ceil(until - moment))
    return max(waits) if waits else None


def login_failed(username: str | None, ip: str | None) -> int | None:
    """Record a failed login; returns the seconds of a lock-out it started, or None."""
    moment = now()
    window = settings.LOGIN_FAILURE_WINDOW
    started = []
    for key, limit in _login_keys(username, ip):
        if limit <= 0:
            continue
        bucket = int(moment // window)
        count = _increment(f"{PREFIX}login:fail:{key}:{bucket}", window + 60)
        if count < limit:
            continue
        # The failure that reaches the limit starts a lock-out (later ones are refused before they count).
        cache.delete(f"{PREFIX}login:fail:{key}:{bucket}")
        memory = settings.LOGIN_LOCKOUT_MEMORY
        lockouts = _increment(f"{PREFIX}login:lockouts:{key}", memory)
        seconds = min(
            settings.LOGIN_LOCKOUT_SECONDS * 2 ** min(lockouts - 1, 30), settings.LOGIN_LOCKOUT_MAX_SECONDS
        )
        cache.set(f"{PREFIX}login:lock:{key}", moment + seconds, int(seconds) + 60)
        started.append(int(seconds))
    return max(started) if started else None


def login_succeeded(username: str | None) -> None:
    """A successful login clears the account's failures and back-off (never the address's: one valid
    account must not let an address go on guessing others)."""
    if not username:
        return
    key = f"account:{_digest(username.strip().lower())}"
    bucket = int(now() // settings.LOGIN_FAILURE_WINDOW)
    cache.delete_many([f"{PREFIX}login:fail:{key}:{bucket}", f"{PREFIX}login:lockouts:{key}"])


def retry_message(seconds: int) -> str:
    """'Try again in 2 minutes.' in the active language."""
    if seconds < 120:
        return ngettext("Try again in %(count)d second.", "Try again in %(count)d seconds.", seconds) % {
            "count": seconds
        }
    minutes = math.ceil(seconds / 60)
    return ngettext("Try again in %(count)d minute.", "Try again in %(count)d minutes.", minutes) % {
        "count": minutes
    }


def reset() -> None:
    """Forget every count and lock-out (the test suite between tests; an operator after a false alarm).
    Only this module's keys are removed: the Redis database may hold other data (the Celery broker)."""
    client = _redis_client()
    if client is not None:
        pattern = cache.make_key(f"{PREFIX}*")
        keys = list(client.scan_iter(match=pattern, count=500))
        if keys:
            client.delete(*keys)
        return
    cache.clear()
