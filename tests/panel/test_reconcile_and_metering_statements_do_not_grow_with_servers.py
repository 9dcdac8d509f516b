"""Reconcile and metering run every minute (or five) for every host: the statements they send Postgres for a
host are the same for two servers as for eight (rows passed in bulk, one conditional update per kind of
change), and they still record every server's state and reading."""

from __future__ import annotations

import libvirt
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hypervisor import connection as libvirt_connection
from hypervisor import driver
from panel.models import MeterState, Server, TransferPeriod, UsageSample
from panel.servers.reconcile import reconcile_host
from panel.usage import metering
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def conn(catalog):
    """The simulated host's connection; the domains a test makes are removed after it."""
    conn = libvirt_connection.connection(catalog["host"].uri)
    before = {domain.UUIDString() for domain in conn.listAllDomains()}
    yield conn
    for domain in conn.listAllDomains():
        if domain.UUIDString() not in before:
            if domain.isActive():
                domain.destroy()
            domain.undefine()


def add_servers(customer, catalog, conn: libvirt.virConnect, count: int, prefix: str) -> list[Server]:
    """Running servers with running domains on the simulated host."""
    servers = []
    for index in range(count):
        server = factories.make_server(customer, catalog, f"{prefix}{index}", power_state="running")
        request = driver.DomainRequest(server.id, f"{prefix}{index}-{server.id.hex[:8]}", 1, 64, 1)
        disk = f"/var/lib/libvirt/images/{request.volume_name}"
        conn.defineXML(driver.domain_xml(catalog["host"], request, disk)).create()
        servers.append(server)
    return servers


def statements(work) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as queries:
        result = work()
    return len(queries), result


def steady_cycle(host) -> tuple[int, int]:
    """The statements of a reconcile and of a metering of the host, once both have run before."""
    reconcile_host(host)
    metering.meter_host(host)
    reconciled, _counts = statements(lambda: reconcile_host(host))
    metered, read = statements(lambda: metering.meter_host(host))
    assert read == Server.objects.filter(host=host, status="running").count()
    return reconciled, metered


def test_a_cycle_asks_as_many_statements_for_eight_servers_as_for_two(customer, catalog, conn):
    host = catalog["host"]
    few = add_servers(customer, catalog, conn, 2, "few")
    two = steady_cycle(host)
    many = few + add_servers(customer, catalog, conn, 6, "many")
    eight = steady_cycle(host)

    assert eight == two
    # Every server's reading was recorded, and the traffic since the last one added to its sample and period.
    assert MeterState.objects.filter(server__in=many).count() == 8
    samples = UsageSample.objects.filter(server__in=many, resolution=UsageSample.FIVE_MINUTES)
    assert samples.values("server").distinct().count() == 8
    assert all(sample.start.timestamp() % UsageSample.FIVE_MINUTES == 0 for sample in samples)
    assert TransferPeriod.objects.filter(server__in=many, in_bytes__gt=0).count() == 8


def test_drift_on_one_server_or_on_four_costs_the_same_statements(customer, catalog, conn):
    host = catalog["host"]
    servers = add_servers(customer, catalog, conn, 8, "drift")
    reconcile_host(host)

    conn.lookupByUUIDString(str(servers[0].id)).destroy()
    one, counts = statements(lambda: reconcile_host(host))
    assert counts["stopped"] == 1
    for server in servers[1:5]:
        conn.lookupByUUIDString(str(server.id)).destroy()
    four, counts = statements(lambda: reconcile_host(host))
    assert counts["stopped"] == 4

    assert four == one
    stopped = Server.objects.filter(pk__in=[server.pk for server in servers[:5]])
    assert set(stopped.values_list("status", "power_state", "task")) == {("stopped", "shutoff", None)}
    assert set(Server.objects.filter(pk__in=[s.pk for s in servers[5:]]).values_list("status")) == {
        ("running",)
    }
