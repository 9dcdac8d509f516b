"""IPv4 pools: validated on creation, one row per usable address, the lowest free address handed out once,
released addresses cooling down before anyone else gets them, and no address given twice under races."""

from __future__ import annotations

import ipaddress
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from hypervisor import ipam, reverse_dns
from hypervisor.ipam import NoAddress
from hypervisor.models import IPAddress, IPPool
from tests import factories


def addresses(pool: IPPool) -> list[str]:
    return list(pool.addresses.order_by("value").values_list("address", flat=True))


def error_text(raised: pytest.ExceptionInfo) -> str:
    return " ".join(raised.value.messages)


# Creating a pool.


@pytest.mark.django_db
@pytest.mark.parametrize(
    "cidr,gateway,excluded,message",
    [
        ("192.0.2.0/33", "192.0.2.1", [], "“192.0.2.0/33” is not an IPv4 network in CIDR form"),
        ("not a network", "192.0.2.1", [], "is not an IPv4 network in CIDR form"),
        ("192.0.2.5/24", "192.0.2.1", [], "has host bits set"),  # strict: the network address itself
        ("2001:db8::/64", "192.0.2.1", [], "is not an IPv4 network"),
        ("10.0.0.0/15", "10.0.0.1", [], "A pool holds at most a /16."),
        ("192.0.2.0/24", "192.0.3.1", [], "The gateway must be inside 192.0.2.0/24."),
        ("192.0.2.0/24", "gateway", [], "“gateway” is not an IPv4 address."),
        (
            "192.0.2.0/24",
            "192.0.2.1",
            ["198.51.100.7"],
            "Excluded addresses outside the network 192.0.2.0/24: 198.51.100.7.",
        ),
        (
            "192.0.2.0/24",
            "192.0.2.1",
            ["192.0.2.250-192.0.3.2"],
            "Excluded addresses outside the network 192.0.2.0/24: 192.0.2.250-192.0.3.2.",
        ),
        (
            "192.0.2.0/24",
            "192.0.2.1",
            ["192.0.2.20-192.0.2.10"],
            "The range “192.0.2.20-192.0.2.10” ends before it starts.",
        ),
        ("192.0.2.0/24", "192.0.2.1", ["banana"], "“banana” is not an address or a range like"),
        ("192.0.2.0/30", "192.0.2.1", ["192.0.2.2"], "The pool has no usable address left."),
    ],
)
def test_a_bad_pool_is_refused_with_a_clear_message_and_nothing_is_stored(cidr, gateway, excluded, message):
    region = factories.make_region()
    with pytest.raises(ValidationError) as raised:
        ipam.create_pool(region, "bad", cidr, gateway, excluded=excluded)
    assert message in error_text(raised)
    assert not IPPool.objects.exists()
    assert not IPAddress.objects.exists()


@pytest.mark.django_db
def test_bad_nameservers_are_refused():
    with pytest.raises(ValidationError) as raised:
        ipam.create_pool(factories.make_region(), "p", "192.0.2.0/24", "192.0.2.1", nameservers=["dns"])
    assert "“dns” is not an IP address." in error_text(raised)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "cidr,gateway",
    [
        ("192.0.2.0/25", "192.0.2.1"),  # the same network
        ("192.0.2.0/24", "192.0.2.200"),  # a bigger one around it
        ("192.0.0.0/16", "192.0.0.1"),
        ("192.0.2.64/26", "192.0.2.65"),  # a smaller one inside it
    ],
)
def test_overlapping_pools_are_refused_even_across_regions(cidr, gateway):
    factories.make_pool(factories.make_region("jakarta", "Jakarta"), "192.0.2.0/25")
    singapore = factories.make_region("singapore", "Singapore")
    with pytest.raises(ValidationError) as raised:
        ipam.create_pool(singapore, "again", cidr, gateway)
    text = error_text(raised)
    assert "overlaps the pool" in text and "192.0.2.0/25" in text, text
    assert IPPool.objects.count() == 1


@pytest.mark.django_db
def test_a_pool_holds_every_usable_address_except_network_broadcast_gateway_and_excluded():
    region = factories.make_region()
    pool = ipam.create_pool(
        region,
        " office ",
        "192.0.2.0/28",
        "192.0.2.1",
        nameservers=[" 192.0.2.53 ", "2001:db8::53"],
        excluded=["192.0.2.5", " 192.0.2.10-192.0.2.12 ", ""],
    )
    # .0 network, .15 broadcast, .1 gateway, .5 and .10-.12 excluded.
    assert addresses(pool) == [f"192.0.2.{n}" for n in (2, 3, 4, 6, 7, 8, 9, 13, 14)]
    assert (pool.name, pool.cidr, pool.gateway) == ("office", "192.0.2.0/28", "192.0.2.1")
    assert pool.nameservers == ["192.0.2.53", "2001:db8::53"]
    assert pool.excluded == ["192.0.2.5", "192.0.2.10-192.0.2.12"]
    assert ipam.pool_usage(pool) == {"total": 9, "used": 0, "cooling": 0, "reserved": 0}
    assert all(a.value == int(ipaddress.IPv4Address(a.address)) for a in pool.addresses.all())


def _counted_address_rows() -> float:
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [IPAddress._meta.db_table])
        return cursor.fetchone()[0]


@pytest.mark.django_db
@pytest.mark.skipif(db_connection.vendor != "postgresql", reason="Postgres's statistics")
def test_postgres_counts_a_new_or_grown_pools_addresses_at_once_for_the_orders_plans():
    region = factories.make_region()
    ipam.create_pool(region, "big", "10.8.0.0/22", "10.8.0.1")
    assert _counted_address_rows() >= 1021  # not an empty table until autovacuum's analyze
    bigger = ipam.create_pool(region, "bigger", "10.9.0.0/21", "10.9.0.1", excluded=["10.9.4.0/22"])
    counted = _counted_address_rows()
    assert counted >= 2040
    ipam.update_pool(bigger, excluded=[])  # the excluded /22 gets its rows
    assert _counted_address_rows() >= counted + 1000


@pytest.mark.django_db
def test_a_slash_16_is_the_largest_pool():
    pool = ipam.create_pool(factories.make_region(), "big", "10.20.0.0/16", "10.20.0.1")
    assert pool.addresses.count() == 65536 - 3


# Handing out and taking back.


@pytest.mark.django_db
def test_each_consumer_gets_the_lowest_free_address():
    region = factories.make_region()
    pool = factories.make_pool(region, "192.0.2.0/29", excluded=["192.0.2.3"])  # .2 .4 .5 .6 usable
    first, second = uuid.uuid4(), uuid.uuid4()
    got = ipam.allocate(region, first)
    assert (got.address, got.consumer_uuid, got.pool) == ("192.0.2.2", first, pool)
    assert got.allocated_at is not None
    assert ipam.allocate(region, second).address == "192.0.2.4"
    assert {k: [a.address for a in v] for k, v in ipam.addresses_of([first, second]).items()} == {
        str(first): ["192.0.2.2"],
        str(second): ["192.0.2.4"],
    }
    assert ipam.pool_usage(pool)["used"] == 2


@pytest.mark.django_db
def test_a_released_address_cools_down_before_it_is_handed_out_again(settings):
    settings.IPV4_COOLDOWN_MINUTES = 30
    region = factories.make_region()
    pool = factories.make_pool(region, "192.0.2.0/29")  # .2 - .6 usable
    first = uuid.uuid4()
    assert ipam.allocate(region, first).address == "192.0.2.2"
    reverse_dns.set_ptr(first, "192.0.2.2", "web1.example.com")

    assert ipam.release(first) == 1
    released = IPAddress.objects.get(address="192.0.2.2")
    assert released.consumer_uuid is None and released.released_at is not None and released.ptr == ""
    assert ipam.pool_usage(pool) == {"total": 5, "used": 0, "cooling": 1, "reserved": 0}

    # Still cooling: the next consumer gets the next address, not the one just released.
    assert ipam.allocate(region, uuid.uuid4()).address == "192.0.2.3"
    IPAddress.objects.filter(pk=released.pk).update(released_at=timezone.now() - timedelta(minutes=29))
    assert ipam.allocate(region, uuid.uuid4()).address == "192.0.2.4"

    # Move the clock past the cool-down: it is the lowest free address again.
    IPAddress.objects.filter(pk=released.pk).update(released_at=timezone.now() - timedelta(minutes=31))
    later = uuid.uuid4()
    again = ipam.allocate(region, later)
    assert (again.address, again.consumer_uuid, again.released_at) == ("192.0.2.2", later, None)


@pytest.mark.django_db
def test_a_zero_cool_down_hands_a_released_address_out_at_once(settings):
    settings.IPV4_COOLDOWN_MINUTES = 0
    region = factories.make_region()
    factories.make_pool(region, "192.0.2.0/29")
    first = uuid.uuid4()
    ipam.allocate(region, first)
    ipam.release(first)
    IPAddress.objects.filter(address="192.0.2.2").update(released_at=timezone.now() - timedelta(seconds=1))
    assert ipam.allocate(region, uuid.uuid4()).address == "192.0.2.2"


@pytest.mark.django_db
def test_an_exhausted_region_raises_no_address(settings):
    settings.IPV4_COOLDOWN_MINUTES = 60
    region = factories.make_region()
    factories.make_pool(region, "192.0.2.0/30")  # .2 is the only usable address (.1 is the gateway)
    holder = uuid.uuid4()
    ipam.allocate(region, holder)
    with pytest.raises(NoAddress, match="No free IPv4 address in this region"):
        ipam.allocate(region, uuid.uuid4())
    ipam.release(holder)
    with pytest.raises(NoAddress):  # cooling down
        ipam.allocate(region, uuid.uuid4())
    assert IPAddress.objects.filter(consumer_uuid__isnull=False).count() == 0


@pytest.mark.django_db
def test_inactive_pools_are_skipped():
    region = factories.make_region()
    closed = factories.make_pool(region, "192.0.2.0/29")
    factories.make_pool(region, "198.51.100.0/29")
    IPPool.objects.filter(pk=closed.pk).update(is_active=False)
    assert ipam.allocate(region, uuid.uuid4()).address == "198.51.100.2"
    assert ipam.region_has_pools(region)
    IPPool.objects.update(is_active=False)
    assert not ipam.region_has_pools(region)
    with pytest.raises(NoAddress):
        ipam.allocate(region, uuid.uuid4())


@pytest.mark.django_db
def test_other_regions_pools_are_never_used():
    jakarta = factories.make_region("jakarta", "Jakarta")
    singapore = factories.make_region("singapore", "Singapore")
    factories.make_pool(singapore, "192.0.2.0/24")
    assert not ipam.region_has_pools(jakarta)
    with pytest.raises(NoAddress):
        ipam.allocate(jakarta, uuid.uuid4())
    assert not IPAddress.objects.filter(consumer_uuid__isnull=False).exists()
    jakarta_pool = factories.make_pool(jakarta, "198.51.100.0/29")
    assert ipam.allocate(jakarta, uuid.uuid4()).pool == jakarta_pool


@pytest.mark.django_db
def test_releasing_what_holds_nothing_is_harmless():
    region = factories.make_region()
    factories.make_pool(region, "192.0.2.0/29")
    assert ipam.release(uuid.uuid4()) == 0
    assert not IPAddress.objects.filter(released_at__isnull=False).exists()


# Races.

THREADS = 10
HOLD_SECONDS = 0.3  # how long each thread's transaction stays open after taking its address, like an order


def allocate_concurrently(region, threads: int = THREADS) -> dict[uuid.UUID, object]:
    """`threads` consumers ask for an address at the same moment, each in its own connection and in a
    transaction that stays open a little after the address was taken (as an order's transaction does)."""
    barrier = threading.Barrier(threads)
    results: dict[uuid.UUID, object] = {}
    lock = threading.Lock()

    def ask() -> None:
        consumer = uuid.uuid4()
        try:
            barrier.wait(timeout=10)
            try:
                with transaction.atomic():
                    outcome: object = ipam.allocate(region, consumer).address
                    time.sleep(HOLD_SECONDS)
            except Exception as exc:  # NoAddress expected; anything else fails the assertions
                outcome = exc
            with lock:
                results[consumer] = outcome
        finally:
            db_connection.close()

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers)
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_get_distinct_addresses_until_the_pool_is_empty():
    region = factories.make_region()
    pool = factories.make_pool(region, "192.0.2.0/28", excluded=["192.0.2.8-192.0.2.14"])
    assert addresses(pool) == [f"192.0.2.{n}" for n in range(2, 8)]  # six usable addresses

    results = allocate_concurrently(region)

    handed_out = [r for r in results.values() if isinstance(r, str)]
    refused = [r for r in results.values() if isinstance(r, NoAddress)]
    assert len(results) == THREADS
    assert len(handed_out) == 6, results
    assert len(set(handed_out)) == 6
    assert len(refused) == THREADS - 6
    held = IPAddress.objects.filter(consumer_uuid__isnull=False)
    assert held.count() == 6
    assert set(held.values_list("consumer_uuid", flat=True)) == {
        consumer for consumer, result in results.items() if isinstance(result, str)
    }


@pytest.mark.django_db(transaction=True)
def test_an_address_being_handed_out_does_not_block_the_next_request():
    """One order's transaction holds the address it took; a second request meanwhile gets the next one."""
    region = factories.make_region()
    factories.make_pool(region, "192.0.2.0/29")
    taken = threading.Event()
    done = threading.Event()

    def first_order() -> None:
        try:
            with transaction.atomic():
                ipam.allocate(region, uuid.uuid4())
                taken.set()
                done.wait(timeout=10)
        finally:
            db_connection.close()

    holder = threading.Thread(target=first_order)
    holder.start()
    try:
        assert taken.wait(timeout=10)
        assert ipam.allocate(region, uuid.uuid4()).address == "192.0.2.3"
    finally:
        done.set()
        holder.join(timeout=10)
    assert IPAddress.objects.filter(consumer_uuid__isnull=False).count() == 2
