"""Changing a pool: its name, nameservers and whether it is in use change; a new excluded list reserves the
free rows it covers, frees the ones it no longer covers and makes the rows of addresses excluded when the
pool was made; an excluded address in use is refused by name and nothing changes. The network and gateway
never change. Usage counts follow."""

from __future__ import annotations

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

pytestmark = pytest.mark.django_db


def states(pool: IPPool) -> dict[str, str]:
    """address -> free | reserved | held"""
    result = {}
    for row in pool.addresses.order_by("value"):
        result[row.address] = "held" if row.consumer_uuid else "reserved" if row.reserved else "free"
    return result


def test_name_nameservers_and_use_change_and_the_network_stays():
    region = factories.make_region()
    pool = ipam.create_pool(region, "old", "192.0.2.0/29", "192.0.2.1", nameservers=["192.0.2.53"])
    changed = ipam.update_pool(pool, name=" new ", nameservers=[" 9.9.9.9", "2620:fe::fe"], is_active=False)
    assert (changed.name, changed.nameservers, changed.is_active) == (
        "new",
        ["9.9.9.9", "2620:fe::fe"],
        False,
    )
    stored = IPPool.objects.get(pk=pool.pk)
    assert (stored.name, stored.cidr, stored.gateway, stored.excluded) == (
        "new",
        "192.0.2.0/29",
        "192.0.2.1",
        [],
    )
    with pytest.raises(NoAddress):
        ipam.allocate(region, uuid.uuid4())
    ipam.update_pool(pool, is_active=True, name="")  # an empty name is the network's
    assert IPPool.objects.get(pk=pool.pk).name == "192.0.2.0/29"
    assert ipam.allocate(region, uuid.uuid4()).address == "192.0.2.2"


def test_bad_values_are_refused_and_nothing_changes():
    pool = ipam.create_pool(factories.make_region(), "p", "192.0.2.0/29", "192.0.2.1", excluded=["192.0.2.6"])
    for kwargs, code in [
        ({"nameservers": ["dns"]}, "invalid_nameserver"),
        ({"excluded": ["198.51.100.1"]}, "invalid_excluded"),
        ({"excluded": ["192.0.2.5-192.0.2.2"]}, "invalid_excluded"),
        ({"name": "x" * 101}, "invalid_name"),
        ({"name": "fine", "excluded": ["banana"]}, "invalid_excluded"),
    ]:
        with pytest.raises(ValidationError) as raised:
            ipam.update_pool(pool, **kwargs)
        assert raised.value.code == code
    stored = IPPool.objects.get(pk=pool.pk)
    assert (stored.name, stored.nameservers, stored.excluded) == ("p", [], ["192.0.2.6"])
    assert states(pool) == {f"192.0.2.{n}": "free" for n in (2, 3, 4, 5)}


def test_a_new_excluded_list_reserves_frees_and_makes_rows():
    region = factories.make_region()
    pool = ipam.create_pool(region, "p", "192.0.2.0/29", "192.0.2.1", excluded=["192.0.2.5-192.0.2.6"])
    assert states(pool) == {"192.0.2.2": "free", "192.0.2.3": "free", "192.0.2.4": "free"}

    ipam.update_pool(pool, excluded=["192.0.2.2-192.0.2.3", "192.0.2.6"])
    assert states(pool) == {
        "192.0.2.2": "reserved",
        "192.0.2.3": "reserved",
        "192.0.2.4": "free",
        "192.0.2.5": "free",  # excluded when the pool was made, no longer
    }
    assert IPPool.objects.get(pk=pool.pk).excluded == ["192.0.2.2-192.0.2.3", "192.0.2.6"]
    assert ipam.pool_usage(pool) == {"total": 4, "used": 0, "cooling": 0, "reserved": 2}
    assert ipam.allocate(region, uuid.uuid4()).address == "192.0.2.4"

    ipam.update_pool(pool, excluded=[])
    assert states(pool) == {
        "192.0.2.2": "free",
        "192.0.2.3": "free",
        "192.0.2.4": "held",
        "192.0.2.5": "free",
        "192.0.2.6": "free",
    }
    new = IPAddress.objects.get(address="192.0.2.6")
    assert (new.value, new.prefix_length, new.role) == (0xC0000206, 32, "primary")
    pooled = ipam.pools_with_usage().get(pk=pool.pk)
    assert (pooled.total, pooled.used, pooled.cooling, pooled.reserved) == (5, 1, 0, 0)


def test_an_excluded_address_in_use_is_refused_by_name_and_nothing_changes():
    region = factories.make_region()
    pool = ipam.create_pool(region, "p", "192.0.2.0/29", "192.0.2.1")
    ipam.allocate(region, uuid.uuid4())  # .2
    with pytest.raises(ValidationError) as raised:
        ipam.update_pool(pool, name="renamed", excluded=["192.0.2.2-192.0.2.4"])
    assert raised.value.code == "excluded_in_use"
    assert raised.value.messages == ["These addresses are in use and cannot be excluded: 192.0.2.2."]
    stored = IPPool.objects.get(pk=pool.pk)
    assert (stored.name, stored.excluded) == ("p", [])
    assert states(pool) == {"192.0.2.2": "held", **{f"192.0.2.{n}": "free" for n in (3, 4, 5, 6)}}


def test_a_cooling_row_that_is_excluded_stays_out_and_keeps_its_dns_withdrawal(settings):
    settings.IPV4_COOLDOWN_MINUTES = 60
    region = factories.make_region()
    pool = ipam.create_pool(region, "p", "192.0.2.0/29", "192.0.2.1")
    server = uuid.uuid4()
    ipam.allocate(region, server)
    reverse_dns.set_ptr(server, "192.0.2.2", "web.example.com")
    ipam.release(server)
    ipam.update_pool(pool, excluded=["192.0.2.2"])
    cooled = IPAddress.objects.get(address="192.0.2.2")
    assert cooled.reserved and cooled.ptr_state == "pending"
    assert ipam.pool_usage(pool) == {"total": 5, "used": 0, "cooling": 0, "reserved": 1}
    IPAddress.objects.filter(pk=cooled.pk).update(released_at=timezone.now() - timedelta(days=1))
    assert ipam.allocate(region, uuid.uuid4()).address == "192.0.2.3"


def test_a_routed_pool_excludes_whole_64s_and_names_the_one_in_use():
    region = factories.make_region()
    pool = ipam.create_pool(region, "v6", "2001:db8::/62", "fe80::1")
    ipam.allocate_ipv6_if_pooled(region, uuid.uuid4())  # 2001:db8::/64
    with pytest.raises(ValidationError) as raised:
        ipam.update_pool(pool, excluded=["2001:db8::1234"])
    assert raised.value.messages == ["These addresses are in use and cannot be excluded: 2001:db8::/64."]
    ipam.update_pool(pool, excluded=["2001:db8:0:2::/64", "2001:db8:0:3::99"])
    assert states(pool) == {
        "2001:db8::1": "held",
        "2001:db8:0:1::1": "free",
        "2001:db8:0:2::1": "reserved",
        "2001:db8:0:3::1": "reserved",
    }
    assert ipam.allocate_ipv6_if_pooled(region, uuid.uuid4()).address == "2001:db8:0:1::1"
    with pytest.raises(NoAddress):
        ipam.allocate_ipv6_if_pooled(region, uuid.uuid4())


def test_a_large_prefix_grows_back_to_65536_rows_when_its_tail_is_no_longer_excluded():
    excluded = ["2001:db8:0:4::100/120", "2001:db8:0:4::200-2001:db8:0:4:ffff:ffff:ffff:ffff"]
    pool = ipam.create_pool(factories.make_region(), "lan", "2001:db8:0:4::/64", "fe80::1", excluded=excluded)
    assert pool.addresses.count() == 255  # ::1 - ::ff
    ipam.update_pool(pool, excluded=["2001:db8:0:4::100/120"])
    assert pool.addresses.count() == 65536
    values = list(pool.addresses.order_by("value").values_list("address", flat=True))
    assert values[254:256] == ["2001:db8:0:4::ff", "2001:db8:0:4::200"]
    assert values[-1] == "2001:db8:0:4::1:100"


def test_freeing_more_than_65536_addresses_at_once_is_refused():
    excluded = ["2001:db8:0:5::2-2001:db8:0:5::1:0:0"]
    pool = ipam.create_pool(factories.make_region(), "lan", "2001:db8:0:5::/64", "fe80::1", excluded=excluded)
    assert pool.addresses.count() == 65536
    with pytest.raises(ValidationError) as raised:
        ipam.update_pool(pool, excluded=[])
    assert raised.value.code == "too_large"
    assert IPPool.objects.get(pk=pool.pk).excluded == ["2001:db8:0:5::2-2001:db8:0:5::1:0:0"]
    assert pool.addresses.count() == 65536


@pytest.mark.django_db(transaction=True)
def test_an_address_being_handed_out_while_it_is_excluded_is_refused_not_reserved_under_its_holder():
    """An order's transaction holds the row it took; excluding that row meanwhile waits for the order and
    then finds the address in use."""
    region = factories.make_region()
    pool = ipam.create_pool(region, "p", "192.0.2.0/29", "192.0.2.1")
    consumer = uuid.uuid4()
    taken, go_on = threading.Event(), threading.Event()

    def order() -> None:
        try:
            with transaction.atomic():
                ipam.allocate(region, consumer)
                taken.set()
                go_on.wait(timeout=10)
                time.sleep(0.3)  # still holding the row while the admin's change waits for it
        finally:
            db_connection.close()

    worker = threading.Thread(target=order)
    worker.start()
    try:
        assert taken.wait(timeout=10)
        go_on.set()
        with pytest.raises(ValidationError) as raised:
            ipam.update_pool(pool, excluded=["192.0.2.2-192.0.2.3"])
    finally:
        go_on.set()
        worker.join(timeout=10)
    assert raised.value.messages == ["These addresses are in use and cannot be excluded: 192.0.2.2."]
    assert IPAddress.objects.get(address="192.0.2.2").consumer_uuid == consumer
    assert not IPAddress.objects.filter(reserved=True).exists()
    assert IPPool.objects.get(pk=pool.pk).excluded == []
