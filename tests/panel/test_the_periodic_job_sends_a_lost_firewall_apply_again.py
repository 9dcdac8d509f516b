"""A firewall change whose message was lost (the broker dropped it, or its worker died before it applied
it) is caught by the periodic job `apply-pending-network-filters` (every 20 s): it sends the apply again and
a real worker applies it. It leaves alone what is applied, what was changed a moment ago (its own message
is most likely being worked on) and servers on hosts that are down."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.conf import settings
from django.db import connections
from django.utils import timezone

from hypervisor.models import Host
from panel import tasks
from panel.celery import app as celery_app
from panel.models import Firewall
from panel.servers import firewall
from tests import factories
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SSH = [{"protocol": "tcp", "ports": "22", "sources": ["203.0.113.0/24"]}]


def age(server, seconds: int = 60) -> None:
    """As if the change had been made `seconds` ago."""
    Firewall.objects.filter(pk=server.pk).update(updated_at=timezone.now() - timedelta(seconds=seconds))


def test_a_lost_apply_is_sent_again_and_applied_by_a_worker(customer, catalog, purge_queue):
    assert settings.CELERY_BEAT_SCHEDULE["apply-pending-network-filters"]["schedule"] <= 30
    server = factories.make_server(customer, catalog)
    firewall.set_firewall(server, SSH, "drop", customer)
    celery_app.control.purge()  # the message is lost
    assert Firewall.objects.get(pk=server.pk).pending

    assert tasks.apply_pending_network_filters() == 0  # changed a moment ago: its message may be on its way
    age(server)
    down = factories.make_server(
        customer, catalog, name="on-a-down-host", host=factories.make_host(name="down")
    )
    firewall.set_firewall(down, SSH, "drop", customer)
    Host.objects.filter(pk=down.host_id).update(state=Host.State.DOWN)
    age(down)
    celery_app.control.purge()

    with start_worker(celery_app, pool="solo", concurrency=1, perform_ping_check=False, loglevel="WARNING"):
        assert tasks.apply_pending_network_filters() == 1  # not the one on the down host
        wait_for(lambda: not Firewall.objects.get(pk=server.pk).pending, timeout=30)
        assert tasks.apply_pending_network_filters() == 0
    connections.close_all()
    row = Firewall.objects.get(pk=server.pk)
    assert row.applied_version == row.version and row.applied_at is not None
    assert Firewall.objects.get(pk=down.pk).pending


def test_what_keeps_failing_goes_to_the_back_of_the_line(customer, catalog, purge_queue):
    """More failing filters than a batch never keep a working one waiting: a failed attempt touches the row,
    so the next batch starts with what has not been tried."""
    broken = factories.make_host(name="broken")
    # A host that is not marked down, whose libvirt cannot be reached (no such socket): every apply fails.
    Host.objects.filter(pk=broken.pk).update(
        uri="qemu+unix:///system?socket=/nonexistent/libvirt-sock", state=Host.State.READY
    )
    failing = [
        factories.make_server(customer, catalog, name=f"failing{index}", host=broken) for index in range(3)
    ]
    working = factories.make_server(customer, catalog, name="working")
    for index, server in enumerate([*failing, working]):
        firewall.set_firewall(server, SSH, "drop", customer)
        age(server, seconds=100 - 10 * index)  # the failing ones changed first
    celery_app.control.purge()  # every message is lost

    def close_connections(**kwargs) -> None:
        connections.close_all()  # the worker's thread keeps no session to the test database

    task_postrun.connect(close_connections, weak=False)
    try:
        run_worker_through_two_batches(failing, working)
    finally:
        task_postrun.disconnect(close_connections)
    connections.close_all()
    for server in failing:
        row = Firewall.objects.get(pk=server.pk)
        assert row.pending and row.apply_error


def run_worker_through_two_batches(failing, working) -> None:
    with start_worker(celery_app, pool="solo", concurrency=1, perform_ping_check=False, loglevel="WARNING"):
        assert firewall.resend_pending(limit=2) == 2  # the two oldest, which fail
        wait_for(
            lambda: all(Firewall.objects.get(pk=server.pk).apply_error for server in failing[:2]),
            timeout=30,
            message="the worker did not try the first two",
        )
        assert firewall.resend_pending(limit=2) == 2  # the third failing one, and the working one
        wait_for(
            lambda: not Firewall.objects.get(pk=working.pk).pending,
            timeout=30,
            message="the working filter waited behind the failing ones",
        )
