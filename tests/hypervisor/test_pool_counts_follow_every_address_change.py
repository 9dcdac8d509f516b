"""The pools' address counts (kept by the address triggers as rows of changes) equal a count of the
addresses after every kind of change, before and after the beat folds them, and reading them asks one query
whatever the pool's size."""

from __future__ import annotations

import uuid

import pytest
from django.db.models import Count, Q

from hypervisor import ipam, pool_counts
from hypervisor.models import IPAddress, IPPool, IPPoolCount
from tests import factories

pytestmark = pytest.mark.django_db


def counted(pool: IPPool) -> dict[str, int]:
    """The slow way: every address of the pool."""
    cooled = ipam._cooled()
    counts = IPAddress.objects.filter(pool=pool).aggregate(
        n_total=Count("pk"),
        n_used=Count("pk", filter=Q(consumer_uuid__isnull=False)),
        n_reserved=Count("pk", filter=Q(consumer_uuid__isnull=True, reserved=True)),
        n_cooling=Count("pk", filter=Q(consumer_uuid__isnull=True, reserved=False, released_at__gte=cooled)),
    )
    return {key.removeprefix("n_"): value for key, value in counts.items()}


def shown(pool: IPPool) -> dict[str, int]:
    row = ipam.pools_with_usage().get(pk=pool.pk)
    return {"total": row.total, "used": row.used, "reserved": row.reserved, "cooling": row.cooling}


def test_the_counts_follow_orders_releases_reservations_and_pool_changes():
    region = factories.make_region()
    pool = ipam.create_pool(region, "v4", "10.90.0.0/28", "10.90.0.1", ["192.0.2.53"])
    assert shown(pool) == counted(pool) and shown(pool)["total"] > 10
    consumers = [uuid.uuid4() for _ in range(3)]
    for consumer in consumers:
        ipam.allocate(region, consumer)
    assert shown(pool) == counted(pool) and shown(pool)["used"] == 3
    ipam.release(consumers[0])
    assert shown(pool) == counted(pool) and shown(pool)["cooling"] == 1
    free = IPAddress.objects.filter(pool=pool, consumer_uuid__isnull=True, released_at__isnull=True).first()
    IPAddress.objects.filter(pk=free.pk).update(reserved=True)
    assert shown(pool) == counted(pool) and shown(pool)["reserved"] == 1
    assert pool_counts.fold() > 1
    assert IPPoolCount.objects.filter(pool_id=pool.pk).count() == 1
    assert shown(pool) == counted(pool)
    IPAddress.objects.filter(pk=free.pk).delete()
    assert shown(pool) == counted(pool)


def test_a_deleted_pools_counts_go_with_the_next_fold():
    region = factories.make_region()
    pool = ipam.create_pool(region, "v4", "10.91.0.0/29", "10.91.0.1", ["192.0.2.53"])
    pool_id = pool.pk
    IPAddress.objects.filter(pool=pool).delete()
    IPPool.objects.filter(pk=pool_id).delete()
    pool_counts.fold()
    assert not IPPoolCount.objects.filter(pool_id=pool_id).exists()


def test_reading_the_counts_is_one_query_whatever_the_pools_hold(django_assert_num_queries):
    region = factories.make_region()
    ipam.create_pool(region, "small", "10.92.0.0/29", "10.92.0.1", ["192.0.2.53"])
    ipam.create_pool(region, "large", "10.93.0.0/22", "10.93.0.1", ["192.0.2.53"])
    with django_assert_num_queries(1):
        assert len(list(ipam.pools_with_usage())) == 2
