"""A snapshot (which locks its customer before the server, panel.servers.locks) racing a reboot of the same
server (which swaps the server's task first and, at commit, checks its rows' foreign keys to the customer)
ends in one 202 and one 409, never in a Postgres deadlock. The customer lock does not conflict with the
key-share lock a foreign key check takes."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections

from panel.models import Operation
from panel.servers import actions
from panel.servers.states import Task
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def _waiting_for_a_lock(pid: int) -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return bool(row and row[0] == "Lock")


def test_a_snapshot_racing_a_reboot_gets_a_conflict_not_a_deadlock(
    customer, catalog, purge_queue, monkeypatch
):
    server = factories.make_server(customer, catalog, name="web1")
    swapped, release = threading.Event(), threading.Event()
    snapshot_pid: list[int] = []
    results: dict[str, object] = {}
    record = actions._record_action

    def record_then_wait(target, action, user, **options):
        record(target, action, user, **options)
        if action == Task.REBOOT:  # the reboot holds the server row, uncommitted, until released
            swapped.set()
            release.wait(timeout=30)

    monkeypatch.setattr(actions, "_record_action", record_then_wait)

    def reboot() -> None:
        try:
            results["reboot"] = actions.perform(server, Task.REBOOT, customer, {})
        except Exception as exc:  # noqa: BLE001 - the test reports whatever happened
            results["reboot"] = exc
        finally:
            connection.close()

    def snapshot() -> None:
        swapped.wait(timeout=30)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            snapshot_pid.append(cursor.fetchone()[0])
        try:
            results["snapshot"] = actions.perform(server, Task.SNAPSHOT, customer, {"name": "before"})
        except Exception as exc:  # noqa: BLE001
            results["snapshot"] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=reboot), threading.Thread(target=snapshot)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while not (snapshot_pid and _waiting_for_a_lock(snapshot_pid[0])) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert snapshot_pid and _waiting_for_a_lock(snapshot_pid[0]), "the snapshot never waited for the server"
    release.set()
    for thread in threads:
        thread.join(timeout=60)

    assert isinstance(results["reboot"], Operation), results["reboot"]
    assert isinstance(results["snapshot"], actions.Conflict), results["snapshot"]
    assert list(Operation.objects.filter(server=server).values_list("type", flat=True)) == [Task.REBOOT]
