"""Pools' address counts from the rows of changes the address triggers write (IPPoolCount): read as sums,
folded into one row per pool by the beat (`hypervisor.tasks.fold_pool_counts`)."""

from __future__ import annotations

from datetime import datetime

from django.db import connection, transaction
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from .models import IPAddress, IPPool, IPPoolCount


def _sum_of(column: str) -> Coalesce:
    changes = (
        IPPoolCount.objects.filter(pool_id=OuterRef("pk"))
        .order_by()
        .values("pool_id")
        .annotate(amount=Sum(column))
        .values("amount")
    )
    return Coalesce(Subquery(changes, output_field=IntegerField()), Value(0))


def with_counts(pools: QuerySet[IPPool], cooled: datetime) -> QuerySet[IPPool]:
    """Annotate pools with total, used, cooling and reserved address counts: three sums over the pool's few
    rows of changes, and a count of the addresses released after `cooled` from the partial index
    ipaddress_cooling. Nothing here reads every address of a pool."""
    cooling = (
        IPAddress.objects.filter(
            pool=OuterRef("pk"), consumer_uuid__isnull=True, reserved=False, released_at__gte=cooled
        )
        .order_by()
        .values("pool")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return pools.annotate(
        total=_sum_of("total"),
        used=_sum_of("used"),
        reserved=_sum_of("reserved"),
        cooling=Coalesce(Subquery(cooling, output_field=IntegerField()), Value(0)),
    )


def fold() -> int:
    """Replace each pool's rows of changes with one row of their sums (and drop those of deleted pools), in
    one statement: rows written meanwhile by other transactions are not in its snapshot and stay. Returns
    the number of rows folded."""
    if connection.vendor != "postgresql":
        return _fold_serialised()
    table, pools = IPPoolCount._meta.db_table, IPPool._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f'WITH gone AS (DELETE FROM "{table}" RETURNING pool_id, total, used, reserved), '
            f'kept AS (INSERT INTO "{table}" (pool_id, total, used, reserved) '
            "SELECT pool_id, SUM(total), SUM(used), SUM(reserved) FROM gone "
            f'WHERE pool_id IN (SELECT id FROM "{pools}") GROUP BY pool_id RETURNING 1) '
            "SELECT (SELECT COUNT(*) FROM gone), (SELECT COUNT(*) FROM kept)"
        )
        folded, _kept = cursor.fetchone()
    return folded


def _fold_serialised() -> int:
    """The demo's SQLite (its writers take turns on the whole database): the same in one transaction."""
    with transaction.atomic():
        rows = IPPoolCount.objects.all()
        last = rows.order_by("-pk").values_list("pk", flat=True).first()
        if last is None:
            return 0
        folded = rows.filter(pk__lte=last)
        sums = list(
            folded.filter(pool_id__in=IPPool.objects.values("pk"))
            .values("pool_id")
            .annotate(t=Sum("total"), u=Sum("used"), r=Sum("reserved"))
        )
        count, _ = folded.delete()
        IPPoolCount.objects.bulk_create(
            IPPoolCount(pool_id=row["pool_id"], total=row["t"], used=row["u"], reserved=row["r"])
            for row in sums
        )
    return count
