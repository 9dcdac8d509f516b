"""Many customers order at the same moment (threads against real Postgres, each its own request and
transaction): the region sells exactly what its hosts and its IPv4 pool hold, and no more."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection as db_connection
from django.db.models import Sum

from hypervisor.models import Allocation, Host, IPAddress
from panel.models import Operation, Server
from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db(transaction=True)

PLAN = dict(vcpus=1, memory_mib=1024, disk_gib=10)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def region_with_hosts(memory_per_host: list[int]):
    """A region whose hosts are limited by memory only (each fits memory // 1024 servers of PLAN)."""
    region, _plan, image = factories.make_catalog()
    plan = factories.make_plan("one-gig", **PLAN)
    hosts = [
        factories.set_host_size(factories.make_host(region=region, probe=False), memory_mib=memory)
        for memory in memory_per_host
    ]
    return region, plan, image, hosts


def order_concurrently(count: int, region, plan, image) -> list:
    """`count` customers each send one order; all start together. Returns the responses."""
    customers = [factories.make_user() for _ in range(count)]
    clients = [api_client_for(customer) for customer in customers]
    barrier = threading.Barrier(count)
    responses: list = [None] * count

    def order(index: int) -> None:
        try:
            barrier.wait(timeout=20)
            try:
                responses[index] = clients[index].post(
                    "/api/v1/servers/",
                    {"name": f"web{index}", "plan": plan.slug, "image": image.slug, "region": region.slug},
                    format="json",
                )
            except Exception as exc:  # a server error: recorded, and fails the assertions below
                responses[index] = exc
        finally:
            db_connection.close()

    threads = [threading.Thread(target=order, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    errors = [r for r in responses if isinstance(r, Exception)]
    assert not errors, errors
    return responses


def outcome(response) -> str:
    if response.status_code == 202:
        return "202"
    return f"{response.status_code} {response.json()['error']['code']}"


def assert_no_host_beyond_capacity(hosts: list[Host]) -> None:
    for host in hosts:
        used = Allocation.objects.filter(host=host).aggregate(
            vcpus=Sum("vcpus"), memory_mib=Sum("memory_mib"), disk_gib=Sum("disk_gib")
        )
        for resource, amount in used.items():
            assert (amount or 0) <= host.capacity[resource], (host.name, resource, amount)


def test_a_region_that_fits_n_servers_accepts_exactly_n_of_3n_concurrent_orders(purge_queue):
    region, plan, image, hosts = region_with_hosts([3072, 2048])  # 3 + 2 servers
    fits = 5
    factories.make_pool(region, "192.0.2.0/27")  # 29 addresses: not the limit

    responses = order_concurrently(3 * fits, region, plan, image)

    assert Counter(outcome(r) for r in responses) == {"202": fits, "422 out_of_capacity": 2 * fits}, [
        (r.status_code, r.json()) for r in responses if r.status_code != 202
    ]
    refusal = next(r for r in responses if r.status_code == 422).json()["error"]
    assert "Out of capacity in this region" in refusal["message"]

    accepted = {r.json()["id"] for r in responses if r.status_code == 202}
    servers = Server.objects.all()
    assert {str(pk) for pk in servers.values_list("id", flat=True)} == accepted  # no rows for the refused
    assert Operation.objects.filter(type=Operation.Type.CREATE).count() == fits
    assert {str(c) for c in Allocation.objects.values_list("consumer_uuid", flat=True)} == accepted
    assert_no_host_beyond_capacity(hosts)
    for host in hosts:
        assert Allocation.objects.filter(host=host).count() == host.capacity["memory_mib"] // 1024
        assert Server.objects.filter(host=host).count() == Allocation.objects.filter(host=host).count()

    # Every accepted server holds exactly one IPv4 address, none handed out twice, shown in its response.
    held = IPAddress.objects.filter(consumer_uuid__isnull=False)
    assert held.count() == fits
    assert {str(c) for c in held.values_list("consumer_uuid", flat=True)} == accepted
    shown = [r.json()["ipv4"] for r in responses if r.status_code == 202]
    assert all(len(ipv4) == 1 for ipv4 in shown)
    assert len({ipv4[0] for ipv4 in shown}) == fits
    assert {ipv4[0] for ipv4 in shown} == set(held.values_list("address", flat=True))


def test_when_the_ip_pool_is_the_limit_exactly_that_many_orders_are_accepted(purge_queue):
    region, plan, image, hosts = region_with_hosts([4096, 4096])  # 8 servers of capacity
    pool = factories.make_pool(region, "192.0.2.0/29")  # .2 - .6: 5 addresses
    addresses = pool.addresses.count()
    assert addresses == 5

    responses = order_concurrently(12, region, plan, image)

    assert Counter(outcome(r) for r in responses) == {
        "202": addresses,
        "422 out_of_addresses": 12 - addresses,
    }
    refusal = next(r for r in responses if r.status_code == 422).json()["error"]
    assert "No free IPv4 address" in refusal["message"]
    accepted = {r.json()["id"] for r in responses if r.status_code == 202}
    assert {str(pk) for pk in Server.objects.values_list("id", flat=True)} == accepted
    # The refused orders had claimed capacity before the pool ran dry: none of it is left behind.
    assert {str(c) for c in Allocation.objects.values_list("consumer_uuid", flat=True)} == accepted
    assert_no_host_beyond_capacity(hosts)
    held = IPAddress.objects.filter(consumer_uuid__isnull=False)
    assert {str(c) for c in held.values_list("consumer_uuid", flat=True)} == accepted
    assert held.count() == addresses
