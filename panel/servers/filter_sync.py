"""A server's network filter on its host follows its `Firewall` row: the version every change raises, the
worker that applies it (`apply_pending`) and the periodic job that sends again what is behind
(`resend_pending`). What customers and staff change is in panel.servers.firewall, which re-exports these.

Every change the filter on the host must follow (the rules, the default, the server's addresses:
`addresses_changed`) raises `Firewall.version` in the transaction that makes it, and sends
`panel.tasks.apply_network_filter` after the commit.

Workers take turns per server: a worker reads the version and what the filter must say, applies it on the
host and records the version it read as applied (a conditional update that never lowers the record, made
only when the version did not move meanwhile) while it holds the server's advisory lock
`pg_try_advisory_lock(7303, key)`, a session lock held outside any transaction around the libvirt call. So
no older filter can land on the host after a newer one was recorded applied. A worker that finds the turn
taken leaves at once: the holder reads the version again after each apply (and applies again if it moved),
and once more after it let go (and takes the turn again if a change came meanwhile), so the change is not
lost; the periodic job is the backstop. SQLite (the demo) has no advisory locks: there workers do not take
turns, and a worker whose later round fails after it wrote an older version lowers the record to that
version (pending again) instead.

This module imports neither panel.servers.actions nor panel.servers.locks: the lock order
(`LockOrder.firewalls`) calls `addresses_changed`.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterable, Iterator
from datetime import timedelta
from enum import Enum

from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_noop

from hypervisor import driver, routing
from hypervisor.connection import HypervisorError
from hypervisor.models import Host
from hypervisor.network_filter import FilterSpec, FirewallRule
from panel import dispatch
from panel.faults import pause_point
from panel.models import Firewall, Server
from panel.servers import operation_rows
from panel.servers.states import Status, Task

log = logging.getLogger(__name__)

# The periodic job sends again, at most RESEND_BATCH at a time, the filters still behind RESEND_AFTER after
# their last change or failed attempt (earlier, the message sent with the change is most likely being worked
# on; a failure touches `updated_at`, so what keeps failing goes to the back of the line).
RESEND_BATCH = 200
RESEND_AFTER = timedelta(seconds=10)
# A worker applies again while the firewall keeps changing under it, at most this many times; then it
# leaves it to the next message.
APPLY_ROUNDS = 5
GONE = (Status.DELETING, Status.DELETED)
# The first key of the advisory lock a worker holds while it applies a server's filter (7301: a host's turn
# for heavy operations; 7302: IP pool changes).
APPLY_LOCK = 7303
# Kept for staff in English, shown in their language (the `stored_text` filter).
HOST_DOWN = gettext_noop("the host is down")


# -- Reading


def firewall_of(server: Server) -> Firewall:
    """The server's firewall; an unsaved one (no rules, accept, nothing pending) when it has no row."""
    return operation_rows.read_firewall(server.pk) or Firewall(
        server_id=server.pk, version=0, applied_version=0
    )


def filter_spec(server: Server, firewall: Firewall | None = None) -> FilterSpec:
    """What the server's network filter says: its MAC, the addresses it may send from, its firewall."""
    firewall = firewall if firewall is not None else firewall_of(server)
    return FilterSpec(
        uuid=server.id,
        mac=server.mac or "",
        ipv4=tuple(server.ipv4),
        ipv6_networks=tuple(row.assigned_network for row in server.ipv6_addresses),
        inbound=tuple(
            FirewallRule(rule["protocol"], rule.get("ports"), tuple(rule["sources"]))
            for rule in firewall.inbound
        ),
        default_inbound=firewall.default_inbound,
    )


# -- Changes


def send_apply(server_id, region_id: int | None) -> None:
    """Send the apply task after the commit, to the queue of the server's region. A broker that fails is
    logged, not raised: the firewall is behind, and the periodic job sends it again within a minute."""

    def send() -> None:
        try:
            dispatch.send(
                dispatch.APPLY_NETWORK_FILTER, [str(server_id)], queue=routing.queue_for_region(region_id)
            )
        except Exception:
            log.exception("could not send the network filter of server %s; the periodic job will", server_id)

    transaction.on_commit(send)


def addresses_changed(server_ids: Iterable) -> None:
    """In the caller's transaction: the servers' addresses changed, so their filters must change too (raise
    their versions; the apply tasks are sent after the commit). Firewall rows are locked last, in server
    order, after whatever the caller holds (use it through `LockOrder.firewalls`)."""
    ids = sorted({str(server_id) for server_id in server_ids})
    if not ids:
        return
    with transaction.atomic():
        Firewall.objects.bulk_create([Firewall(server_id=pk) for pk in ids], ignore_conflicts=True)
        locked = list(
            Firewall.objects.select_for_update()
            .filter(pk__in=ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        Firewall.objects.filter(pk__in=locked).update(version=F("version") + 1, updated_at=timezone.now())
        for pk, region_id in Server.objects.filter(pk__in=locked).values_list("pk", "region_id"):
            send_apply(pk, region_id)


# -- The worker's side


class Outcome(Enum):
    APPLIED = "applied"  # applied and recorded (or nothing on a host to apply it to)
    FAILED = "failed"  # the host failed or is down: recorded for staff, left pending
    MOVED = "moved"  # applied, but the firewall changed meanwhile: apply again


def _record_applied(server_id, version: int) -> None:
    Firewall.objects.filter(pk=server_id, applied_version__lt=version).update(
        applied_version=version, applied_at=timezone.now(), apply_error=""
    )


def _record_failure(server_id, version: int, message: str, written: int | None = None) -> None:
    """Keep the reason for staff and touch `updated_at` (the periodic job sends the oldest first, so what
    keeps failing goes to the back). `written`: an older version this worker wrote to the host earlier in its
    turn, which may have landed after a newer one another worker recorded (only where workers do not take
    turns): the host may have that older one, so the row is marked pending again."""
    now = timezone.now()
    Firewall.objects.filter(pk=server_id, applied_version__lt=version).update(
        apply_error=message[:2000], updated_at=now
    )
    if written is not None:
        Firewall.objects.filter(pk=server_id, applied_version__gt=written).update(
            applied_version=written, apply_error=message[:2000], updated_at=now
        )


def _gone(server: Server) -> bool:
    return server.status in GONE or server.task == Task.DELETE


def _lock_key(server_id) -> int:
    """The server's second key of the advisory lock (two servers sharing one only take turns needlessly)."""
    return uuid.UUID(str(server_id)).int & 0x7FFFFFFF


@contextlib.contextmanager
def _apply_turn(server_id) -> Iterator[bool]:
    """Whether this worker has the server's turn to apply: the session-level advisory lock (APPLY_LOCK,
    the server's key), tried without waiting and let go at the end. It is held by the database session, not
    a transaction, so that no transaction stays open around the libvirt call; a worker that dies loses it
    with its session. Always True on databases without advisory locks (SQLite, the demo)."""
    if connection.vendor != "postgresql":
        yield True
        return
    key = _lock_key(server_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [APPLY_LOCK, key])
        taken = bool(cursor.fetchone()[0])
    try:
        yield taken
    finally:
        if taken:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [APPLY_LOCK, key])
            except DatabaseError:
                # The session broke: Postgres let the lock go with it.
                log.warning("could not let go of the network filter lock of server %s", server_id)


def _apply_once(server_id, written: int | None) -> tuple[Outcome, int | None]:
    """One round: read the version, apply what the filter must say, record it if nothing changed. `written`:
    the version an earlier round of this turn wrote to the host. Returns the outcome and the version written
    now (`written` when this round wrote none)."""
    firewall = Firewall.objects.filter(pk=server_id).first()
    server = Server.objects.select_related("host").filter(pk=server_id).first()
    if firewall is None or server is None:
        return Outcome.APPLIED, written
    version = firewall.version
    if server.host is None or _gone(server):
        # No domain to bind yet (its definition reads the firewall as it is then), or none any more (the
        # delete removes the filters with the domain).
        _record_applied(server_id, version)
        return Outcome.APPLIED, written
    if server.host.state == Host.State.DOWN:
        _record_failure(server_id, version, HOST_DOWN, written)
        return Outcome.FAILED, written
    spec = filter_spec(server, firewall)
    try:
        driver.apply_network_filter(server.host, spec)
    except HypervisorError as exc:
        log.warning("network filter of server %s on %s: %s", server_id, server.host, exc.message)
        _record_failure(server_id, version, exc.message, written)
        return Outcome.FAILED, written
    pause_point("firewall:applied")  # crash and race tests hold a worker here
    now = Server.objects.filter(pk=server_id).values_list("status", flat=True).first()
    if now is None or now in GONE:
        # Being deleted while this applied: the delete may have removed the filters before this defined
        # them again. Remove them (a domain still bound to them keeps them: its delete removes them).
        try:
            driver.remove_network_filters(server.host, server.id)
        except HypervisorError as exc:
            log.info("filters of server %s stay until its delete removes them: %s", server_id, exc.message)
        _record_applied(server_id, version)
        return Outcome.APPLIED, version
    if Firewall.objects.filter(pk=server_id, version=version).exists():
        _record_applied(server_id, version)
        return Outcome.APPLIED, version
    return Outcome.MOVED, version  # what this wrote is older than what the filter must say now


def _behind(server_id) -> bool:
    return Firewall.objects.filter(pk=server_id, applied_version__lt=F("version")).exists()


def apply_pending(server_id) -> bool:
    """Apply the server's network filter on its host as it stands now and record its version as applied.
    True when it is applied (or there is nothing on a host to apply it to); False when the host failed (the
    error is kept for staff, the periodic job sends it again), when another worker is applying it (that
    worker applies this change too), or when it kept changing meanwhile.

    Applying a version that is applied already rewrites nothing on the host (driver.apply_network_filter
    compares), so a message delivered twice, or again after its worker died half-way, does no harm and puts
    right what that worker left half-done."""
    rounds = 0
    while rounds < APPLY_ROUNDS:
        with _apply_turn(server_id) as mine:
            if not mine:
                log.info("network filter of server %s is being applied by another worker", server_id)
                return False
            outcome, written = Outcome.MOVED, None
            while outcome is Outcome.MOVED and rounds < APPLY_ROUNDS:
                rounds += 1
                outcome, written = _apply_once(server_id, written)
        if outcome is Outcome.FAILED:
            return False
        if outcome is Outcome.APPLIED and not _behind(server_id):
            # Read after letting go: a change whose worker found the turn taken while this held it shows
            # here, and this worker takes the turn again for it.
            return True
    log.info("network filter of server %s kept changing; left to the next message", server_id)
    return False


def resend_pending(limit: int = RESEND_BATCH) -> int:
    """Send the apply task again for firewalls still behind their version (the longest untouched first: a
    failed attempt counts as a touch), except on hosts that are down (they are sent again when the host is
    back). Returns how many were sent."""
    rows = (
        Firewall.objects.filter(
            applied_version__lt=F("version"), updated_at__lte=timezone.now() - RESEND_AFTER
        )
        .exclude(server__status=Status.DELETED)
        .exclude(server__host__state=Host.State.DOWN)
        .order_by("updated_at", "server_id")
        .values_list("server_id", "server__region_id")[:limit]
    )
    sent = 0
    for server_id, region_id in rows:
        try:
            dispatch.send(
                dispatch.APPLY_NETWORK_FILTER, [str(server_id)], queue=routing.queue_for_region(region_id)
            )
        except Exception:
            log.exception("could not send the network filter of server %s", server_id)
            break
        sent += 1
    return sent
