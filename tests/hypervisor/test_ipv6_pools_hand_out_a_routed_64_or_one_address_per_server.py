"""IPv6 pools: a prefix from /44 to /63 is cut into routed /64s (one per server, the server using its ::1),
a /64 or longer prefix is handed out address by address; both are validated on creation, never overlap
another IPv6 pool, keep IPv4 and IPv6 apart, and hand each row out once."""

from __future__ import annotations

import ipaddress
import tracemalloc
import uuid

import pytest
from django.core.exceptions import ValidationError

from hypervisor import ipam
from hypervisor.ipam import NoAddress
from hypervisor.models import IPAddress, IPPool
from tests import factories

pytestmark = pytest.mark.django_db


def addresses(pool: IPPool) -> list[str]:
    return list(pool.addresses.order_by("value").values_list("address", flat=True))


def refused(*args, **kwargs) -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        ipam.create_pool(factories.make_region(), "bad", *args, **kwargs)
    assert not IPPool.objects.exists() and not IPAddress.objects.exists()
    return raised.value


# Creating a pool.


def test_a_prefix_shorter_than_64_is_cut_into_routed_64s():
    pool = ipam.create_pool(factories.make_region(), "v6", "2001:db8:0:100::/62", "fe80::1")
    assert (pool.family, pool.assignment, pool.cidr, pool.gateway) == (
        6,
        "prefix64",
        "2001:db8:0:100::/62",
        "fe80::1",
    )
    assert addresses(pool) == [f"2001:db8:0:10{n}::1" for n in range(4)]
    rows = list(pool.addresses.order_by("value"))
    assert {row.prefix_length for row in rows} == {64}
    assert all(row.value == int(ipaddress.IPv6Address(row.address)) for row in rows)
    assert [ipam.address_network(row) for row in rows] == [f"2001:db8:0:10{n}::/64" for n in range(4)]
    assert ipam.pool_usage(pool) == {"total": 4, "used": 0, "cooling": 0, "reserved": 0}


def test_a_slash_48_holds_65536_routed_64s_and_a_slash_44_its_first_65536():
    pool = ipam.create_pool(factories.make_region(), "big", "2001:db8:1::/48", "fe80::1")
    assert pool.addresses.count() == 65536
    wide = ipam.create_pool(factories.make_region("bali", "Bali"), "wider", "2001:db8:10::/44", "fe80::1")
    assert wide.addresses.count() == 65536
    assert addresses(wide)[-1] == "2001:db8:10:ffff::1"


def test_a_slash_64_or_longer_hands_out_single_addresses_except_anycast_gateway_and_excluded():
    pool = ipam.create_pool(
        factories.make_region(),
        "on-link",
        "2001:db8:0:1::/124",
        "2001:db8:0:1::1",
        nameservers=["2001:4860:4860::8888"],
        excluded=["2001:db8:0:1::5", "2001:db8:0:1::a-2001:db8:0:1::c", "2001:db8:0:1::e/127"],
    )
    assert (pool.family, pool.assignment) == (6, "address")
    # ::0 is the subnet-router anycast address, ::1 the gateway.
    assert addresses(pool) == [f"2001:db8:0:1::{n:x}" for n in (2, 3, 4, 6, 7, 8, 9, 0xD)]
    assert set(pool.addresses.values_list("prefix_length", flat=True)) == {128}
    assert pool.nameservers == ["2001:4860:4860::8888"]
    assert pool.excluded == ["2001:db8:0:1::5", "2001:db8:0:1::a-2001:db8:0:1::c", "2001:db8:0:1::e/127"]


def test_a_slash_64_address_pool_holds_its_first_65536_usable_addresses():
    pool = ipam.create_pool(factories.make_region(), "lan", "2001:db8:0:2::/64", "fe80::1")
    assert pool.addresses.count() == 65536
    assert addresses(pool)[0] == "2001:db8:0:2::1" and addresses(pool)[-1] == "2001:db8:0:2::1:0"


def test_the_assignment_is_chosen_or_checked_against_the_prefix_length():
    region = factories.make_region()
    assert (
        ipam.create_pool(
            region, "a", "2001:db8:a::/64", "fe80::1", excluded=["2001:db8:a::100/120"]
        ).assignment
        == "address"
    )
    assert (
        ipam.create_pool(region, "b", "2001:db8:b::/63", "fe80::1", assignment="prefix64").assignment
        == "prefix64"
    )
    v4 = ipam.create_pool(region, "c", "192.0.2.0/29", "192.0.2.1", assignment="address")
    assert (v4.family, v4.assignment) == (4, "address")
    assert set(v4.addresses.values_list("prefix_length", flat=True)) == {32}


def test_a_routed_pool_never_hands_out_the_64_its_gateway_is_in():
    pool = ipam.create_pool(factories.make_region(), "v6", "2001:db8::/62", "2001:db8:0:2::1")
    assert addresses(pool) == ["2001:db8::1", "2001:db8:0:1::1", "2001:db8:0:3::1"]


@pytest.mark.parametrize(
    "cidr,gateway,options,code,message",
    [
        ("2001:db8::/43", "fe80::1", {}, "too_large", "A pool of routed /64s takes a prefix from /44 to /63"),
        (
            "2001:db8::/64",
            "fe80::1",
            {"assignment": "prefix64"},
            "invalid_assignment",
            "needs a prefix from /44 to /63",
        ),
        (
            "2001:db8::/56",
            "fe80::1",
            {"assignment": "address"},
            "invalid_assignment",
            "needs an on-link prefix of /64 or longer",
        ),
        (
            "192.0.2.0/24",
            "192.0.2.1",
            {"assignment": "prefix64"},
            "invalid_assignment",
            "An IPv4 pool hands out single addresses",
        ),
        ("2001:db8::/56", "fe80::1", {"assignment": "bananas"}, "invalid_assignment", "is not an assignment"),
        ("2001:db8::1/56", "fe80::1", {}, "invalid_cidr", "has host bits set"),
        ("2001:db8::/129", "fe80::1", {}, "invalid_cidr", "nor an IPv6 prefix"),
        ("2001:db8::/56", "2001:db9::1", {}, "invalid_gateway", "must be link-local (such as fe80::1"),
        ("2001:db8::/56", "ff02::1", {}, "invalid_gateway", "cannot be a gateway"),
        ("2001:db8::/56", "fe80::1%eth0", {}, "invalid_gateway", "is not an IPv6 address"),
        ("2001:db8::/56", "192.0.2.1", {}, "invalid_gateway", "is not an IPv4 network: give an IPv6 gateway"),
        ("192.0.2.0/24", "fe80::1", {}, "invalid_gateway", "is not an IPv6 network: give an IPv4 gateway"),
        (
            "2001:db8::/56",
            "fe80::1",
            {"nameservers": ["dns.example"]},
            "invalid_nameserver",
            "is not an IP address",
        ),
        ("2001:db8::/56", "fe80::1", {"excluded": ["192.0.2.1"]}, "invalid_excluded", "is not a /64 like"),
        (
            "2001:db8::/120",
            "fe80::1",
            {"excluded": ["2001:db8::x"]},
            "invalid_excluded",
            "is not an IPv6 address, a range",
        ),
        (
            "2001:db8::/120",
            "fe80::1",
            {"excluded": ["2001:db8::1:0"]},
            "invalid_excluded",
            "outside the network 2001:db8::/120",
        ),
        (
            "2001:db8::/120",
            "fe80::1",
            {"excluded": ["2001:db8::9-2001:db8::2"]},
            "invalid_excluded",
            "ends before it starts",
        ),
        ("2001:db8::/128", "2001:db8::", {}, "no_usable_address", "no usable address left"),
        (
            "2001:db8::/63",
            "fe80::1",
            {"excluded": ["2001:db8::/63"]},
            "no_usable_address",
            "no usable address left",
        ),
    ],
)
def test_a_bad_ipv6_pool_is_refused_with_a_clear_message_and_nothing_is_stored(
    cidr, gateway, options, code, message
):
    error = refused(cidr, gateway, **options)
    assert error.code == code
    assert message in " ".join(error.messages), error.messages


def test_excluded_entries_of_a_routed_pool_keep_out_every_64_they_touch():
    pool = ipam.create_pool(
        factories.make_region(),
        "v6",
        "2001:db8:0:10::/60",
        "fe80::1",
        excluded=[
            "2001:db8:0:11::/64",
            "2001:db8:0:13::1234",
            "2001:db8:0:15:ffff::-2001:db8:0:16::5",
            "2001:db8:0:18::/62",
        ],
    )
    assert addresses(pool) == [f"2001:db8:0:1{n:x}::1" for n in (0, 2, 4, 7, 0xC, 0xD, 0xE, 0xF)]


def test_a_huge_excluded_range_is_stepped_over_not_expanded():
    tracemalloc.start()
    try:
        pool = ipam.create_pool(
            factories.make_region(),
            "lan",
            "2001:db8:0:3::/64",
            "fe80::1",
            excluded=["2001:db8:0:3::2-2001:db8:0:3:ffff:ffff:ffff:fff0"],
        )
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    assert addresses(pool) == ["2001:db8:0:3::1"] + [
        f"2001:db8:0:3:ffff:ffff:ffff:fff{n:x}" for n in range(1, 16)
    ]


def test_ipv6_pools_never_overlap_each_other_but_are_never_compared_with_ipv4_ones():
    jakarta = factories.make_region("jakarta", "Jakarta")
    singapore = factories.make_region("singapore", "Singapore")
    first = ipam.create_pool(jakarta, "v6", "2001:db8::/48", "fe80::1")
    ipam.create_pool(jakarta, "v4", "192.0.2.0/24", "192.0.2.1")
    # ::ffff:192.0.2.0/120 holds the IPv4-mapped forms of 192.0.2.0/24: an IPv6 prefix, not an overlap.
    ipam.create_pool(singapore, "mapped", "::ffff:c000:200/120", "::ffff:c000:201")
    for cidr in ("2001:db8::/56", "2001:db8::/44", "2001:db8:0:ff00::/120"):
        with pytest.raises(ValidationError) as raised:
            ipam.create_pool(singapore, "again", cidr, "fe80::1")
        assert raised.value.code == "overlap"
        assert f"overlaps the pool {first}" in " ".join(raised.value.messages)
    assert IPPool.objects.count() == 3


# Handing out and taking back.


def test_each_server_gets_the_lowest_free_64_as_its_primary_ipv6():
    region = factories.make_region()
    assert ipam.allocate_ipv6_if_pooled(region, uuid.uuid4()) is None  # no IPv6 pool: no IPv6
    assert not ipam.region_has_pools(region, family=6)
    pool = ipam.create_pool(region, "v6", "2001:db8::/63", "fe80::1")
    assert ipam.region_has_pools(region, family=6)
    first, second = uuid.uuid4(), uuid.uuid4()
    got = ipam.allocate_ipv6_if_pooled(region, first)
    assert (got.address, got.prefix_length, got.consumer_uuid, got.role, got.pool) == (
        "2001:db8::1",
        64,
        first,
        "primary",
        pool,
    )
    assert ipam.allocate_ipv6_if_pooled(region, second).address == "2001:db8:0:1::1"
    with pytest.raises(NoAddress, match="No free IPv6 address in this region"):
        ipam.allocate_ipv6_if_pooled(region, uuid.uuid4())
    assert ipam.pool_usage(pool)["used"] == 2


def test_ipv4_and_ipv6_are_handed_out_from_their_own_pools():
    region = factories.make_region()
    ipam.create_pool(region, "v6", "2001:db8::/120", "2001:db8::1")
    server = uuid.uuid4()
    # A region with IPv6 pools only gives no IPv4 address, and takes no IPv6 row for it.
    assert not ipam.region_has_pools(region)
    assert ipam.allocate_if_pooled(region, server) is None
    with pytest.raises(NoAddress, match="No free IPv4 address"):
        ipam.allocate(region, server)
    with pytest.raises(NoAddress, match="No free IPv4 address"):
        ipam.allocate_additional(region, server)
    assert not IPAddress.objects.filter(consumer_uuid=server).exists()

    ipam.create_pool(region, "v4", "192.0.2.0/29", "192.0.2.1")
    assert ipam.allocate_if_pooled(region, server).address == "192.0.2.2"
    assert ipam.allocate_ipv6_if_pooled(region, server).address == "2001:db8::2"
    assert ipam.allocate_additional(region, server).address == "192.0.2.3"
    rows = {
        row.address: (row.role, row.prefix_length) for row in IPAddress.objects.filter(consumer_uuid=server)
    }
    assert rows == {
        "192.0.2.2": ("primary", 32),
        "2001:db8::2": ("primary", 128),
        "192.0.2.3": ("additional", 32),
    }
    assert ipam.release(server) == 3
    assert not IPAddress.objects.filter(consumer_uuid=server).exists()
    assert set(IPAddress.objects.filter(released_at__isnull=False).values_list("role", flat=True)) == {
        "primary"
    }


def test_inactive_ipv6_pools_count_as_none():
    region = factories.make_region()
    pool = ipam.create_pool(region, "v6", "2001:db8::/63", "fe80::1")
    ipam.update_pool(pool, is_active=False)
    assert not ipam.region_has_pools(region, family=6)
    assert ipam.allocate_ipv6_if_pooled(region, uuid.uuid4()) is None


def test_a_released_64_cools_down_before_it_is_handed_out_again(settings):
    settings.IPV4_COOLDOWN_MINUTES = 30
    region = factories.make_region()
    pool = ipam.create_pool(region, "v6", "2001:db8::/62", "fe80::1")
    first = uuid.uuid4()
    assert ipam.allocate_ipv6_if_pooled(region, first).address == "2001:db8::1"
    ipam.release(first)
    assert ipam.pool_usage(pool) == {"total": 4, "used": 0, "cooling": 1, "reserved": 0}
    assert ipam.allocate_ipv6_if_pooled(region, uuid.uuid4()).address == "2001:db8:0:1::1"


def test_an_order_pays_one_query_for_its_ipv6_whether_or_not_the_region_has_a_pool():
    region = factories.make_region()
    with factories.questions() as sent:
        assert ipam.allocate_ipv6_if_pooled(region, uuid.uuid4()) is None
    assert len(sent.asked) == 1, sent
    ipam.create_pool(region, "v6", "2001:db8::/63", "fe80::1")
    with factories.questions() as sent:
        assert ipam.allocate_ipv6_if_pooled(region, uuid.uuid4()).address == "2001:db8::1"
    assert len(sent.asked) == 1, sent
