"""Leases on operations (panel/servers/leases.py): a worker holds one while it runs an operation, renewed by
a heartbeat; an operation whose lease ran out, or whose worker started again, is sent to a worker again; a
second delivery never runs an operation another worker holds; a worker that lost its lease changes nothing;
heavy operations wait their turn on their host in order of arrival.

The crash tests with real worker processes and SIGKILL are in test_a_killed_worker_leaves_a_consistent_state.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from panel.models import Operation, Server
from panel.servers import actions, leases, operations

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker(purge_queue):
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


@pytest.fixture
def identity():
    """This process's lease identity, restored after a test that plays a worker starting."""
    saved = dict(leases._identity)
    yield
    leases._identity.update(saved)


def queued(broker) -> list[str]:
    messages = broker.lrange(settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1)
    return [json.loads(message)["headers"]["id"] for message in messages]


def order(customer, catalog, name: str) -> tuple[Server, Operation]:
    server = actions.order_server(
        customer, name=name, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    return server, Operation.objects.get(server=server, type=Operation.Type.CREATE)


def past() -> timezone.datetime:
    return timezone.now() - timedelta(seconds=1)


def test_an_operation_no_worker_began_is_sent_again_once_its_dispatch_window_ends(customer, catalog, broker):
    _server, lost = order(customer, catalog, "lost")
    _server, fresh = order(customer, catalog, "fresh")
    _server, overdue = order(customer, catalog, "overdue")
    assert fresh.lease_expires_at > timezone.now() + timedelta(
        seconds=settings.OPERATION_DISPATCH_SECONDS - 5
    )
    Operation.objects.filter(pk__in=[lost.pk, overdue.pk]).update(lease_expires_at=past())
    Operation.objects.filter(pk=overdue.pk).update(deadline=past())  # the reaper fails it instead
    assert queued(broker) == []

    assert leases.resume_expired() == 1

    assert queued(broker) == [str(lost.pk)]
    lost.refresh_from_db()
    assert (lost.status, lost.lease_owner) == ("pending", "")
    assert lost.lease_expires_at > timezone.now()
    assert leases.resume_expired() == 0  # sent once per window, not on every run of the reaper


def test_a_running_operation_whose_lease_ran_out_goes_to_another_worker(customer, catalog, conn, broker):
    _server, stalled = order(customer, catalog, "stalled")
    _server, busy = order(customer, catalog, "busy")
    stalled_run = operations.begin(stalled.pk)
    leases.unclaim(stalled.pk)  # the stalled run plays another worker: this process does not run it
    busy_run = operations.begin(busy.pk)
    assert (stalled_run.lease_owner, stalled_run.attempts) == (leases.owner(), 1)
    with leases.heartbeat(busy_run):
        assert operations.begin(busy.pk) is None  # a second delivery while it runs does nothing
    Operation.objects.filter(pk=busy.pk).update(lease_owner="celery@other/b00t/7")
    assert operations.begin(busy.pk) is None  # nor while another worker holds it
    busy_run.lease_owner = "celery@other/b00t/7"
    Operation.objects.filter(pk=stalled.pk).update(lease_expires_at=past())

    assert leases.resume_expired() == 1
    assert queued(broker) == [str(stalled.pk)]

    resumed = operations.begin(stalled.pk)  # the worker that takes the message sent again
    assert (resumed.status, resumed.attempts) == ("running", 2)
    # The stalled worker wakes up: its lease has passed on, so its outcome changes nothing.
    stalled_run.lease_owner = "celery@elsewhere/0ld/1"
    assert not operations.finish(stalled_run, status="running")
    assert not operations.fail(stalled_run, "late", "late")
    stalled.refresh_from_db()
    assert (stalled.status, stalled.error) == ("running", "")
    assert operations.finish(resumed, status="running", power_state="running")
    stalled.refresh_from_db()
    assert (stalled.status, stalled.lease_owner, stalled.lease_expires_at) == ("succeeded", "", None)
    assert operations.finish(busy_run, status="running", power_state="running")


def test_a_restarted_worker_sends_again_at_once_what_its_earlier_run_held(
    customer, catalog, broker, identity
):
    _server, orphan = order(customer, catalog, "orphan")
    _server, other_node = order(customer, catalog, "other-node")
    _server, current = order(customer, catalog, "current")
    soon = timezone.now() + timedelta(seconds=30)  # none of these leases ran out
    Operation.objects.filter(pk=orphan.pk).update(
        status="running", lease_owner="celery@w1/0ldb00t/41", lease_expires_at=soon
    )
    Operation.objects.filter(pk=other_node.pk).update(
        status="running", lease_owner="celery@w2/0ldb00t/42", lease_expires_at=soon
    )

    leases.worker_started("celery@w1")
    Operation.objects.filter(pk=current.pk).update(
        status="running", lease_owner=leases.owner(), lease_expires_at=soon
    )
    assert leases.resume_orphans("celery@w1", settle=0) == 1

    assert queued(broker) == [str(orphan.pk)]
    orphan.refresh_from_db()
    assert orphan.lease_owner == ""
    assert Operation.objects.get(pk=other_node.pk).lease_owner == "celery@w2/0ldb00t/42"
    assert Operation.objects.get(pk=current.pk).lease_owner == leases.owner()


def test_a_second_delivery_in_another_thread_of_the_same_process_never_runs_it_twice(customer, catalog):
    """Threads of one process share the lease's owner (a solo or threaded worker, the test's own worker
    beside the test): the second delivery, taken between the first's commit of the lease and the start of
    its heartbeat, must see the operation as running here, not as this process's old lease taken again."""
    _server, create = order(customer, catalog, "twice")
    first = operations.begin(create.pk)
    assert (first.status, first.lease_owner) == ("running", leases.owner())
    assert operations.begin(create.pk) is None  # before the heartbeat
    with leases.heartbeat(first):
        assert operations.begin(create.pk) is None  # and while it runs
    # The run ended without closing the operation (an error that is tried again): the retry takes it.
    again = operations.begin(create.pk)
    assert (again.status, again.attempts) == ("running", 2)


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_renews_the_lease_while_the_work_goes_on(settings, customer, catalog, conn):
    settings.OPERATION_LEASE_SECONDS = 3  # renewed every second
    _server, create = order(customer, catalog, "beating")
    create = operations.begin(create.pk)
    taken = create.lease_expires_at

    def renewed() -> bool:
        return Operation.objects.get(pk=create.pk).lease_expires_at > taken

    with leases.heartbeat(create):
        deadline = time.monotonic() + 15
        while not renewed() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert renewed(), "the heartbeat did not renew the lease"
    operations.finish(create, status="running")


def test_a_transient_error_gives_the_lease_back_for_the_back_off(customer, catalog, conn):
    _server, create = order(customer, catalog, "retried")
    create = operations.begin(create.pk)
    leases.wait(create, 8)
    create.refresh_from_db()
    assert create.lease_owner == ""
    assert create.lease_expires_at > timezone.now() + timedelta(seconds=8)
    assert leases.resume_expired() == 0  # not sent again during the back-off


def test_heavy_operations_wait_their_turn_on_the_host_in_order_of_arrival(settings, customer, catalog, conn):
    settings.HOST_HEAVY_OPERATIONS = 2
    operations_ = [order(customer, catalog, f"burst{n}")[1] for n in range(3)]
    first, second, third = operations_

    with pytest.raises(operations.RetryLater):
        operations.begin(third.pk)  # two older creates are ahead of it: no attempt counted
    third.refresh_from_db()
    assert (third.status, third.attempts, third.lease_owner) == ("pending", 0, "")
    assert third.lease_expires_at > timezone.now()

    first_run = operations.begin(first.pk)
    second_run = operations.begin(second.pk)
    assert first_run and second_run
    assert operations.begin(third.pk) is None  # a second chain of retries while the first polls: dropped
    next_poll = timezone.now() + timedelta(seconds=settings.OPERATION_DISPATCH_SECONDS - 1)
    Operation.objects.filter(pk=third.pk).update(lease_expires_at=next_poll)  # HOST_TURN_POLL later
    with pytest.raises(operations.RetryLater):
        operations.begin(third.pk)  # still two ahead of it

    assert operations.finish(first_run, status="running")
    third_run = operations.begin(third.pk)
    assert (third_run.status, third_run.attempts) == ("running", 1)
    for run in (second_run, third_run):
        operations.finish(run, status="running")


def test_a_restarted_worker_leaves_alone_what_its_earlier_runs_processes_still_renew(
    customer, catalog, broker, identity, monkeypatch
):
    """The main process was killed alone: a pool process of the earlier run still works and renews its lease
    while the restarted worker looks; that operation is not sent again."""
    _server, orphan = order(customer, catalog, "orphan")
    _server, alive = order(customer, catalog, "alive")
    soon = timezone.now() + timedelta(seconds=30)
    for operation, pid in ((orphan, 41), (alive, 42)):
        Operation.objects.filter(pk=operation.pk).update(
            status="running", lease_owner=f"celery@w1/0ldb00t/{pid}", lease_expires_at=soon
        )

    def a_heartbeat_of_the_living_process(seconds: float) -> None:
        Operation.objects.filter(pk=alive.pk).update(lease_expires_at=soon + timedelta(seconds=7))

    monkeypatch.setattr(leases.time, "sleep", a_heartbeat_of_the_living_process)
    leases.worker_started("celery@w1")
    assert leases.resume_orphans("celery@w1") == 1

    assert queued(broker) == [str(orphan.pk)]
    assert Operation.objects.get(pk=alive.pk).lease_owner == "celery@w1/0ldb00t/42"


def test_a_worker_whose_lease_passed_on_stops_and_undoes_nothing(customer, catalog, conn):
    _server, create = order(customer, catalog, "overtaken")
    stalled = operations.begin(create.pk)
    # Its lease ran out while it stalled; the reaper sent the create again and another worker took it.
    Operation.objects.filter(pk=create.pk).update(lease_owner="celery@w2/b00t/9")

    with pytest.raises(leases.LeaseLost):
        operations._remember(stalled, was_running=True)  # facts of another worker's attempt stay theirs
    operations.on_failure(stalled, "the host said no")  # the failure of a stale attempt changes nothing
    with leases.heartbeat(stalled):
        leases._renew_once()  # the heartbeat notices, and the next step stops
        with pytest.raises(leases.LeaseLost):
            operations._step(stalled, "create:disk")

    create.refresh_from_db()
    assert (create.status, create.lease_owner, create.params) == ("running", "celery@w2/b00t/9", {})
    server = Server.objects.get(pk=create.server_id)
    assert (server.status, server.task) == ("provisioning", "create")
