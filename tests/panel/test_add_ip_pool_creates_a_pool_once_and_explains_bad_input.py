"""The operator command add_ip_pool: it creates IPv4 and IPv6 pools and prints their size, says "exists"
(and changes nothing) when run again for the same network of the region, and stops with a clear error for
bad input, creating nothing."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from hypervisor.models import IPAddress, IPPool
from panel.models import ActivityEvent
from tests import factories

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("add_ip_pool", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def region():
    return factories.make_region()


def test_an_ipv4_pool_is_created_with_its_nameservers_and_exclusions(region):
    out, _err = run(
        "jakarta",
        "192.0.2.0/28",
        "192.0.2.1",
        "--name",
        "jkt-1",
        "--nameserver",
        "192.0.2.53",
        "--nameserver",
        "9.9.9.9",
        "--exclude",
        "192.0.2.2-192.0.2.4",
        "--exclude",
        "192.0.2.14",
    )
    pool = IPPool.objects.get()
    assert (pool.name, pool.cidr, pool.family, pool.nameservers, pool.excluded) == (
        "jkt-1",
        "192.0.2.0/28",
        4,
        ["192.0.2.53", "9.9.9.9"],
        ["192.0.2.2-192.0.2.4", "192.0.2.14"],
    )
    assert "Pool jkt-1 (192.0.2.0/28) created in jakarta." in out
    assert "Size: 9 addresses (0 in use, 9 free)" in out
    event = ActivityEvent.objects.get(type=ActivityEvent.Type.IP_POOL_CHANGED)
    assert event.target == f"ip_pool:{pool.pk}" and event.staff_action


def test_ipv6_pools_are_routed_64s_or_single_addresses(region):
    out, _err = run("jakarta", "2001:db8:100::/56", "fe80::1")
    assert "Size: 256 routed /64s (0 in use, 256 free)" in out
    assert "IPv6, gateway fe80::1, prefix64 assignment" in out
    out, _err = run("jakarta", "2001:db8:200::/120", "2001:db8:200::1", "--assignment", "address")
    assert "Size: 254 addresses" in out
    assert set(IPPool.objects.values_list("assignment", flat=True)) == {"prefix64", "address"}


def test_running_it_again_says_exists_and_changes_nothing(region):
    run("jakarta", "192.0.2.0/28", "192.0.2.1", "--name", "first")
    out, err = run("jakarta", "192.0.2.0/28", "192.0.2.1", "--name", "second")
    assert "Pool first (192.0.2.0/28) exists in jakarta; nothing changed." in out
    assert err == ""
    out, err = run("jakarta", "192.0.2.0/28", "192.0.2.14")
    assert "exists" in out and "Note: its gateway is 192.0.2.1, not 192.0.2.14." in err
    assert IPPool.objects.count() == 1 and IPPool.objects.get().name == "first"
    assert ActivityEvent.objects.filter(type=ActivityEvent.Type.IP_POOL_CHANGED).count() == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["atlantis", "192.0.2.0/28", "192.0.2.1"], "No region 'atlantis' (regions: jakarta)."),
        (["jakarta", "192.0.2.0/33", "192.0.2.1"], "is not an IPv4 network in CIDR form"),
        (["jakarta", "192.0.2.0/28", "198.51.100.1"], "The gateway must be inside 192.0.2.0/28."),
        (["jakarta", "2001:db8::/48", "2001:db9::1"], "An IPv6 gateway must be link-local"),
        (["jakarta", "2001:db8::/40", "fe80::1"], "takes a prefix from /44 to /63"),
        (["jakarta", "2001:db8::/48", "fe80::1", "--assignment", "address"], "/64 or longer"),
        (["jakarta", "192.0.2.0/28", "192.0.2.1", "--nameserver", "dns"], "“dns” is not an IP address."),
        (["jakarta", "192.0.2.0/28", "192.0.2.1", "--exclude", "10.0.0.1"], "outside the network"),
    ],
)
def test_bad_input_is_a_clear_error_and_creates_nothing(region, args, message):
    with pytest.raises(CommandError) as raised:
        run(*args)
    assert message in str(raised.value)
    assert not IPPool.objects.exists() and not IPAddress.objects.exists()


def test_an_overlapping_pool_in_another_region_is_refused(region):
    factories.make_region("bali", "Bali")
    run("jakarta", "192.0.2.0/28", "192.0.2.1")
    with pytest.raises(CommandError, match="overlaps the pool"):
        run("bali", "192.0.2.0/28", "192.0.2.1")
    assert IPPool.objects.count() == 1
