"""Two workers may be handed the same step of a host's move (the beat's and the one sent after the start):
the one that finds the move's row locked leaves at once and changes nothing, so a server is never started
twice; the step the beat sends for every running move goes to the host's region's queue; a finished move
is not stepped again."""

from __future__ import annotations

import base64
import json
import threading

import pytest
import redis
from django.db import connection, transaction

from hypervisor import routing
from panel import tasks
from panel.infrastructure import host_moves
from panel.models import HostMove, HostMoveItem, Operation
from tests import factories


@pytest.mark.django_db(transaction=True)
def test_a_step_that_finds_the_move_locked_leaves_and_changes_nothing(admin_user, customer, catalog):
    factories.make_server(customer, catalog)
    move = host_moves.start_drain(catalog["host"], admin_user)
    holding, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        try:
            with transaction.atomic():
                HostMove.objects.select_for_update().get(pk=move.pk)
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert holding.wait(10)
        assert host_moves.advance(move.pk) is False
        assert not Operation.objects.exists()
        assert move.items.get().status == HostMoveItem.Status.WAITING
    finally:
        release.set()
        thread.join()


@pytest.fixture
def broker(settings, purge_queue):
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    yield client
    for key in client.keys(f"{settings.CELERY_TASK_DEFAULT_QUEUE}.*"):
        client.delete(key)


def queued(client, queue: str) -> list[tuple[str, list]]:
    """(task name, arguments) of each message waiting in the queue."""
    messages = [json.loads(message) for message in client.lrange(queue, 0, -1)]
    return [
        (message["headers"]["task"], json.loads(base64.b64decode(message["body"]))[0]) for message in messages
    ]


@pytest.mark.django_db(transaction=True)
def test_the_start_and_the_beat_step_each_running_move_on_its_regions_queue(
    admin_user, customer, catalog, settings, broker
):
    settings.REGION_QUEUES = True
    factories.make_server(customer, catalog)
    regional = routing.queue_for_host(catalog["host"])
    assert regional == f"{settings.CELERY_TASK_DEFAULT_QUEUE}.{catalog['region'].slug}"

    running = host_moves.start_drain(catalog["host"], admin_user)

    assert queued(broker, regional) == [("panel.tasks.advance_host_move", [running.pk])]
    broker.delete(regional)
    other = factories.make_host(region=catalog["region"], name="other")
    finished = HostMove.objects.create(host=other, kind=HostMove.Kind.DRAIN, status=HostMove.Status.FINISHED)
    assert tasks.advance_host_moves() == 1
    assert queued(broker, regional) == [("panel.tasks.advance_host_move", [running.pk])]
    assert queued(broker, settings.CELERY_TASK_DEFAULT_QUEUE) == []
    assert host_moves.advance(finished.pk) is False
