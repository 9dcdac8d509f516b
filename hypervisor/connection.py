"""libvirt connections: one cached connection per (host URI, process), every call under a timeout.

libvirt calls block in C and can hang on a dead TCP peer, so each unit of work runs in a small thread
pool and the caller waits at most `LIBVIRT_TIMEOUT` seconds. A connection that timed out or reported a
transport error is dropped from the cache and reopened on the next call.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar
from urllib.parse import urlsplit

import libvirt
from django.conf import settings

from .secrets import SecretUnreadable

log = logging.getLogger(__name__)
Result = TypeVar("Result")

# Error codes and domains that mean "the link to the host is broken; trying again may work".
TRANSIENT_CODES = {
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_OPERATION_TIMEOUT,
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
}
TRANSIENT_DOMAINS = {libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE}

# libvirt's storage driver refuses pool-level calls (refresh, destroy, undefine, delete) with this internal
# error while a volume job (a volume being built by createXML, an upload or download stream being set up)
# holds the pool (storage_driver.c: `asyncjobs`). The pool is busy, not broken: the same call soon succeeds.
POOL_BUSY_TEXT = "asynchronous jobs running"
POOL_BUSY_FIRST_DELAY = 0.1  # seconds; doubled after each refusal
POOL_BUSY_MAX_DELAY = 2.0
POOL_BUSY_BUDGET = 30.0  # seconds of retrying before the refusal is raised (describe() calls it transient)


class HypervisorError(Exception):
    """A libvirt failure, carried with a readable message and whether a retry may help."""

    def __init__(self, message: str, transient: bool = False, code: int | None = None):
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.code = code


class HostUnreachable(HypervisorError):
    def __init__(self, message: str):
        super().__init__(message, transient=True)


# Transport failures and what they mean for an admin, most specific first.
READABLE = [
    ("Host key verification failed", "the host's SSH key does not match the key recorded at onboarding"),
    (
        "Permission denied (publickey",
        "the host refused the panel's SSH key: add it to the host's authorized_keys",
    ),
    ("Connection refused", "connection refused by {target}"),
    ("Cannot recv data", "the connection to {target} was lost"),
    ("client socket is closed", "the connection to {target} was lost"),
    ("Connection reset by peer", "the connection to {target} was lost"),
    ("No route to host", "no route to {target}"),
    ("Connection timed out", "connection to {target} timed out"),
    ("Could not resolve hostname", "cannot resolve the host name in {target}"),
    ("Name or service not known", "cannot resolve the host name in {target}"),
]


def _target(uri: str) -> str:
    parts = urlsplit(uri)
    if not parts.hostname:
        return "the local libvirtd"
    default_port = {"qemu+ssh": 22, "qemu+tls": 16514, "qemu+tcp": 16509}.get(parts.scheme, 0)
    return f"{parts.hostname}:{parts.port or default_port}"


def link_broken(error: libvirt.libvirtError) -> bool:
    """Whether the error says the link to the host is broken (the connection is dropped and reopened)."""
    return error.get_error_code() in TRANSIENT_CODES or error.get_error_domain() in TRANSIENT_DOMAINS


def pool_busy(error: libvirt.libvirtError) -> bool:
    """Whether libvirt refused a pool-level call because volume jobs are running on the pool."""
    return error.get_error_code() == libvirt.VIR_ERR_INTERNAL_ERROR and POOL_BUSY_TEXT in (
        error.get_error_message() or ""
    )


def when_pool_idle(call: Callable[[], Result], budget: float = POOL_BUSY_BUDGET) -> Result:
    """Make a pool-level libvirt call (`pool.refresh(0)`, destroy, undefine, delete), trying it again
    after a short back-off (0.1 s doubling to 2 s) while libvirt answers that the pool is busy, for at most
    `budget` seconds. Any other error, and a refusal that outlasts the budget, is raised as it came. The
    caller's unit of work needs a timeout (connection.run) longer than the budget."""
    deadline = time.monotonic() + budget
    delay = POOL_BUSY_FIRST_DELAY
    while True:
        try:
            return call()
        except libvirt.libvirtError as exc:
            if not pool_busy(exc) or time.monotonic() + delay > deadline:
                raise
            log.debug("storage pool busy, retrying in %.1f s: %s", delay, exc.get_error_message())
        time.sleep(delay)
        delay = min(delay * 2, POOL_BUSY_MAX_DELAY)


def describe(error: libvirt.libvirtError, uri: str = "") -> HypervisorError:
    """The libvirt error as a HypervisorError: readable, and transient when a retry may help (a broken link,
    a storage pool busy with another volume job)."""
    code = error.get_error_code()
    transient = link_broken(error) or pool_busy(error)
    message = error.get_error_message() or str(error)
    for needle, readable in READABLE:
        if needle in message:
            message = readable.format(target=_target(uri))
            break
    return HypervisorError(message, transient=transient, code=code)


def _silence_libvirt_stderr(_ctx, _err) -> None:
    """libvirt prints every error to stderr by default; we raise them instead."""


libvirt.registerErrorHandler(_silence_libvirt_stderr, None)

_cache: dict[tuple[int, str], libvirt.virConnect] = {}
_cache_lock = threading.Lock()
_executors: dict[tuple[int, str], ThreadPoolExecutor] = {}
_event_loop_pid: int | None = None


def _executor(uri: str) -> ThreadPoolExecutor:
    """A small thread pool per host: a call that hangs on one host holds a thread of that host's pool
    only, so other hosts' calls (and their health checks) go on."""
    key = (os.getpid(), uri)
    with _cache_lock:
        if key not in _executors:
            _executors[key] = ThreadPoolExecutor(max_workers=4, thread_name_prefix="libvirt")
        return _executors[key]


def ensure_event_loop() -> None:
    """Keepalive needs libvirt's event loop running in this process."""
    global _event_loop_pid
    if _event_loop_pid == os.getpid():
        return
    _event_loop_pid = os.getpid()
    libvirt.virEventRegisterDefaultImpl()

    def run() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=run, name="libvirt-events", daemon=True).start()


def _open(uri: str) -> libvirt.virConnect:
    if not uri.startswith("test:"):
        ensure_event_loop()
    conn = libvirt.open(uri)
    if not uri.startswith("test:"):
        try:
            conn.setKeepAlive(5, 3)
        except libvirt.libvirtError:
            log.debug("keepalive not supported on %s", uri)
    return conn


def _uri(target) -> tuple[str, Callable[[], str]]:
    """(cache key, how to build the URI to open) of a Host or a plain URI."""
    if isinstance(target, str):
        return target, lambda: target
    from .credentials import connect_uri

    return target.uri, lambda: connect_uri(target)


def _cached(uri: str) -> libvirt.virConnect | None:
    """The cached connection if its transport is alive (a local check, no round trip)."""
    with _cache_lock:
        conn = _cache.get((os.getpid(), uri))
    if conn is None:
        return None
    try:
        if conn.isAlive():
            return conn
    except libvirt.libvirtError:
        pass
    forget(uri)
    return None


def _connect(uri: str, open_uri: str) -> libvirt.virConnect:
    conn = _cached(uri)
    if conn is not None:
        return conn
    conn = _open(open_uri)
    with _cache_lock:
        existing = _cache.setdefault((os.getpid(), uri), conn)
    if existing is not conn:
        conn.close()
    return existing


def connection(target) -> libvirt.virConnect:
    """The cached connection for this process to a Host (or a plain URI), opened on first use."""
    uri, open_uri = _uri(target)
    return _cached(uri) or _connect(uri, open_uri())


def forget(uri: str) -> None:
    """Drop the cached connection (after a transport error or a timeout)."""
    with _cache_lock:
        conn = _cache.pop((os.getpid(), uri), None)
    if conn is not None and not uri.startswith("test:"):
        try:
            conn.close()
        except libvirt.libvirtError:
            pass


def run(target, work: Callable[[libvirt.virConnect], Result], timeout: float | None = None) -> Result:
    """Run `work(conn)` against a Host (or a plain URI), waiting at most `timeout` seconds.

    libvirt errors come back as HypervisorError; a timeout or a broken link as HostUnreachable.
    """
    timeout = settings.LIBVIRT_TIMEOUT if timeout is None else timeout

    uri, open_uri = _uri(target)
    # What to open is worked out here, in the caller's thread (it may read the database), and only
    # when there is no live connection; libvirt's threads never touch the database.
    try:
        prepared = uri if _cached(uri) is not None else open_uri()
    except (SecretUnreadable, OSError) as exc:
        raise HypervisorError(f"cannot prepare the connection: {exc}") from exc

    def call() -> Result:
        return work(_connect(uri, prepared))

    future = _executor(uri).submit(call)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        forget(uri)
        raise HostUnreachable(f"the host did not answer within {timeout:g} seconds") from None
    except libvirt.libvirtError as exc:
        if link_broken(exc):
            forget(uri)  # a busy pool, transient too, leaves the connection as it is
        raise describe(exc, uri) from exc
