"""Additional IPv4 addresses: taken like primary ones (role additional), released one by one, moved to
another consumer with their reverse DNS name, released with a pending DNS withdrawal where they had a name;
and IPv6 and additional IPv4 rows handed out at the same moment never go to two consumers."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from hypervisor import ipam
from hypervisor.ipam import NoAddress
from hypervisor.models import IPAddress
from tests import factories


@pytest.fixture
def region(db):
    region = factories.make_region()
    factories.make_pool(region, "192.0.2.0/29")  # .2 - .6 usable (.1 is the gateway)
    return region


def row(address: str) -> IPAddress:
    return IPAddress.objects.get(address=address)


@pytest.mark.django_db
def test_an_additional_address_is_the_lowest_free_one_with_role_additional(region):
    server = uuid.uuid4()
    primary = ipam.allocate(region, server)
    extra = ipam.allocate_additional(region, server)
    assert (primary.address, primary.role) == ("192.0.2.2", "primary")
    assert (extra.address, extra.role, extra.consumer_uuid) == ("192.0.2.3", "additional", server)
    assert extra.allocated_at is not None
    for _ in range(3):
        ipam.allocate_additional(region, server)
    with pytest.raises(NoAddress, match="No free IPv4 address in this region"):
        ipam.allocate_additional(region, server)
    assert IPAddress.objects.filter(consumer_uuid=server, role="additional").count() == 4


@pytest.mark.django_db
def test_releasing_one_additional_address_frees_only_it_and_withdraws_its_name(region):
    server = uuid.uuid4()
    ipam.allocate(region, server)
    named = ipam.allocate_additional(region, server)
    plain = ipam.allocate_additional(region, server)
    IPAddress.objects.filter(pk=named.pk).update(ptr="shop.example.com", ptr_state="pushed")

    freed = ipam.release_one(server, "192.0.2.3")
    assert (freed.address, freed.consumer_uuid, freed.role, freed.ptr) == ("192.0.2.3", None, "primary", "")
    assert freed.ptr_state == "pending" and freed.ptr_changed_at is not None
    assert freed.released_at is not None
    assert set(IPAddress.objects.filter(consumer_uuid=server).values_list("address", flat=True)) == {
        "192.0.2.2",
        plain.address,
    }

    # A row without a name keeps its DNS state as it was.
    IPAddress.objects.filter(pk=plain.pk).update(ptr_state="failed")
    ipam.release_one(server, plain.address)
    assert (row(plain.address).ptr_state, row(plain.address).ptr_changed_at) == ("failed", None)


@pytest.mark.django_db
def test_release_one_refuses_what_the_consumer_does_not_hold_as_an_additional_address(region):
    server, other = uuid.uuid4(), uuid.uuid4()
    ipam.allocate(region, server)
    extra = ipam.allocate_additional(region, server)
    for consumer, address in [
        (server, "192.0.2.2"),  # the primary address goes only with the server
        (other, extra.address),  # someone else's
        (server, "192.0.2.6"),  # free
        (server, "not an address"),
        (server, "198.51.100.1"),  # in no pool
    ]:
        with pytest.raises(IPAddress.DoesNotExist):
            ipam.release_one(consumer, address)
    assert IPAddress.objects.filter(consumer_uuid=server).count() == 2
    assert not IPAddress.objects.filter(released_at__isnull=False).exists()


@pytest.mark.django_db
def test_moving_an_additional_address_keeps_its_role_and_name_and_happens_once(region):
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ipam.allocate(region, first)
    extra = ipam.allocate_additional(region, first)
    IPAddress.objects.filter(pk=extra.pk).update(ptr="shop.example.com", ptr_state="pushed")

    moved = ipam.move(extra.address, first, second)
    assert (moved.consumer_uuid, moved.role, moved.ptr, moved.ptr_state) == (
        second,
        "additional",
        "shop.example.com",
        "pushed",
    )
    assert moved.released_at is None
    # Moving it again from the first consumer finds it gone: one of two racing moves wins.
    with pytest.raises(IPAddress.DoesNotExist):
        ipam.move(extra.address, first, third)
    with pytest.raises(IPAddress.DoesNotExist):
        ipam.move("192.0.2.2", first, third)  # a primary address does not move
    assert row(extra.address).consumer_uuid == second
    assert row("192.0.2.2").consumer_uuid == first


@pytest.mark.django_db
def test_releasing_a_server_frees_every_row_and_withdraws_only_the_named_ones(region):
    v6 = ipam.create_pool(region, "v6", "2001:db8::/62", "fe80::1")
    server = uuid.uuid4()
    ipam.allocate(region, server)
    ipam.allocate_ipv6_if_pooled(region, server)
    extra = ipam.allocate_additional(region, server)
    IPAddress.objects.filter(address="2001:db8::1").update(ptr="web.example.com", ptr_state="pushed")
    IPAddress.objects.filter(pk=extra.pk).update(ptr_state="failed", ptr_error="was refused")
    before = timezone.now()

    assert ipam.release(server) == 3

    routed = row("2001:db8::1")
    assert (routed.consumer_uuid, routed.ptr, routed.ptr_state, routed.pool) == (None, "", "pending", v6)
    assert routed.ptr_changed_at >= before
    assert (row(extra.address).role, row(extra.address).ptr_state) == ("primary", "failed")
    assert (row("192.0.2.2").ptr_state, row("192.0.2.2").ptr_changed_at) == ("", None)
    assert ipam.release(server) == 0


# Races.

HOLD_SECONDS = 0.3


@pytest.mark.django_db(transaction=True)
def test_concurrent_ipv6_and_additional_ipv4_requests_get_distinct_rows():
    region = factories.make_region()
    factories.make_pool(region, "192.0.2.0/29")  # five IPv4 addresses
    ipam.create_pool(region, "v6", "2001:db8::/62", "fe80::1")  # four routed /64s
    asks = ["ipv6"] * 7 + ["additional"] * 7
    barrier = threading.Barrier(len(asks))
    results: list[tuple[str, uuid.UUID, object]] = []
    lock = threading.Lock()

    def ask(kind: str) -> None:
        consumer = uuid.uuid4()
        try:
            barrier.wait(timeout=10)
            try:
                with transaction.atomic():
                    if kind == "ipv6":
                        outcome: object = ipam.allocate_ipv6_if_pooled(region, consumer).address
                    else:
                        outcome = ipam.allocate_additional(region, consumer).address
                    time.sleep(HOLD_SECONDS)
            except Exception as exc:  # NoAddress expected; anything else fails the assertions
                outcome = exc
            with lock:
                results.append((kind, consumer, outcome))
        finally:
            db_connection.close()

    threads = [threading.Thread(target=ask, args=(kind,)) for kind in asks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    def given(kind: str) -> list[str]:
        return [outcome for k, _c, outcome in results if k == kind and isinstance(outcome, str)]

    assert sorted(given("ipv6")) == ["2001:db8:0:1::1", "2001:db8:0:2::1", "2001:db8:0:3::1", "2001:db8::1"]
    assert sorted(given("additional")) == [f"192.0.2.{n}" for n in range(2, 7)]
    refused = [outcome for _k, _c, outcome in results if not isinstance(outcome, str)]
    assert len(refused) == 3 + 2 and all(isinstance(outcome, NoAddress) for outcome in refused), refused
    held = {(r.address, r.consumer_uuid) for r in IPAddress.objects.filter(consumer_uuid__isnull=False)}
    assert held == {(outcome, consumer) for _k, consumer, outcome in results if isinstance(outcome, str)}
    roles = {r.address: r.role for r in IPAddress.objects.filter(consumer_uuid__isnull=False)}
    assert {roles[address] for address in given("ipv6")} == {"primary"}
    assert {roles[address] for address in given("additional")} == {"additional"}
