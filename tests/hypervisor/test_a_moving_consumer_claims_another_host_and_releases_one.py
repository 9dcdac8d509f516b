"""A server that moves claims capacity on a second host (the one asked for, or the best other one of its
region, never its own) and holds both claims until one is released on its host alone; the hosts' usage
counters follow each claim."""

from __future__ import annotations

import uuid

import pytest

from hypervisor import claims
from hypervisor.models import Allocation, Host, Region
from hypervisor.placement import NoCapacity, Resources
from tests import factories

pytestmark = pytest.mark.django_db

NEED = Resources(vcpus=1, memory_mib=1024, disk_gib=10)


def ready_host(region: Region, memory_mib: int = 8192, **fields) -> Host:
    """A host that is never contacted: its size set as probing would have recorded it."""
    host = factories.make_host(region=region, probe=False)
    return factories.set_host_size(host, vcpus=8, memory_mib=memory_mib, disk_gib=100, **fields)


def usage(host: Host) -> tuple[int, int, int]:
    host.refresh_from_db()
    return host.used_vcpus, host.used_memory_mib, host.used_disk_gib


@pytest.fixture
def region():
    return factories.make_region()


def test_a_moving_consumer_holds_a_claim_on_both_hosts_until_one_is_released(region):
    source, target = ready_host(region, memory_mib=16384), ready_host(region)
    consumer = uuid.uuid4()
    assert claims.claim(consumer, region, NEED) == source  # the most free memory first

    # Without a host asked for, the best host but its own: here the only other one, with less room.
    assert claims.claim_target(consumer, region, NEED, exclude_host_id=source.pk) == target
    assert usage(source) == usage(target) == (1, 1024, 10)
    assert set(Allocation.objects.filter(consumer_uuid=consumer).values_list("host_id", flat=True)) == {
        source.pk,
        target.pk,
    }

    assert claims.release_on(consumer, source.pk) == 1
    assert claims.release_on(consumer, source.pk) == 0  # idempotent
    assert usage(source) == (0, 0, 0)
    assert usage(target) == (1, 1024, 10)
    assert list(Allocation.objects.filter(consumer_uuid=consumer).values_list("host_id", flat=True)) == [
        target.pk
    ]


def test_a_claim_on_a_given_host_needs_room_there_and_is_never_on_the_consumers_own(region):
    source, small, roomy = ready_host(region), ready_host(region, memory_mib=512), ready_host(region)
    consumer = uuid.uuid4()
    claims.claim(consumer, region, NEED)
    own = Allocation.objects.get(consumer_uuid=consumer).host

    with pytest.raises(NoCapacity):
        claims.claim_target(consumer, region, NEED, host=small, exclude_host_id=own.pk)
    with pytest.raises(NoCapacity):
        claims.claim_target(consumer, region, NEED, host=own, exclude_host_id=own.pk)
    other_region = ready_host(factories.make_region("bandung", "Bandung"))
    with pytest.raises(NoCapacity):
        claims.claim_target(consumer, region, NEED, host=other_region, exclude_host_id=own.pk)
    assert Allocation.objects.filter(consumer_uuid=consumer).count() == 1

    other = roomy if own != roomy else source
    assert claims.claim_target(consumer, region, NEED, host=other, exclude_host_id=own.pk) == other
    assert usage(other) == (1, 1024, 10)
    assert usage(small) == (0, 0, 0)


def test_no_other_host_with_room_is_no_capacity_and_claims_nothing(region):
    source = ready_host(region)
    ready_host(region, memory_mib=512)  # too small
    ready_host(region, maintenance=True)  # not schedulable
    ready_host(region, enabled=False)  # not schedulable
    ready_host(region, state=Host.State.DOWN)  # not schedulable
    consumer = uuid.uuid4()
    assert claims.claim(consumer, region, NEED) == source
    with pytest.raises(NoCapacity):
        claims.claim_target(consumer, region, NEED, exclude_host_id=source.pk)
    assert Allocation.objects.filter(consumer_uuid=consumer).count() == 1
    assert sum(usage(host)[1] for host in Host.objects.all()) == 1024


def test_a_second_claim_on_a_host_the_consumer_holds_already_is_refused(region):
    first, second = ready_host(region, memory_mib=16384), ready_host(region)
    consumer = uuid.uuid4()
    claims.claim(consumer, region, NEED)
    claims.claim_target(consumer, region, NEED, host=second, exclude_host_id=first.pk)
    # A consumer holds at most one allocation per host: asked again, nothing more is claimed there.
    with pytest.raises(NoCapacity):
        claims.claim_target(consumer, region, NEED, host=second, exclude_host_id=first.pk)
    assert usage(second) == (1, 1024, 10)
    assert Allocation.objects.filter(consumer_uuid=consumer, host=second).count() == 1
