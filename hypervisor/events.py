"""libvirt lifecycle events of every ready host's domains, as they happen.

`EventListener` keeps one libvirt connection per ready host (it re-reads the Host table every
`EVENTS_HOST_REFRESH_SECONDS`, so hosts added, removed, or leaving or entering the ready state are picked
up), registers for domain lifecycle events and for the connection's close, keeps the connection alive
(keepalive) and reconnects with back-off (`EVENTS_RECONNECT_MIN_SECONDS` doubling up to
`EVENTS_RECONNECT_MAX_SECONDS`) when it closes or the host does not answer.

Threads, and which of them touch the database:

- libvirt's default event loop (`connection.ensure_event_loop`) runs the callbacks. They only put what
  happened on a queue: no database, no libvirt call.
- One watcher thread per host opens the connection, registers, waits for it to close (or for the listener
  to let the host go) and reconnects. No database: the URI to open is prepared by the caller of `run`.
- The applier thread takes what the queue holds, in order: each `LifecycleEvent` goes to the caller's
  `on_event`, and after each (re)connection to a host `on_connected(host_id)` runs, so that whatever
  changed while the host was not listened to is caught up (the panel reconciles the host). It closes its
  database connections between items and when it ends.
- The thread that calls `run` (the `listen_events` management command's main thread) reads the Host table.

The hypervisor layer knows servers only as domain UUIDs: an event names the host, the domain's UUID, what
happened and the power state it implies (`power_state_of`). Since a queued event may be applied after
later changes (an operation that stopped and started the domain again, a rebuild that undefined and
defined it), `LifecycleEvent.current_power_state` asks the host for the domain's state at the moment the
event is applied.

Simulated hosts (`test:` URIs) are skipped unless `include_simulated` is set: libvirt's test driver lives
inside each process, so a listener in its own process would only see its own, empty, simulated host.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import libvirt
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections

from .connection import describe, ensure_event_loop
from .credentials import connect_uri
from .models import Host
from .power_state import PowerState, from_libvirt

log = logging.getLogger(__name__)

# Keepalive as hypervisor.connection sets it: a probe every 5 s, the connection closed after 3 unanswered.
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3
# A connection that stayed up this long resets the back-off: the next loss reconnects at once.
STABLE_SECONDS = 30.0
# How often a watcher checks its connection besides the close callback (a local check, no round trip).
ALIVE_CHECK_SECONDS = 1.0

# libvirt's lifecycle events: (name, power state the domain is in after it, or None for no change).
EVENTS: dict[int, tuple[str, PowerState | None]] = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: ("defined", None),
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: ("undefined", PowerState.NONE),
    libvirt.VIR_DOMAIN_EVENT_STARTED: ("started", PowerState.RUNNING),
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: ("suspended", PowerState.PAUSED),
    libvirt.VIR_DOMAIN_EVENT_RESUMED: ("resumed", PowerState.RUNNING),
    libvirt.VIR_DOMAIN_EVENT_STOPPED: ("stopped", PowerState.SHUTOFF),
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: ("shutdown", PowerState.SHUTTING_DOWN),
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: ("pmsuspended", PowerState.SUSPENDED),
    libvirt.VIR_DOMAIN_EVENT_CRASHED: ("crashed", PowerState.CRASHED),
}

# The details worth a word in the log, per event (libvirt's virDomainEvent*DetailType).
DETAILS: dict[int, tuple[str, ...]] = {
    libvirt.VIR_DOMAIN_EVENT_STARTED: ("booted", "migrated", "restored", "from snapshot", "wakeup"),
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: (
        "paused",
        "migrated",
        "I/O error",
        "watchdog",
        "restored",
        "from snapshot",
        "API error",
        "post-copy",
        "post-copy failed",
    ),  # fmt: skip
    libvirt.VIR_DOMAIN_EVENT_RESUMED: ("unpaused", "migrated", "from snapshot", "post-copy"),
    libvirt.VIR_DOMAIN_EVENT_STOPPED: (
        "shut down",
        "destroyed",
        "crashed",
        "migrated",
        "saved",
        "failed",
        "from snapshot",
    ),  # fmt: skip
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: ("finished", "by the guest", "by the host"),
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: ("memory", "disk"),
    libvirt.VIR_DOMAIN_EVENT_CRASHED: ("panicked", "crashloaded"),
}

CLOSE_REASONS = {
    libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "a transport error",
    libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "end of file (the host closed it)",
    libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "keepalive timeout",
    libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "closed by the client",
}


def power_state_of(event: int, detail: int = 0) -> PowerState | None:
    """The power state a domain is in after a lifecycle event (`PowerState.NONE`: it no longer exists),
    or None for an event that changes no power state (defined) or that libvirt added after this table."""
    return EVENTS.get(event, ("", None))[1]


def describe_event(event: int, detail: int) -> str:
    """The event in words for the log: "stopped (destroyed)"."""
    name = EVENTS.get(event, (f"event {event}", None))[0]
    details = DETAILS.get(event, ())
    return f"{name} ({details[detail]})" if 0 <= detail < len(details) else name


class Subscription:
    """The lifecycle events of one connection's domains, handed to `sink` as `LifecycleEvent`s.

    `sink` is called in libvirt's event-loop thread: it must only queue the event (no database, no libvirt
    call, nothing that blocks). The subscription also answers `LifecycleEvent.current_power_state` over
    the same connection, from any thread, until it is closed.
    """

    def __init__(
        self,
        conn: libvirt.virConnect,
        host_id: int,
        host_name: str,
        sink: Callable[[LifecycleEvent], object],
    ):
        self.conn = conn
        self.host_id = host_id
        self.host_name = host_name
        self.sink = sink
        self._lock = threading.Lock()
        self._open = True
        ensure_event_loop()  # the test driver queues its events on the loop's timer
        self._callback_id = conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
        )

    def _on_lifecycle(
        self, _conn: libvirt.virConnect, domain: libvirt.virDomain, event: int, detail: int, _opaque: object
    ) -> None:
        state = power_state_of(event, detail)
        if state is None:
            return
        uuid = domain.UUIDString()  # local: the domain handle carries its UUID
        self.sink(LifecycleEvent(self.host_id, self.host_name, uuid, event, detail, state, self))

    def power_state(self, uuid: str) -> PowerState | None:
        """The domain's power state now (`PowerState.NONE`: no such domain), or None when the connection
        cannot tell (closed, or broken)."""
        with self._lock:
            if not self._open:
                return None
            try:
                state, _reason = self.conn.lookupByUUIDString(uuid).state()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return PowerState.NONE
                log.info("events: cannot ask for the state of domain %s: %s", uuid, describe(exc).message)
                return None
        return from_libvirt(state)

    def close(self, close_connection: bool = True) -> None:
        """Stop the events (and answers); close the connection too unless it is someone else's."""
        with self._lock:
            self._open = False
            steps = [lambda: self.conn.domainEventDeregisterAny(self._callback_id)]
            if close_connection:
                steps += [self.conn.unregisterCloseCallback, self.conn.close]
            for step in steps:
                try:
                    step()
                except libvirt.libvirtError:
                    pass  # a dead connection refuses to deregister; closing it is what matters


@dataclass(frozen=True)
class LifecycleEvent:
    """A lifecycle event of a domain on a host, as the applier hands it to `on_event`."""

    host_id: int
    host_name: str
    server_id: str  # the domain's UUID (the panel's server id)
    event: int  # libvirt's virDomainEventType
    detail: int
    power_state: PowerState  # what the event implies (`power_state_of`); NONE: the domain was undefined
    subscription: Subscription | None = field(default=None, repr=False, compare=False)

    @property
    def description(self) -> str:
        return describe_event(self.event, self.detail)

    def current_power_state(self) -> PowerState | None:
        """The domain's power state now, asked of the host over the listener's connection
        (`PowerState.NONE`: no such domain any more); None when the host cannot tell, because the
        connection is gone (reconnecting catches up). Without a connection (an event made by hand), the
        state the event implies."""
        if self.subscription is None:
            return self.power_state
        return self.subscription.power_state(self.server_id)


@dataclass(frozen=True)
class _Connected:
    host_id: int
    host_name: str


_STOP = object()


def _setting(given: float | None, name: str) -> float:
    """An argument if given, else the setting of that name."""
    return float(given if given is not None else getattr(settings, name))


def _signature(host: Host) -> tuple:
    """What a watcher was started with: when it changes, the host is listened to anew."""
    return (
        host.name,
        host.uri,
        host.ssh_host_keys,
        host.tls_ca_cert,
        host.tls_client_cert,
        host.tls_client_key,
    )


class _HostWatcher:
    """A thread that keeps one host's connection open and registered, reconnecting with back-off."""

    def __init__(self, listener: EventListener, host: Host, open_uri: str):
        self.listener = listener
        self.host_id = host.pk
        self.name = host.name
        self.uri = host.uri
        self.open_uri = open_uri
        self.simulated = host.transport == "test"
        self.signature = _signature(host)
        self.connections = 0  # how many times it connected
        self.connected = threading.Event()
        self._stopping = False
        self._closed_reason: int | None = None
        self._wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"events-{host.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    # The watcher's thread.

    def _run(self) -> None:
        delay = self.listener.backoff_min
        while not self._stopping:
            try:
                conn = libvirt.open(self.open_uri)
            except libvirt.libvirtError as exc:
                log.warning(
                    "events: cannot connect to host %s: %s; trying again in %g s",
                    self.name,
                    describe(exc, self.uri).message,
                    delay,
                )
            else:
                connected_at = time.monotonic()
                self._listen(conn)
                if self._stopping:
                    break
                if time.monotonic() - connected_at >= STABLE_SECONDS:
                    delay = self.listener.backoff_min
                log.warning("events: lost the connection to host %s; reconnecting in %g s", self.name, delay)
            self._wake.clear()  # a close callback may have set it: wait the whole delay
            if self._stopping:
                break
            self._wake.wait(delay)
            delay = min(delay * 2, self.listener.backoff_max)
        log.info("events: stopped listening to host %s", self.name)

    def _listen(self, conn: libvirt.virConnect) -> None:
        """Register on a new connection, wait until it closes or the watcher stops, then close it."""
        self._closed_reason = None
        self._wake.clear()
        try:
            if not self.simulated:
                try:
                    conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
                except libvirt.libvirtError as exc:
                    log.info("events: no keepalive on host %s: %s", self.name, describe(exc).message)
            conn.registerCloseCallback(self._on_close, None)
            subscription = Subscription(conn, self.host_id, self.name, self.listener._queue.put)
        except libvirt.libvirtError as exc:
            message = describe(exc, self.uri).message
            log.warning("events: cannot register with host %s: %s", self.name, message)
            try:
                conn.close()
            except libvirt.libvirtError:
                pass
            return
        self.connections += 1
        self.connected.set()
        log.info("events: listening to lifecycle events of host %s (%s)", self.name, self.uri)
        self.listener._queue.put(_Connected(self.host_id, self.name))
        try:
            while not self._stopping and self._closed_reason is None:
                self._wake.wait(ALIVE_CHECK_SECONDS)
                try:
                    if not conn.isAlive():
                        break
                except libvirt.libvirtError:
                    break
        finally:
            self.connected.clear()
            subscription.close()
        if self._closed_reason is not None:
            reason = CLOSE_REASONS.get(self._closed_reason, str(self._closed_reason))
            log.warning("events: the connection to host %s closed: %s", self.name, reason)

    # libvirt's event-loop thread: no database, no libvirt call, nothing that blocks.

    def _on_close(self, _conn: libvirt.virConnect, reason: int, _opaque: object) -> None:
        self._closed_reason = reason
        self._wake.set()


class EventListener:
    """Listens to the lifecycle events of every ready host until `stop` is called.

    `on_event(event)` and `on_connected(host_id)` run in the applier thread, one at a time, in the order
    things happened on each host; an exception they raise is logged and the next item goes on.
    """

    def __init__(
        self,
        on_event: Callable[[LifecycleEvent], object],
        on_connected: Callable[[int], object],
        *,
        include_simulated: bool = False,
        refresh_seconds: float | None = None,
        backoff_min: float | None = None,
        backoff_max: float | None = None,
    ):
        self.on_event = on_event
        self.on_connected = on_connected
        self.include_simulated = include_simulated
        self.refresh_seconds = _setting(refresh_seconds, "EVENTS_HOST_REFRESH_SECONDS")
        self.backoff_min = _setting(backoff_min, "EVENTS_RECONNECT_MIN_SECONDS")
        self.backoff_max = max(self.backoff_min, _setting(backoff_max, "EVENTS_RECONNECT_MAX_SECONDS"))
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._watchers: dict[int, _HostWatcher] = {}
        self._skipped: set[int] = set()
        self._stop_requested = False
        self._applier = threading.Thread(target=self._apply, name="events-applier", daemon=True)

    def stop(self) -> None:
        """Ask `run` to end (safe to call from a signal handler: it only sets a flag)."""
        self._stop_requested = True

    def watchers(self) -> dict[int, _HostWatcher]:
        """The hosts listened to now, by id (for tests and status reports)."""
        return dict(self._watchers)

    def run(self) -> None:
        """Listen until `stop` is called: re-read the hosts every `refresh_seconds`, then let every host go,
        apply what is still queued, and close this thread's and the applier's database connections."""
        ensure_event_loop()
        self._applier.start()
        log.info("events: listener started (hosts re-read every %g s)", self.refresh_seconds)
        try:
            while not self._stop_requested:
                try:
                    self.refresh()
                except Exception:  # the listener outlives a bad refresh: the next one tries again
                    log.exception("events: refreshing the hosts failed")
                deadline = time.monotonic() + self.refresh_seconds
                while not self._stop_requested and time.monotonic() < deadline:
                    time.sleep(min(0.2, self.refresh_seconds))
        finally:
            self._shutdown()
            log.info("events: listener stopped")

    def refresh(self) -> None:
        """Start a watcher for each ready host that has none, stop those of hosts that are gone, no longer
        ready or reached differently (a changed URI or credentials: a new watcher takes over)."""
        close_old_connections()
        try:
            hosts = {host.pk: host for host in Host.objects.filter(state=Host.State.READY).order_by("pk")}
        except DatabaseError as exc:
            log.warning("events: cannot read the hosts: %s", exc)
            return
        finally:
            close_old_connections()
        for host_id, host in list(hosts.items()):
            if host.transport == "test" and not self.include_simulated:
                if host_id not in self._skipped:
                    log.info(
                        "events: host %s is simulated (%s): its events stay in its process", host, host.uri
                    )
                    self._skipped.add(host_id)
                del hosts[host_id]
        for host_id, watcher in list(self._watchers.items()):
            host = hosts.get(host_id)
            if host is None or _signature(host) != watcher.signature or not watcher.thread.is_alive():
                if host is None:
                    why = "it is no longer ready"
                elif not watcher.thread.is_alive():
                    why = "its watcher stopped"
                else:
                    why = "it is reached differently now"
                log.info("events: letting host %s go: %s", watcher.name, why)
                watcher.stop()
                del self._watchers[host_id]
        for host_id, host in hosts.items():
            if host_id in self._watchers:
                continue
            # Preparing the URI may read the database and write key files: here, not in a watcher.
            try:
                open_uri = connect_uri(host)
            except Exception as exc:  # a host that cannot be prepared must not stop the others
                log.warning("events: cannot prepare the connection to host %s: %s", host.name, exc)
                continue
            finally:
                close_old_connections()
            watcher = _HostWatcher(self, host, open_uri)
            self._watchers[host_id] = watcher
            watcher.start()

    def _shutdown(self) -> None:
        watchers = list(self._watchers.values())
        self._watchers.clear()
        for watcher in watchers:
            watcher.stop()
        deadline = time.monotonic() + 5  # a watcher stuck connecting to a dead host is a daemon thread
        for watcher in watchers:
            watcher.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._applier.is_alive():
            self._queue.put(_STOP)
            self._applier.join(timeout=30)
        connections.close_all()

    # The applier's thread.

    def _apply(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                close_old_connections()
                try:
                    if isinstance(item, LifecycleEvent):
                        log.info(
                            "events: host %s: domain %s %s", item.host_name, item.server_id, item.description
                        )
                        self.on_event(item)
                    else:
                        self.on_connected(item.host_id)
                except Exception:
                    log.exception("events: applying %r failed", item)
                finally:
                    close_old_connections()
        finally:
            connections.close_all()
