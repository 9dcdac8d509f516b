"""Every status change a server and its operations go through on a real life cycle (on the simulated host),
as Postgres records it, is one that panel.servers.states and operation_states allow, and every action
starts only from a status its rule names."""

from __future__ import annotations

import pytest

from hypervisor import connection
from panel.models import Operation, Server
from panel.servers import actions, operation_states, states
from panel.servers.reconcile import reconcile_host
from panel.servers.states import Status, Task
from tests import factories
from tests.column_history import ColumnHistory

pytestmark = pytest.mark.django_db


def act(server: Server, action: str, user, **params) -> Operation:
    server.refresh_from_db()
    assert server.status in states.ACTIONS[action].allowed_from
    if action == Task.DELETE:
        operation = actions.delete_server(server, user)
    elif action == Task.SUSPEND:
        operation = actions.suspend_server(server, "test", user)
    elif action == Task.UNSUSPEND:
        operation = actions.unsuspend_server(server, user)
    else:
        operation = actions.perform(server, action, user, params)
    operation = factories.run_operation(operation)
    assert operation.status == Operation.Status.SUCCEEDED, (operation.error, operation.detail)
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
    with ColumnHistory(Server, "status") as servers, ColumnHistory(Operation, "status") as operations:
        server = actions.order_server(
            customer, name="web1", plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
        )
        factories.run_operation(Operation.objects.get(server=server, type=Task.CREATE))
        act(server, Task.SHUTDOWN, customer)
        act(server, Task.START, customer)
        act(server, Task.REBOOT, customer)
        act(server, Task.RESIZE, customer, plan=bigger.slug)
        act(server, Task.POWER_OFF, customer)
        act(server, Task.SNAPSHOT, customer, name="before")
        act(server, Task.START, customer)
        act(server, Task.SUSPEND, staff)
        act(server, Task.UNSUSPEND, staff)

        domain = connection.connection(catalog["host"].uri).lookupByUUIDString(str(server.id))
        domain.destroy()  # the guest stops behind the panel's back
        reconcile_host(catalog["host"])
        act(server, Task.REBUILD, customer, image=catalog["image"].slug)
        act(server, Task.DELETE, customer)

        trail = servers.trail(server.pk)
        assert trail == [
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
        for old, new in servers.moves():
            assert states.may_move(old, new), f"{old} -> {new}"
        assert set(operations.inserted()) == {"pending"}
        assert len(operations.inserted()) == 12
        for old, new in operations.moves():
            assert operation_states.may_move(old, new), f"{old} -> {new}"
        for operation in Operation.objects.filter(server=server):
            assert operations.trail(operation.pk) == ["pending", "running", "succeeded"]
