"""Server actions as services: each owns its transaction, the state check and the enqueue.

Starting an action is a compare-and-swap on the server row (design.md): it succeeds only when no task
is in flight and the status allows the action; otherwise the caller gets a Conflict (HTTP 409).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from billing.models import Plan
from hypervisor import ipam
from hypervisor import services as hypervisor
from hypervisor.models import Host, Image, Region

from .models import Operation, Server, SSHKey, User
from .validators import validate_hostname

log = logging.getLogger(__name__)
S = Server.Status
T = Operation.Type


class ActionError(Exception):
    code = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Conflict(ActionError):
    """The server's state does not allow the action now (HTTP 409)."""

    code = "conflict"


class Unprocessable(ActionError):
    """A valid request the panel cannot satisfy (HTTP 422)."""

    code = "unprocessable"


class OutOfCapacity(Unprocessable):
    code = "out_of_capacity"


class OutOfAddresses(Unprocessable):
    code = "out_of_addresses"


HOST_DOWN_MESSAGE = gettext_lazy(
    "The host of this server is not answering; actions are paused until it is back. Please try again later."
)


@dataclass(frozen=True)
class ActionRule:
    allowed_from: frozenset[str]
    label: str
    status_while_running: str | None = None


# Which statuses each customer action may start from.
RULES: dict[str, ActionRule] = {
    T.START: ActionRule(frozenset({S.STOPPED}), gettext_lazy("start")),
    T.SHUTDOWN: ActionRule(frozenset({S.RUNNING}), gettext_lazy("shut down")),
    T.POWER_OFF: ActionRule(frozenset({S.RUNNING}), gettext_lazy("power off")),
    T.REBOOT: ActionRule(frozenset({S.RUNNING}), gettext_lazy("reboot")),
    T.DELETE: ActionRule(frozenset({S.RUNNING, S.STOPPED, S.ERROR}), gettext_lazy("delete"), S.DELETING),
}
CUSTOMER_ACTIONS = (T.START, T.SHUTDOWN, T.POWER_OFF, T.REBOOT)


def allowed_actions(server: Server) -> list[str]:
    """The actions the server's current state allows (for showing buttons)."""
    if server.task:
        return []
    return [action for action, rule in RULES.items() if server.status in rule.allowed_from]


def dispatch(operation_id) -> None:
    """Send the operation to a worker. A failure to send is logged, not raised: the operation is recorded,
    and the reaper sends operations again that no worker has started."""
    from .tasks import run_operation

    try:
        run_operation.apply_async(args=[str(operation_id)], task_id=str(operation_id))
    except Exception:
        log.exception("could not send operation %s to the broker; the reaper will retry", operation_id)


def _enqueue(operation: Operation) -> None:
    transaction.on_commit(lambda: dispatch(operation.id))


def order_server(
    user: User,
    *,
    name: str,
    plan: Plan,
    image: Image,
    region: Region,
    ssh_keys: Iterable[SSHKey] = (),
    user_data: str = "",
) -> Server:
    """Create a server and its create operation in one transaction, placing and claiming capacity at once.

    Raises OutOfCapacity (nothing is created) when no host in the region can take the plan.
    """
    name = validate_hostname(name)
    if not plan.is_active:
        raise Unprocessable(_("The plan %(plan)s is not on sale.") % {"plan": plan.name})
    if not image.is_active:
        raise Unprocessable(_("The image %(image)s is not available.") % {"image": image.name})
    if not region.is_active:
        raise Unprocessable(_("The region %(region)s is not open for orders.") % {"region": region.name})
    keys = list(ssh_keys)
    if any(key.owner_id != user.pk for key in keys):
        raise Unprocessable(_("Unknown SSH key."))
    with transaction.atomic():
        # Lock the customer row: per-customer checks (quotas, credit) serialise on it.
        User.objects.select_for_update().filter(pk=user.pk).first()
        server = Server(
            name=name,
            owner=user,
            plan=plan,
            image=image,
            region=region,
            vcpus=plan.vcpus,
            memory_mib=plan.memory_mib,
            disk_gib=plan.disk_gib,
            ssh_keys=[key.public_key for key in keys],
            user_data=user_data,
            status=S.PENDING,
            task=T.CREATE,
        )
        need = hypervisor.Resources(server.vcpus, server.memory_mib, server.disk_gib)
        try:
            server.host = hypervisor.claim(server.id, region, need)
        except hypervisor.NoCapacity as exc:
            raise OutOfCapacity(str(exc)) from exc
        if ipam.region_has_pools(region):
            try:
                ipam.allocate(region, server.id)
            except ipam.NoAddress as exc:
                raise OutOfAddresses(str(exc)) from exc
        server.save()
        operation = Operation.objects.create(server=server, type=T.CREATE, requested_by=user)
        _enqueue(operation)
    return server


def request_action(server: Server, action: str, user: User | None, params: dict | None = None) -> Operation:
    """Start `action` on the server if its state allows it; raise Conflict otherwise."""
    rule = RULES.get(action)
    if rule is None:
        raise Unprocessable(_("Unknown action %(action)s.") % {"action": action})
    changes = {"task": action, "updated_at": timezone.now()}
    if rule.status_while_running:
        changes["status"] = rule.status_while_running
    with transaction.atomic():
        if Host.objects.filter(pk=server.host_id, state=Host.State.DOWN).exists():
            raise Conflict(str(HOST_DOWN_MESSAGE))
        # The compare-and-swap is on the server row alone, so that Postgres re-checks it after a lock wait.
        started = Server.objects.filter(pk=server.pk, task__isnull=True, status__in=rule.allowed_from).update(
            **changes
        )
        if not started:
            current = Server.objects.get(pk=server.pk)
            if current.task:
                raise Conflict(
                    _(
                        "Another action (%(task)s) is in progress on this server; try again when it has "
                        "finished."
                    )
                    % {"task": T(current.task).label if current.task in T.values else current.task}
                )
            raise Conflict(
                _("Cannot %(action)s a server that is %(status)s.")
                % {"action": rule.label, "status": current.get_status_display().lower()}
            )
        operation = Operation.objects.create(
            server=server, type=action, params=params or {}, requested_by=user
        )
        _enqueue(operation)
    server.refresh_from_db()
    return operation


def delete_server(server: Server, user: User | None) -> Operation:
    return request_action(server, T.DELETE, user)
