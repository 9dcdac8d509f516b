"""Every change of a server's addresses raises the version of its network filter, so that a worker rewrites
the filter on the host (defining a domain defines only the filters its host lacks). The firewall rows are
the last rank of the lock order (`LockOrder.firewalls`): nothing is locked after them. A rebuild from error
that takes new addresses (its IPv6 /64 in a region that has had IPv6 since the server was made, or
everything a failed create gave back) raises the version with them; additional addresses do too."""

from __future__ import annotations

import pytest
from django.db import transaction

from hypervisor import ipam
from hypervisor.models import Host, IPAddress
from panel.accounts import quotas
from panel.models import Firewall, Operation, Server
from panel.servers import actions, addresses, firewall, operations
from panel.servers.locks import Lock, LockOrder, LockOrderError
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def conn(catalog):
    """The simulated host, left without the domains a test makes on it."""
    with factories.TidySimulatedHost(catalog["host"].uri) as conn:
        yield conn


@pytest.fixture
def taken(monkeypatch) -> list[Lock]:
    """The locks LockOrder takes, in the order it takes them."""
    seen: list[Lock] = []
    original = LockOrder._take

    def record(self, lock):
        original(self, lock)
        if lock not in seen:
            seen.append(lock)

    monkeypatch.setattr(LockOrder, "_take", record)
    return seen


def test_the_firewall_rows_come_last_and_raise_the_versions(customer, catalog):
    server = factories.make_server(customer, catalog)
    with transaction.atomic():
        locks = LockOrder()
        locks.firewalls([server.pk])
        with pytest.raises(LockOrderError, match="customer lock is taken after the firewall lock"):
            locks.customer(customer.pk)
        with pytest.raises(LockOrderError, match="invoice_number lock is taken after the firewall lock"):
            locks.end_addon(str(server.pk), "192.0.2.9")
    row = Firewall.objects.get(pk=server.pk)
    assert row.pending and row.inbound == [] and row.default_inbound == "accept"


def test_a_rebuild_from_error_that_takes_its_new_ipv6_raises_the_filter_version(
    customer, catalog, conn, taken, django_capture_on_commit_callbacks
):
    region = catalog["region"]
    factories.make_pool(region, cidr="198.51.100.0/29")
    server = factories.make_real_server(customer, plan=catalog["plan"], image=catalog["image"], region=region)
    assert server.ipv4 and not server.ipv6
    firewall.set_firewall(server, [], "drop", customer)
    assert firewall.apply_pending(server.pk) is True
    before = Firewall.objects.get(pk=server.pk).version
    Server.objects.filter(pk=server.pk).update(status=Server.Status.ERROR)
    ipam.create_pool(region, "v6", "2001:db8:30::/60", "fe80::1")  # the region has IPv6 since

    taken.clear()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        operation = actions.rebuild_server(Server.objects.get(pk=server.pk), catalog["image"], customer)
    assert operation.params["reclaimed"] == {"address": True}
    assert taken == [Lock.CUSTOMER, Lock.SERVER, Lock.ADDRESS, Lock.FIREWALL]
    assert len(callbacks) == 2  # the operation, and the filter's apply task

    row = Firewall.objects.get(pk=server.pk)
    assert row.version == before + 1 and row.pending
    server = Server.objects.get(pk=server.pk)
    [network] = firewall.filter_spec(server).ipv6_networks
    assert network.endswith("/64") and network == server.ipv6_addresses[0].assigned_network
    assert firewall.apply_pending(server.pk) is True
    assert not Firewall.objects.get(pk=server.pk).pending


def test_a_rebuild_of_a_failed_create_raises_it_after_the_subscription(customer, catalog, conn, taken):
    region = catalog["region"]
    factories.make_pool(region, cidr="198.51.100.0/29")
    server = actions.order_server(
        customer, name="web1", plan=catalog["plan"], image=catalog["image"], region=region
    )
    create = Operation.objects.get(server=server, type=Operation.Type.CREATE)
    Host.objects.filter(pk=catalog["host"].pk).update(storage_pool="missing-pool")
    operations.execute(str(create.pk))
    Host.objects.filter(pk=catalog["host"].pk).update(storage_pool=catalog["host"].storage_pool)
    assert not IPAddress.objects.filter(consumer_uuid=server.id).exists()
    version = Firewall.objects.filter(pk=server.pk).values_list("version", flat=True).first() or 0

    taken.clear()
    operation = actions.rebuild_server(Server.objects.get(pk=server.pk), catalog["image"], customer)
    assert set(operation.params["reclaimed"]) == {"capacity", "address", "subscription"}
    assert taken[-2:] == [Lock.INVOICE_NUMBER, Lock.FIREWALL]
    assert Firewall.objects.get(pk=server.pk).version > version


def test_adding_and_removing_an_address_raise_it_last(customer, catalog, conn, taken):
    factories.make_pool(catalog["region"], cidr="198.51.100.0/28")
    server = factories.make_real_server(
        customer, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    quotas.set_limits(customer, {"extra_ipv4": 2})

    taken.clear()
    added = addresses.add_address(server, customer)
    assert taken == [Lock.CUSTOMER, Lock.SERVER, Lock.ADDRESS, Lock.INVOICE_NUMBER, Lock.FIREWALL]
    assert added.address in firewall.filter_spec(Server.objects.get(pk=server.pk)).ipv4
    version = Firewall.objects.get(pk=server.pk).version

    taken.clear()
    addresses.remove_address(server, added.address, customer)
    assert taken == [Lock.CUSTOMER, Lock.SERVER, Lock.INVOICE_NUMBER, Lock.FIREWALL]
    assert Firewall.objects.get(pk=server.pk).version == version + 1
    assert added.address not in firewall.filter_spec(Server.objects.get(pk=server.pk)).ipv4
