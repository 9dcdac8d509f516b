"""Leases on running operations, as Kubernetes' leases and Nova's service start-up do it: the worker that
runs an operation holds a lease (its owner, "node/boot/pid", and an expiry) that a heartbeat thread renews
while the work goes on.

- A lease is taken with compare-and-swap under the operation's row lock (`lease`): nobody holds it, or the
  holder's lease ran out. Two workers never both hold it; one that stalled past its expiry finds out at its
  next step (below).
- Every close of an operation is conditional on the lease as it was taken (operations._close), and a worker
  that lost its lease (it stalled past the expiry and another worker resumed the work) stops at its next
  step (`check`, fed by the heartbeat, raises LeaseLost) and undoes nothing.
- Lease times are the database's clock (`db_now`), not each machine's: workers, beat and the web may run
  on machines whose clocks drift apart.
- The reaper sends again every open operation whose lease ran out (`resume_expired`), and a worker that
  starts sends again the operations its previous run (same node name, another boot) held once their
  leases are seen not to be renewed (`resume_orphans`, one heartbeat later): a killed worker's work resumes
  in seconds, not after the lease or the broker's visibility timeout.
- An operation waiting for something (a worker to take its message, its turn on the host, a retry's
  back-off) has no owner and an expiry: it is sent again if nobody took it by then.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from hypervisor import routing
from panel import dispatch
from panel.models import Operation
from panel.servers import operation_states

log = logging.getLogger(__name__)

# Who this process is: the worker's node name (celery@host) and a token of this start of the worker, shared
# by its pool's child processes (forked after `worker_init`), then the process id.
_identity = {"node": socket.gethostname(), "boot": uuid.uuid4().hex[:12]}
# The operations this process runs now (their leases are renewed), those whose lease it is taking (between
# the check in `claim` and the heartbeat's start), those of them whose lease passed to another worker, and
# the process's heartbeat thread.
_held: set = set()
_starting: set = set()
_lost: set = set()
_held_lock = threading.Lock()
_heartbeat: dict[int, threading.Thread] = {}


class LeaseLost(Exception):
    """This worker's lease on the operation ran out and may be another worker's now: stop, undo nothing."""


def db_now() -> datetime:
    """The database's clock, which every process compares lease times against."""
    if connection.vendor != "postgresql":
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def worker_started(node: str) -> None:
    """Called once in a worker's main process before its pool starts (celery's worker_init)."""
    _identity.update(node=node, boot=uuid.uuid4().hex[:12])


def owner() -> str:
    return f"{_identity['node']}/{_identity['boot']}/{os.getpid()}"


def _node_prefix(node: str) -> str:
    return f"{node}/"


def duration() -> timedelta:
    return timedelta(seconds=settings.OPERATION_LEASE_SECONDS)


def claim(operation: Operation, now: datetime) -> bool:
    """Whether this worker may take the operation's lease (read under its row lock): nobody holds a live
    lease on it, or this process does but no longer runs it (a retry after an error). False when another
    worker holds it, or this process runs it or is starting to (a second delivery, taken by another thread
    of the process between the first's commit of the lease and its heartbeat). True marks it as starting
    here until `heartbeat` takes it over or `unclaim` gives it up."""
    if operation.lease_owner and operation.lease_expires_at is not None and operation.lease_expires_at >= now:
        if operation.lease_owner != owner():
            return False
    with _held_lock:
        if operation.pk in _held or operation.pk in _starting:
            return False
        _starting.add(operation.pk)
    return True


def unclaim(operation_id) -> None:
    """Give up a `claim` whose operation does not run after all (its turn has not come, or begin failed)."""
    with _held_lock:
        _starting.discard(operation_id)


def lease(now: datetime) -> tuple[str, datetime]:
    """This worker's lease taken at `now` (its owner and expiry), for the caller to save on the operation
    whose row lock it holds."""
    return owner(), now + duration()


def wait(operation: Operation, seconds: float) -> None:
    """Give the lease back while the operation waits `seconds` for a retry or its turn: nobody holds it, and
    the reaper sends it again if no worker took it a lease after that."""
    Operation.objects.filter(pk=operation.pk, lease_owner=operation.lease_owner).update(
        lease_owner="", lease_expires_at=db_now() + timedelta(seconds=seconds) + duration()
    )


def check(operation: Operation) -> None:
    """Raise LeaseLost when the heartbeat found that this worker no longer holds the operation's lease."""
    with _held_lock:
        lost = operation.pk in _lost
    if lost:
        raise LeaseLost(f"the lease on operation {operation.pk} passed to another worker")


def still_held(operation: Operation) -> bool:
    """Whether the operation is open and still under the lease this worker took (asked of the database)."""
    return Operation.objects.filter(
        pk=operation.pk, status__in=operation_states.OPEN, lease_owner=operation.lease_owner
    ).exists()


# The heartbeat: one thread per process renews the leases the process holds.


def _renew_once() -> None:
    with _held_lock:
        held = set(_held)
    if not held:
        return
    me = owner()
    renewed = Operation.objects.filter(pk__in=held, lease_owner=me, status__in=operation_states.OPEN).update(
        lease_expires_at=db_now() + duration()
    )
    if renewed < len(held):
        # Lost: closed, or another owner's now. (A row this thread cannot see, run inside a caller's open
        # transaction, as tests do, is not lost.)
        lost = set(
            Operation.objects.filter(pk__in=held)
            .exclude(lease_owner=me, status__in=operation_states.OPEN)
            .values_list("pk", flat=True)
        )
        with _held_lock:
            lost &= _held  # not those this process closed itself meanwhile (it no longer holds them)
            _lost.update(lost)
        if lost:
            log.warning("lost the lease on operation(s) %s", ", ".join(str(pk) for pk in lost))


def _beat() -> None:
    """Renew the held leases every third of a lease, the first time a third of a lease after the thread
    started (a lease just taken needs no renewal yet: an operation that ends sooner costs no renewal, and
    this thread no database connection); end (closing its connection) once the process holds none."""
    interval = max(0.5, settings.OPERATION_LEASE_SECONDS / 3)
    pid = os.getpid()
    try:
        while True:
            time.sleep(interval)
            with _held_lock:
                if not _held:
                    del _heartbeat[pid]
                    return
            try:
                close_old_connections()
                _renew_once()
            except DatabaseError as exc:  # Postgres restarting: the next beat reconnects
                log.warning("could not renew leases: %s", exc)
                connection.close()
            except Exception:
                log.exception("lease heartbeat failed")
    finally:
        connection.close()


@contextmanager
def heartbeat(operation: Operation) -> Iterator[None]:
    """Keep the operation's lease renewed while the block runs."""
    pid = os.getpid()
    with _held_lock:
        _held.add(operation.pk)
        _starting.discard(operation.pk)
        if pid not in _heartbeat:  # a process forked from one with a heartbeat has its own
            thread = threading.Thread(target=_beat, name="lease-heartbeat", daemon=True)
            _heartbeat[pid] = thread
            thread.start()
    try:
        yield
    finally:
        with _held_lock:
            _held.discard(operation.pk)
            _lost.discard(operation.pk)


# Sending again what nobody works on.


def _resend(operations: Iterator[tuple], now: datetime) -> int:
    """Release each (id, owner, expiry, region, type, params) as read, by compare-and-swap, and send it to a
    worker again."""
    sent = 0
    for pk, lease_owner, expires, region_id, operation_type, params in operations:
        released = Operation.objects.filter(
            pk=pk, status__in=operation_states.OPEN, lease_owner=lease_owner, lease_expires_at=expires
        ).update(
            lease_owner="", lease_expires_at=now + timedelta(seconds=settings.OPERATION_DISPATCH_SECONDS)
        )
        if released:
            log.info("sending operation %s again (lease of %r ran out or its owner is gone)", pk, lease_owner)
            limit = operation_states.time_limit(operation_type, params or {})
            dispatch.operation(pk, routing.queue_for_region(region_id), limit)
            sent += 1
    return sent


def resume_expired() -> int:
    """Send again every open operation, before its deadline, whose lease ran out."""
    now = db_now()
    expired = Operation.objects.filter(
        status__in=operation_states.OPEN, lease_expires_at__lt=now, deadline__gte=now
    ).values_list("pk", "lease_owner", "lease_expires_at", "server__region_id", "type", "params")
    return _resend(iter(expired), now)


def resume_orphans(node: str, settle: float | None = None) -> int:
    """At a worker's start: send again the open operations that an earlier run of this worker (the same node
    name, another boot) held. That run may have left pool processes behind that still work and renew their
    leases (a main process killed alone): so the leases are read, and after `settle` seconds (a heartbeat
    interval and a second) only those whose expiry has not moved are released, without waiting for them to
    run out."""
    mine = _node_prefix(node)
    current = f"{mine}{_identity['boot']}/"
    candidates = list(
        Operation.objects.filter(status__in=operation_states.OPEN, lease_owner__startswith=mine)
        .exclude(lease_owner__startswith=current)
        .values_list("pk", "lease_owner", "lease_expires_at", "server__region_id", "type", "params")
    )
    if not candidates:
        return 0
    time.sleep(settings.OPERATION_LEASE_SECONDS / 3 + 1 if settle is None else settle)
    return _resend(iter(candidates), db_now())
