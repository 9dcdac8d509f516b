"""With REGION_QUEUES set, work on a host goes to its region's queue ("<CELERY_QUEUE>.<region slug>"): an
order's and an action's operation, the reaper's re-sends, reconcile, metering and health checks; work that
belongs to no host (mail, billing, the periodic fan-outs) stays on the default queue. Without it, everything
goes to the default queue."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from hypervisor import routing
from hypervisor import tasks as hypervisor_tasks
from panel import tasks
from panel.models import Operation
from panel.servers import actions, leases
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker(settings, purge_queue):
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    yield client
    for key in client.keys(f"{settings.CELERY_TASK_DEFAULT_QUEUE}.*"):
        client.delete(key)


def queued(client, queue: str) -> list[tuple[str, str]]:
    """(task name, task id) of each message waiting in the queue."""
    messages = [json.loads(message) for message in client.lrange(queue, 0, -1)]
    return [(message["headers"]["task"], message["headers"]["id"]) for message in messages]


def test_an_orders_operation_goes_to_its_regions_queue(settings, broker, customer):
    settings.REGION_QUEUES = True
    region, plan, image = factories.make_catalog()
    factories.make_host(region=region)
    regional = f"{settings.CELERY_TASK_DEFAULT_QUEUE}.{region.slug}"

    server = actions.order_server(customer, name="near", plan=plan, image=image, region=region)

    create = Operation.objects.get(server=server)
    assert queued(broker, regional) == [("panel.tasks.run_operation", str(create.pk))]
    assert queued(broker, settings.CELERY_TASK_DEFAULT_QUEUE) == []

    # The reaper's re-send of an operation whose message was lost goes to the same queue.
    broker.delete(regional)
    Operation.objects.filter(pk=create.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert leases.resume_expired() == 1
    assert queued(broker, regional) == [("panel.tasks.run_operation", str(create.pk))]


def test_periodic_work_on_hosts_fans_out_to_each_regions_queue(settings, broker):
    settings.REGION_QUEUES = True
    west, _plan, _image = factories.make_catalog()
    east = factories.make_region(slug="surabaya", name="Surabaya")
    west_host = factories.make_host(region=west)
    east_host = factories.make_host(region=east)

    tasks.reconcile_all_hosts()
    tasks.meter_all_hosts()
    hypervisor_tasks.check_hosts()

    for host in (west_host, east_host):
        queue = routing.queue_for_host(host)
        assert queue == f"{settings.CELERY_TASK_DEFAULT_QUEUE}.{host.region.slug}"
        assert sorted(name for name, _id in queued(broker, queue)) == [
            "hypervisor.tasks.check_host",
            "panel.tasks.meter_host",
            "panel.tasks.reconcile_host",
        ]
    assert queued(broker, settings.CELERY_TASK_DEFAULT_QUEUE) == []


def test_without_region_queues_everything_goes_to_the_default_queue(settings, broker, customer):
    settings.REGION_QUEUES = False
    region, plan, image = factories.make_catalog()
    host = factories.make_host(region=region)
    server = actions.order_server(customer, name="anywhere", plan=plan, image=image, region=region)
    tasks.reconcile_all_hosts()

    assert routing.queue_for_host(host) is None
    waiting = dict(queued(broker, settings.CELERY_TASK_DEFAULT_QUEUE))
    assert sorted(waiting) == ["panel.tasks.reconcile_host", "panel.tasks.run_operation"]
    assert waiting["panel.tasks.run_operation"] == str(Operation.objects.get(server=server).pk)
