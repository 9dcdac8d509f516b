"""An excluded range is checked (both ends inside the pool's network, in order) before anything is
expanded: a range reaching far outside the network is a clear validation error, found without building
its addresses, and overlapping ranges are merged so that no more than the network itself is expanded."""

from __future__ import annotations

import tracemalloc

import pytest
from django.core.exceptions import ValidationError

from hypervisor import ipam
from hypervisor.models import IPAddress, IPPool
from tests import factories

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024


def peak_bytes_creating(
    excluded: list[str], cidr: str = "192.0.2.0/24"
) -> tuple[int, ValidationError | None]:
    """The peak Python memory allocated while create_pool runs, and the error it raised (if any)."""
    region = factories.make_region()
    error = None
    tracemalloc.start()
    try:
        ipam.create_pool(region, "p", cidr, cidr.split("/")[0][:-1] + "1", excluded=excluded)
    except ValidationError as exc:
        error = exc
    finally:
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, error


def test_a_range_far_outside_the_network_is_refused_without_expanding_it():
    # 2^20 addresses: expanding them first (as before) takes well over 50 MiB.
    peak, error = peak_bytes_creating(["10.0.0.0-10.15.255.255"])
    assert error is not None
    assert error.code == "invalid_excluded"
    assert "Excluded addresses outside the network 192.0.2.0/24: 10.0.0.0-10.15.255.255." in error.messages
    assert peak < 2 * MIB
    assert not IPPool.objects.exists() and not IPAddress.objects.exists()


def test_a_range_of_the_whole_address_space_is_refused():
    peak, error = peak_bytes_creating(["0.0.0.0-255.255.255.255"])
    assert error is not None and error.code == "invalid_excluded"
    assert peak < 2 * MIB


def test_a_range_that_starts_inside_but_ends_outside_is_refused():
    _peak, error = peak_bytes_creating(["192.0.2.250-192.0.9.255"])
    assert error is not None
    assert "outside the network 192.0.2.0/24: 192.0.2.250-192.0.9.255." in " ".join(error.messages)


def test_a_range_that_ends_before_it_starts_is_refused():
    _peak, error = peak_bytes_creating(["192.0.2.20-192.0.2.10"])
    assert error is not None
    assert error.messages == ["The range “192.0.2.20-192.0.2.10” ends before it starts."]


def test_many_overlapping_ranges_expand_no_more_than_the_network():
    """A /16 excluded a thousand times over: merged first, so about one /16 is expanded, not a thousand."""
    excluded = ["10.9.0.0-10.9.255.255"] * 1000
    peak, error = peak_bytes_creating(excluded, cidr="10.9.0.0/16")
    assert error is not None and error.code == "no_usable_address"
    assert peak < 64 * MIB


def test_addresses_inside_the_network_are_still_kept_out():
    pool = factories.make_pool(
        factories.make_region(),
        cidr="192.0.2.0/28",
        excluded=["192.0.2.2-192.0.2.5", "192.0.2.4-192.0.2.9", "192.0.2.14"],
    )
    addresses = set(pool.addresses.values_list("address", flat=True))
    assert addresses == {"192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13"}


def test_the_pools_page_shows_the_error_on_the_field(client, admin_user):
    region = factories.make_region()
    client.force_login(admin_user)
    form = {"region": region.pk, "name": "p", "cidr": "192.0.2.0/24", "gateway": "192.0.2.1",
            "excluded": "10.0.0.0 - 10.255.255.255"}  # fmt: skip
    response = client.post("/staff/ip-pools/", form)
    assert response.status_code == 200
    assert "outside the network 192.0.2.0/24: 10.0.0.0-10.255.255.255" in response.content.decode()
    assert not IPPool.objects.exists()
