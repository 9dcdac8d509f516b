"""Moving every server off a host: a drain (the host answers; each server is migrated to another host of
the region, live when it runs) and an evacuation (the host is down for good; each server is rebuilt
elsewhere from its latest backup or its image: panel.servers.evacuation).

Starting one (`start_drain`, `start_evacuation`) is one transaction: the host's row is locked (two starts
take turns, and the state read is the state kept), the host goes into maintenance (placement stops choosing
it; an evacuated host is also disabled by an admin, so that the health check never puts it back in
service should it answer again), the `HostMove` row and one `HostMoveItem` per server on the host are
inserted, the audit log records it, and the first `advance` is sent after the commit. At most one move runs
per host (a partial unique constraint, whose violation is the same 409 as the check before it).

`advance` is the step, run after the start and by the beat every 10 seconds (`panel.tasks`). Each of its
transactions locks the move's row first, without waiting (a second worker that finds it taken leaves): it
looks at the moving items' operations (done and off the host: moved; failed: failed with the operation's
error), then starts waiting items (the least recently tried first) while fewer than HOST_MOVE_CONCURRENCY
move, each in a transaction of its own. A server that is busy stays waiting and is tried again at the next
step; one whose state never allows the move (rescue mode, error for a drain) or for which no host has room
is listed failed with the reason. A start is the server's own action service (`migration.migrate_server`,
`evacuation.evacuate_server`), so the item is recorded moving in the transaction that records its
operation. When nothing waits or moves, the move is finished; the host stays in maintenance (an admin ends
it).

The move's row is locked first and alone: nothing locks it after a customer, server or host row, so
holding it while an action takes those (in their own order: one customer per start) cannot deadlock.

Reasons are stored in the source language (the step runs under `translation.override(None)`) and shown
translated (the `stored_text` filter; the API translates for the token's owner).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, OuterRef, Q, Subquery
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from hypervisor import hosts as host_service
from hypervisor import routing
from hypervisor.models import Host
from panel import dispatch
from panel.activity import log as activity
from panel.models import HostMove, HostMoveItem, Operation, Server, User
from panel.servers import evacuation, migration, operation_states, states
from panel.servers.actions import Conflict, Unprocessable
from panel.servers.states import Status, Task

log = logging.getLogger(__name__)

Kind = HostMove.Kind
ItemStatus = HostMoveItem.Status
# What a move does to each server, by kind.
TASKS = {Kind.DRAIN: Task.MIGRATE, Kind.EVACUATE: Task.EVACUATE}

# Stored reasons (English, shown translated).
HOST_WENT_DOWN = gettext_noop("The host went down before this server could be migrated: evacuate the host.")
HOST_CAME_BACK = gettext_noop(
    "The host is no longer down (it answered again, or was probed), so this server was not rebuilt "
    "elsewhere: drain the host, or evacuate it again once it is down."
)
STILL_ON_HOST = gettext_noop("Its operation succeeded but the server is still on this host.")
GONE = gettext_noop("The server was deleted meanwhile.")
LEFT_OTHERWISE = gettext_noop("The server left this host otherwise meanwhile.")
NO_OPERATION = gettext_noop("Its operation was removed; it is tried again.")


class MoveRunning(Conflict):
    code = "move_running"


class HostIsDown(Conflict):
    code = "host_down"


class HostNotDown(Conflict):
    code = "host_not_down"


def _running_conflict(host: Host) -> MoveRunning:
    return MoveRunning(
        _("A move of the servers of %(host)s is running already; wait for it to finish.")
        % {"host": host.name}
    )


def _lock_host(host: Host) -> Host:
    """The host's row, locked (FOR NO KEY UPDATE, as a claim locks it) for the start's transaction."""
    return Host.objects.select_for_update(no_key=True).get(pk=host.pk)


def _insert(host: Host, kind: str, user: User | None, **limits) -> HostMove:
    """The move and one waiting item per server on the host (every server not deleted), after the host went
    into maintenance: a claim on the host that committed before is seen, none after it can choose it."""
    try:
        with transaction.atomic():
            move = HostMove.objects.create(host=host, kind=kind, requested_by=user, **limits)
    except IntegrityError:  # another start won the race (the partial unique constraint)
        raise _running_conflict(host) from None
    servers = Server.objects.filter(host=host).exclude(status=Status.DELETED).order_by("created_at", "id")
    ids = list(servers.values_list("pk", flat=True))
    if kind == Kind.EVACUATE:
        ids += _failed_evacuations_from(host)
    HostMoveItem.objects.bulk_create(HostMoveItem(move=move, server_id=pk) for pk in ids)
    dispatch.host_move_after_commit(move.pk, routing.queue_for_host(host))
    return move


def _failed_evacuations_from(host: Host) -> list:
    """Servers an earlier evacuation of the host left in error on their targets: evacuating the host again
    rebuilds them where they are (panel.servers.evacuation)."""
    candidates = (
        Operation.objects.filter(type=Task.EVACUATE, status=Operation.Status.FAILED)
        # The host they were lost on (a retry's source is its target: it names the first one's lost host).
        .filter(Q(params__lost_host=host.pk) | Q(params__source_host=host.pk))
        .exclude(server__status=Status.DELETED)
        .exclude(server__host=host)
        .values_list("server_id", flat=True)
        .distinct()
    )
    servers = Server.objects.filter(pk__in=list(candidates)).order_by("created_at", "id")
    return [server.pk for server in servers if evacuation.failed_evacuation(server) is not None]


def start_drain(
    host: Host, user: User | None, *, max_bandwidth_mib: int | None = None, timeout_seconds: int | None = None
) -> HostMove:
    """Move every server off the host by migration and leave the host in maintenance. Raises HostIsDown (a
    host that does not answer is evacuated instead), MoveRunning, or Unprocessable (limits out of range);
    nothing changes then."""
    bandwidth, timeout = migration.check_limits(max_bandwidth_mib, timeout_seconds)  # as for one migration
    with transaction.atomic():
        current = _lock_host(host)
        if current.state == Host.State.DOWN:
            raise HostIsDown(
                _(
                    "%(host)s is down: its servers cannot be migrated. Evacuate it instead to rebuild them "
                    "on other hosts."
                )
                % {"host": current.name}
            )
        if HostMove.objects.filter(host=current, status=HostMove.Status.RUNNING).exists():
            raise _running_conflict(current)
        host_service.update_settings(current.pk, {"maintenance": True})
        activity.record_host_change(
            current,
            user,
            gettext_noop(
                "Host %(host)s is being drained: its servers are migrated away; it is in maintenance."
            ),
        )
        return _insert(current, Kind.DRAIN, user, max_bandwidth_mib=bandwidth, timeout_seconds=timeout)


def start_evacuation(host: Host, user: User | None) -> HostMove:
    """Rebuild every server of a host that is down for good on other hosts, from their latest backups or
    their images; the host is disabled (by an admin: it stays so should it answer again) and in maintenance.
    Raises HostNotDown (only the health check's verdict counts: a host that answers is drained instead) or
    MoveRunning; nothing changes then."""
    with transaction.atomic():
        current = _lock_host(host)
        if current.state not in evacuation.EVACUABLE_HOST_STATES:
            raise HostNotDown(
                _(
                    "Only a host that is down can be evacuated; %(host)s is %(state)s. Drain it instead to "
                    "migrate its servers."
                )
                % {"host": current.name, "state": current.get_state_display().lower()}
            )
        if HostMove.objects.filter(host=current, status=HostMove.Status.RUNNING).exists():
            raise _running_conflict(current)
        host_service.set_enabled(
            current.pk, False, _("Evacuating: its servers are being rebuilt on other hosts.")
        )
        host_service.update_settings(current.pk, {"maintenance": True})
        activity.record_host_change(
            current,
            user,
            gettext_noop(
                "Host %(host)s is being evacuated: its servers are rebuilt on other hosts; it is disabled "
                "and in maintenance."
            ),
        )
        return _insert(current, Kind.EVACUATE, user)


# -- The step


def advance(move_id: int) -> bool:
    """One step of the move (see the module's description). False when there was nothing to do: the move
    has finished, or another worker is stepping it now."""
    with translation.override(None):  # reasons are stored in the source language
        return _advance(move_id)


def _locked(move_id: int) -> HostMove | None:
    """The running move's row, locked for the caller's transaction; None when it has finished or another
    worker holds it (taken without waiting)."""
    return (
        HostMove.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("host", "requested_by")
        .filter(pk=move_id, status=HostMove.Status.RUNNING)
        .first()
    )


def _advance(move_id: int) -> bool:
    with transaction.atomic():
        move = _locked(move_id)
        if move is None:
            return False
        _follow_moving(move)
        _give_up_if_host_changed(move)
        waiting = list(
            move.items.filter(status=ItemStatus.WAITING)
            .order_by("updated_at", "id")
            .values_list("pk", flat=True)
        )
    # Each start is a transaction of its own (the move's row, then the action's customer, server and host
    # rows, in the lock order): one customer per transaction, and no host held for the others' starts.
    for item_id in waiting:
        with transaction.atomic():
            move = _locked(move_id)
            if move is None:
                return True  # another worker steps it now
            if move.items.filter(status=ItemStatus.MOVING).count() >= settings.HOST_MOVE_CONCURRENCY:
                break
            item = move.items.filter(pk=item_id, status=ItemStatus.WAITING).select_related("server").first()
            if item is not None:
                _start(move, item)
    with transaction.atomic():
        move = _locked(move_id)
        if (
            move is not None
            and not move.items.filter(status__in=(ItemStatus.WAITING, ItemStatus.MOVING)).exists()
        ):
            HostMove.objects.filter(pk=move.pk, status=HostMove.Status.RUNNING).update(
                status=HostMove.Status.FINISHED, finished_at=timezone.now()
            )
    return True


def _set(item: HostMoveItem, status: str, reason: str = "", **fields) -> None:
    item.status, item.reason = status, reason
    for name, value in fields.items():
        setattr(item, name, value)
    item.save(update_fields=["status", "reason", "updated_at", *fields])


def _follow_moving(move: HostMove) -> None:
    """The moving items' operations: succeeded with the server off the host (or the server deleted):
    moved; failed: failed with the operation's error (staff's detail when it has one); open: still moving."""
    moving = move.items.filter(status=ItemStatus.MOVING).select_related("operation", "server")
    for item in moving:
        operation, server = item.operation, item.server
        if operation is None:
            _set(item, ItemStatus.WAITING, NO_OPERATION)
        elif operation.status in operation_states.OPEN:
            continue
        elif server.status == Status.DELETED:
            _set(item, ItemStatus.MOVED, GONE)
        elif operation.status == Operation.Status.SUCCEEDED and server.host_id != move.host_id:
            _set(item, ItemStatus.MOVED, target_host_id=server.host_id)
        elif operation.status == Operation.Status.SUCCEEDED:
            _set(item, ItemStatus.FAILED, STILL_ON_HOST)
        else:
            _set(item, ItemStatus.FAILED, operation.detail or operation.error)


def _give_up_if_host_changed(move: HostMove) -> None:
    """A drained host that went down cannot migrate anything more, and an evacuated host that answers again
    must not have its servers rebuilt elsewhere: the items still waiting fail saying what to do instead."""
    state = Host.objects.filter(pk=move.host_id).values_list("state", flat=True).first()
    down = state in evacuation.EVACUABLE_HOST_STATES
    if move.kind == Kind.DRAIN and down:
        reason = HOST_WENT_DOWN
    elif move.kind == Kind.EVACUATE and not down:
        reason = HOST_CAME_BACK
    else:
        return
    move.items.filter(status=ItemStatus.WAITING).update(
        status=ItemStatus.FAILED, reason=reason, updated_at=timezone.now()
    )


def _start(move: HostMove, item: HostMoveItem) -> bool:
    """Start the item's move; True when it is moving now. A busy server stays waiting (the reason says why);
    one that can never move from its state, or that no host can take, fails with the reason."""
    server = item.server
    if server.status == Status.DELETED:
        _set(item, ItemStatus.MOVED, GONE)
        return False
    if server.host_id != move.host_id and not _evacuated_again(move, server):
        _set(item, ItemStatus.MOVED, LEFT_OTHERWISE, target_host_id=server.host_id)
        return False
    try:
        with transaction.atomic():
            operation = _request(move, server)
    except Conflict as exc:
        if _can_never_start(server, TASKS[move.kind]):
            _set(item, ItemStatus.FAILED, exc.message)
        else:
            _set(item, ItemStatus.WAITING, exc.message)  # busy: tried again at the next step
        return False
    except Unprocessable as exc:
        _set(item, ItemStatus.FAILED, exc.message)
        return False
    target = operation.params.get("target_host")
    _set(
        item,
        ItemStatus.MOVING,
        operation=operation,
        target_host_id=target if isinstance(target, int) else None,
    )
    return True


def _evacuated_again(move: HostMove, server: Server) -> bool:
    """An evacuation's server that an earlier evacuation of the host left in error on its target."""
    return move.kind == Kind.EVACUATE and evacuation.failed_evacuation(server) is not None


def _request(move: HostMove, server: Server) -> Operation:
    if move.kind == Kind.DRAIN:
        return migration.migrate_server(
            server,
            move.requested_by,
            max_bandwidth_mib=move.max_bandwidth_mib,
            timeout_seconds=move.timeout_seconds or None,
        )
    return evacuation.evacuate_server(server, move.requested_by)


def _can_never_start(server: Server, task: str) -> bool:
    """The server is idle in a status the task never starts from (rescue mode, error for a migration): no
    later step would start it either. A server with a task in flight is busy, not stuck."""
    current = Server.objects.filter(pk=server.pk).values_list("status", "task").first()
    if current is None:
        return True
    status, running = current
    return running is None and status not in states.ACTIONS[task].allowed_from


# -- What pages and the API show


@dataclass
class FailedServer:
    server_id: str
    name: str
    reason: str


@dataclass
class MoveProgress:
    """A move as pages and the API show it: its counts, and the servers that could not move."""

    move: HostMove
    total: int = 0
    moved: int = 0
    moving: int = 0
    waiting: int = 0
    failed: list[FailedServer] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.move.status == HostMove.Status.RUNNING

    @property
    def done(self) -> int:
        return self.moved + len(self.failed)

    @property
    def percent(self) -> int:
        return 100 if not self.total else self.done * 100 // self.total

    @property
    def created_at(self) -> datetime:
        return self.move.created_at


def latest_moves(host_ids: Iterable[int]) -> dict[int, MoveProgress]:
    """Each host's running or latest move with its progress, for any number of hosts in three queries (one
    when none of them ever had a move)."""
    ids = list(host_ids)
    if not ids:
        return {}
    newest = (
        HostMove.objects.filter(host_id=OuterRef("host_id")).order_by("-created_at", "-id").values("id")[:1]
    )
    moves = list(HostMove.objects.filter(host_id__in=ids, id=Subquery(newest)))
    if not moves:
        return {}
    progress = {move.pk: MoveProgress(move) for move in moves}
    counts = (
        HostMoveItem.objects.filter(move__in=progress)
        .values_list("move_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for move_id, status, n in counts:
        entry = progress[move_id]
        entry.total += n
        if status in (ItemStatus.MOVED, ItemStatus.MOVING, ItemStatus.WAITING):
            setattr(entry, status, n)
    failed = (
        HostMoveItem.objects.filter(move__in=progress, status=ItemStatus.FAILED)
        .order_by("move_id", "id")
        .values_list("move_id", "server_id", "server__name", "reason")
    )
    for move_id, server_id, name, reason in failed:
        progress[move_id].failed.append(FailedServer(str(server_id), name, reason))
    return {entry.move.host_id: entry for entry in progress.values()}


def latest_move(host: Host) -> MoveProgress | None:
    return latest_moves([host.pk]).get(host.pk)


def running_moves() -> list[tuple[int, int]]:
    """(move id, region id) of every running move: the beat steps each on its region's queue."""
    return list(HostMove.objects.filter(status=HostMove.Status.RUNNING).values_list("pk", "host__region_id"))
