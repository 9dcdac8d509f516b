"""A firewall change whose message was lost (the broker dropped it, or its worker died before it applied
it) is caught by the periodic job `apply-pending-network-filters` (every 20 s): it sends the apply again and
a real worker applies it. It leaves alone what is applied, what was changed a moment ago (its own message
is most likely being worked on) and servers on hosts that are down."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
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
