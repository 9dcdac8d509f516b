"""Claims never take more than a host's capacity, (total - reserved) * ratio, even when they race."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import pytest
from django.db import connection as db_connection
from django.db.models import Sum
from django.db.models.functions import Coalesce

from hypervisor import claims, placement
from hypervisor.models import Allocation, Host, Region
from hypervisor.placement import NoCapacity, Resources
from tests import factories

NEED = Resources(vcpus=1, memory_mib=1024, disk_gib=10)
ROOMY = dict(
    vcpus_total=64,
    memory_mib_total=65536,
    disk_gib_total=1000,
    reserved_vcpus=0,
    reserved_memory_mib=0,
    reserved_disk_gib=0,
    cpu_allocation_ratio=Decimal("1"),
    ram_allocation_ratio=Decimal("1"),
    disk_allocation_ratio=Decimal("1"),
)


def ready_host(region: Region, **capacity) -> Host:
    """A host that is never contacted: its size is set directly, as probing would have recorded it."""
    host = factories.make_host(region=region, probe=False)
    Host.objects.filter(pk=host.pk).update(**{"state": Host.State.READY, **ROOMY, **capacity})
    host.refresh_from_db()
    return host


def used(host: Host) -> dict[str, int]:
    totals = Allocation.objects.filter(host=host).aggregate(
        vcpus=Sum("vcpus"), memory_mib=Sum("memory_mib"), disk_gib=Sum("disk_gib")
    )
    return {key: value or 0 for key, value in totals.items()}


# Each host fits exactly three NEED, limited by one resource, with reserved amounts and ratios applied.
EXACTLY_THREE = {
    "vcpus": dict(vcpus_total=4, reserved_vcpus=1, cpu_allocation_ratio=Decimal("1.0")),
    "vcpus with overcommit": dict(vcpus_total=2, reserved_vcpus=1, cpu_allocation_ratio=Decimal("3.5")),
    "memory": dict(memory_mib_total=2048, reserved_memory_mib=512, ram_allocation_ratio=Decimal("2.0")),
    "disk": dict(disk_gib_total=35, reserved_disk_gib=4, disk_allocation_ratio=Decimal("1.0")),
}


@pytest.mark.django_db
@pytest.mark.parametrize("limit", EXACTLY_THREE.values(), ids=EXACTLY_THREE.keys())
def test_a_host_accepts_claims_up_to_its_capacity_and_no_more(limit):
    region = factories.make_region()
    host = ready_host(region, **limit)
    consumers = [uuid.uuid4() for _ in range(3)]
    for consumer in consumers:
        assert claims.claim(consumer, region, NEED) == host
    with pytest.raises(NoCapacity):
        claims.claim(uuid.uuid4(), region, NEED)
    assert Allocation.objects.filter(host=host).count() == 3
    for resource, amount in used(host).items():
        assert amount <= host.capacity[resource]


@pytest.mark.django_db
def test_releasing_a_claim_frees_room_for_another():
    region = factories.make_region()
    host = ready_host(region, memory_mib_total=2048)  # two NEED
    first, second = uuid.uuid4(), uuid.uuid4()
    claims.claim(first, region, NEED)
    claims.claim(second, region, NEED)
    with pytest.raises(NoCapacity):
        claims.claim(uuid.uuid4(), region, NEED)

    claims.release(first)
    assert not Allocation.objects.filter(consumer_uuid=first).exists()
    third = uuid.uuid4()
    assert claims.claim(third, region, NEED) == host
    assert set(Allocation.objects.values_list("consumer_uuid", flat=True)) == {second, third}
    claims.release(uuid.uuid4())  # releasing what holds nothing is harmless
    assert Allocation.objects.count() == 2


@pytest.mark.django_db
def test_a_claim_records_what_the_consumer_holds():
    region = factories.make_region()
    host = ready_host(region)
    consumer = uuid.uuid4()
    claims.claim(consumer, region, Resources(vcpus=2, memory_mib=1536, disk_gib=40))
    allocation = Allocation.objects.get(consumer_uuid=consumer)
    assert (allocation.host, allocation.vcpus, allocation.memory_mib, allocation.disk_gib) == (
        host,
        2,
        1536,
        40,
    )
    annotated = Host.objects.get(pk=host.pk)
    assert placement.allocated(annotated) == {"vcpus": 2, "memory_mib": 1536, "disk_gib": 40}


@pytest.mark.django_db
def test_allocated_reports_the_same_keys_for_a_plain_host_row():
    region = factories.make_region()
    host = ready_host(region)
    claims.claim(uuid.uuid4(), region, Resources(vcpus=2, memory_mib=1536, disk_gib=40))
    assert placement.allocated(Host.objects.get(pk=host.pk)) == {
        "vcpus": 2,
        "memory_mib": 1536,
        "disk_gib": 40,
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "unschedulable",
    [
        dict(maintenance=True),
        dict(enabled=False),
        dict(state=Host.State.ERROR),
        dict(state=Host.State.NEW),
        dict(state=Host.State.DOWN),
        dict(state=Host.State.PROBING),
    ],
    ids=lambda fields: "-".join(f"{k}={v}" for k, v in fields.items()),
)
def test_hosts_in_maintenance_disabled_or_not_ready_are_skipped(unschedulable):
    region = factories.make_region()
    skipped = ready_host(region, **unschedulable)
    with pytest.raises(NoCapacity):
        claims.claim(uuid.uuid4(), region, NEED)
    assert not Allocation.objects.exists()

    usable = ready_host(region, memory_mib_total=2048)  # less room than the skipped one
    assert claims.claim(uuid.uuid4(), region, NEED) == usable
    assert not Allocation.objects.filter(host=skipped).exists()


@pytest.mark.django_db
def test_hosts_of_other_regions_are_not_used():
    jakarta = factories.make_region("jakarta", "Jakarta")
    singapore = factories.make_region("singapore", "Singapore")
    ready_host(singapore)
    with pytest.raises(NoCapacity):
        claims.claim(uuid.uuid4(), jakarta, NEED)
    assert placement.regions_that_fit(NEED) == {singapore.pk}


@pytest.mark.django_db
def test_the_spread_weigher_picks_the_host_with_the_most_free_memory():
    region = factories.make_region()
    small = ready_host(region, memory_mib_total=4096)
    big = ready_host(region, memory_mib_total=8192)
    # Fill the big host so that it has less free memory (8192 - 6144 = 2048) than the small one (4096).
    claims.claim(uuid.uuid4(), region, Resources(vcpus=1, memory_mib=6144, disk_gib=1))
    assert Allocation.objects.get().host == big

    consumer = uuid.uuid4()
    assert claims.claim(consumer, region, NEED) == small
    assert claims.claim(uuid.uuid4(), region, NEED) == small  # 3072 free there, still more than 2048


@pytest.mark.django_db
def test_a_full_host_is_passed_over_for_one_with_room():
    region = factories.make_region()
    roomy = ready_host(region, memory_mib_total=65536, vcpus_total=1, cpu_allocation_ratio=Decimal("1"))
    other = ready_host(region, memory_mib_total=2048)
    assert claims.claim(uuid.uuid4(), region, NEED) == roomy
    # roomy has the most free memory but no vCPU left: the claim goes to the other host.
    assert claims.claim(uuid.uuid4(), region, NEED) == other


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_exceed_capacity():
    region = factories.make_region()
    hosts = [ready_host(region, memory_mib_total=3072), ready_host(region, memory_mib_total=2048)]  # 3 + 2
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    results: dict[uuid.UUID, object] = {}
    lock = threading.Lock()

    def claim_one() -> None:
        consumer = uuid.uuid4()
        try:
            barrier.wait(timeout=10)
            try:
                outcome: object = claims.claim(consumer, region, NEED).pk
            except Exception as exc:  # NoCapacity expected; anything else fails the assertions below
                outcome = exc
            with lock:
                results[consumer] = outcome
        finally:
            db_connection.close()

    threads = [threading.Thread(target=claim_one) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    assert len(results) == threads_count
    unexpected = [r for r in results.values() if isinstance(r, Exception) and not isinstance(r, NoCapacity)]
    assert not unexpected
    placed = {
        consumer: host_id for consumer, host_id in results.items() if not isinstance(host_id, Exception)
    }
    assert len(placed) == 5
    assert sum(isinstance(r, NoCapacity) for r in results.values()) == 3
    assert set(Allocation.objects.values_list("consumer_uuid", flat=True)) == set(placed)
    for host in hosts:
        assert used(host)["memory_mib"] <= host.capacity["memory_mib"]
        assert Allocation.objects.filter(host=host).count() == host.capacity["memory_mib"] // NEED.memory_mib


@pytest.mark.django_db
def test_the_host_counters_follow_every_change_of_its_allocations():
    """The trigger keeps Host.used_* equal to the sums of the host's allocations, whoever changes them."""
    region = factories.make_region()
    host, other = ready_host(region), ready_host(region)

    def sums(h):
        totals = Allocation.objects.filter(host=h).aggregate(
            vcpus=Coalesce(Sum("vcpus"), 0),
            memory_mib=Coalesce(Sum("memory_mib"), 0),
            disk_gib=Coalesce(Sum("disk_gib"), 0),
        )
        return totals

    consumer = uuid.uuid4()
    claims.claim(consumer, region, Resources(vcpus=2, memory_mib=1536, disk_gib=40))
    claims.resize_claim(consumer, Resources(vcpus=4, memory_mib=2048, disk_gib=50))
    claims.give_back(consumer, Resources(vcpus=3, memory_mib=1024, disk_gib=45))
    Allocation.objects.create(consumer_uuid=uuid.uuid4(), host=other, vcpus=1, memory_mib=256, disk_gib=1)
    Allocation.objects.filter(consumer_uuid=consumer).update(host=other)  # moved (a migration)
    for h in (host, other):
        assert placement.allocated(Host.objects.get(pk=h.pk)) == sums(h)
    claims.release(consumer)
    claims.release(consumer)  # twice: harmless
    for h in (host, other):
        assert placement.allocated(Host.objects.get(pk=h.pk)) == sums(h)
    # Saving a host read before the change never writes stale counters back.
    stale = Host.objects.get(pk=other.pk)
    Allocation.objects.create(consumer_uuid=uuid.uuid4(), host=other, vcpus=1, memory_mib=256, disk_gib=1)
    stale.name = "renamed"
    stale.save()
    assert (
        placement.allocated(Host.objects.get(pk=other.pk))
        == sums(other)
        == {
            "vcpus": 2,
            "memory_mib": 512,
            "disk_gib": 2,
        }
    )


@pytest.mark.django_db
def test_a_claim_is_one_statement_whatever_the_region_holds():
    region = factories.make_region()
    for _ in range(3):
        ready_host(region)
    with factories.questions() as sent:
        claims.claim(uuid.uuid4(), region, Resources(vcpus=1, memory_mib=256, disk_gib=1))
    assert len(sent.asked) == 1, sent


@pytest.mark.django_db
def test_a_claim_answers_the_host_it_placed_on_with_its_own_values():
    region = factories.make_region()
    host = ready_host(region)
    claimed = claims.claim(uuid.uuid4(), region, Resources(vcpus=1, memory_mib=256, disk_gib=1))
    stored = Host.objects.get(pk=host.pk)
    assert (claimed.pk, claimed.name, claimed.uri, claimed.region_id, claimed.storage_pool) == (
        stored.pk,
        stored.name,
        stored.uri,
        stored.region_id,
        stored.storage_pool,
    )
    assert claimed.state == stored.state  # a field it did not read loads on first use
