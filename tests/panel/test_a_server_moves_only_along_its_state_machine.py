"""Every status change a server goes through on a real life cycle (on the simulated host) is one that
panel.servers.states allows, and every action starts only from a status its rule names."""

from __future__ import annotations

import pytest

from hypervisor import connection
from panel.models import Operation, Server
from panel.servers import actions, operation_states, operations, states
from panel.servers.reconcile import reconcile_host
from panel.servers.states import Status, Task
from tests import factories

pytestmark = pytest.mark.django_db


class Trail:
    """The statuses a server and its operations went through, as the panel recorded them."""

    def __init__(self, server: Server):
        self.server = server
        self.statuses = [server.status]

    def see(self) -> None:
        self.server.refresh_from_db()
        if self.server.status != self.statuses[-1]:
            self.statuses.append(self.server.status)

    def act(self, action: str, user, **params) -> Operation:
        assert self.server.status in states.ACTIONS[action].allowed_from
        if action == Task.DELETE:
            operation = actions.delete_server(self.server, user)
        elif action in (Task.SUSPEND, Task.UNSUSPEND):
            operation = (
                actions.suspend_server(self.server, "test", user)
                if action == Task.SUSPEND
                else actions.unsuspend_server(self.server, user)
            )
        else:
            operation = actions.perform(self.server, action, user, params)
        self.see()
        statuses = [operation.status]
        statuses.append(operations.begin(str(operation.pk)).status)  # a worker takes it
        operation = factories.run_operation(operation)
        statuses.append(operation.status)
        assert operation.status == Operation.Status.SUCCEEDED, operation.error
        assert statuses == ["pending", "running", "succeeded"]
        assert all(operation_states.may_move(*pair) for pair in zip(statuses, statuses[1:], strict=False))
        self.see()
        return operation


def test_every_status_has_its_moves_and_every_action_can_run():
    assert set(states.TRANSITIONS) == set(Status)
    for rule in states.ACTIONS.values():
        for status in rule.allowed_from:
            if rule.status_while_running:
                assert states.may_move(status, rule.status_while_running)
    assert set(operation_states.TRANSITIONS) == set(operation_states.Status)
    assert not states.may_move(Status.DELETED, Status.RUNNING)
    assert not states.may_move(Status.PENDING, Status.DELETED)


def test_a_whole_life_cycle_moves_only_along_the_table(customer, staff, catalog):
    bigger = factories.make_plan(slug="bigger", vcpus=2, memory_mib=512, disk_gib=2)
    server = actions.order_server(
        customer, name="web1", plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    trail = Trail(server)
    create = Operation.objects.get(server=server, type=Task.CREATE)
    operations.begin(str(create.pk))  # a worker takes it: the server is provisioning
    trail.see()
    factories.run_operation(create)
    trail.see()
    trail.act(Task.SHUTDOWN, customer)
    trail.act(Task.START, customer)
    trail.act(Task.REBOOT, customer)
    trail.act(Task.RESIZE, customer, plan=bigger.slug)
    trail.act(Task.POWER_OFF, customer)
    trail.act(Task.SNAPSHOT, customer, name="before")
    trail.act(Task.START, customer)
    trail.act(Task.SUSPEND, staff)
    trail.act(Task.UNSUSPEND, staff)

    domain = connection.connection(catalog["host"].uri).lookupByUUIDString(str(server.id))
    domain.destroy()  # the guest stops behind the panel's back
    reconcile_host(catalog["host"])
    trail.see()
    trail.act(Task.REBUILD, customer, image=catalog["image"].slug)
    trail.act(Task.DELETE, customer)

    assert trail.statuses == [
        "pending",
        "provisioning",
        "running",
        "stopped",
        "running",
        "stopped",
        "running",
        "suspended",
        "running",
        "stopped",
        "running",
        "deleting",
        "deleted",
    ]
    for old, new in zip(trail.statuses, trail.statuses[1:], strict=False):
        assert states.may_move(old, new), f"{old} -> {new}"
