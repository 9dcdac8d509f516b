"""IPv4 pools: one address per server at order time, allocated atomically, released after a cool-down."""

from __future__ import annotations

import ipaddress
import uuid as uuid_module
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import IPAddress, IPPool, Region

MAX_POOL_ADDRESSES = 65536


class NoAddress(Exception):
    """No free IPv4 address in the region."""


def _parse_range(entry: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    try:
        if "-" in entry:
            first, last = (ipaddress.IPv4Address(part.strip()) for part in entry.split("-", 1))
        else:
            first = last = ipaddress.IPv4Address(entry)
    except ValueError:
        raise ValidationError(
            _("“%(entry)s” is not an address or a range like 192.0.2.10-192.0.2.20."),
            params={"entry": entry},
            code="invalid_excluded",
        ) from None
    if last < first:
        raise ValidationError(
            _("The range “%(entry)s” ends before it starts."),
            params={"entry": entry},
            code="invalid_excluded",
        )
    return first, last


def _parse_excluded(entries: list[str], network: ipaddress.IPv4Network) -> set[ipaddress.IPv4Address]:
    """Addresses and ranges (a.b.c.d or a.b.c.d-a.b.c.e) an admin keeps out of the pool.

    Every entry is checked (both ends inside the network, in order) before any range is expanded, and the
    ranges are merged first: what is expanded is never more than the network itself."""
    ranges: list[tuple[int, int]] = []
    outside = []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        first, last = _parse_range(entry)
        if first not in network or last not in network:
            outside.append(entry)
        else:
            ranges.append((int(first), int(last)))
    if outside:
        raise ValidationError(
            _("Excluded addresses outside the network %(cidr)s: %(list)s."),
            params={"cidr": network, "list": ", ".join(outside[:5])},
            code="invalid_excluded",
        )
    merged: list[list[int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return {ipaddress.IPv4Address(value) for first, last in merged for value in range(first, last + 1)}


def create_pool(
    region: Region,
    name: str,
    cidr: str,
    gateway: str,
    nameservers: list[str] | None = None,
    excluded: list[str] | None = None,
) -> IPPool:
    """Create a pool and one row per usable address (not the network, broadcast, gateway or excluded)."""
    try:
        network = ipaddress.IPv4Network(cidr.strip(), strict=True)
    except ValueError as exc:
        raise ValidationError(
            _("“%(cidr)s” is not an IPv4 network in CIDR form: %(error)s"),
            params={"cidr": cidr, "error": exc},
            code="invalid_cidr",
        ) from None
    if network.num_addresses > MAX_POOL_ADDRESSES:
        raise ValidationError(_("A pool holds at most a /16."), code="too_large")
    try:
        gateway_address = ipaddress.IPv4Address(gateway.strip())
    except ValueError:
        raise ValidationError(
            _("“%(gateway)s” is not an IPv4 address."), params={"gateway": gateway}, code="invalid_gateway"
        ) from None
    if gateway_address not in network:
        raise ValidationError(
            _("The gateway must be inside %(cidr)s."), params={"cidr": network}, code="invalid_gateway"
        )
    servers = []
    for entry in nameservers or []:
        try:
            servers.append(str(ipaddress.ip_address(entry.strip())))
        except ValueError:
            raise ValidationError(
                _("“%(entry)s” is not an IP address."), params={"entry": entry}, code="invalid_nameserver"
            ) from None
    excluded_set = _parse_excluded(excluded or [], network)
    hosts = network.hosts() if network.prefixlen < 31 else iter(network)
    usable = [address for address in hosts if address != gateway_address and address not in excluded_set]
    if not usable:
        raise ValidationError(_("The pool has no usable address left."), code="no_usable_address")
    overlapping = [
        other for other in IPPool.objects.all() if ipaddress.IPv4Network(other.cidr).overlaps(network)
    ]
    if overlapping:
        raise ValidationError(
            _("%(cidr)s overlaps the pool %(pool)s."),
            params={"cidr": network, "pool": overlapping[0]},
            code="overlap",
        )
    try:
        with transaction.atomic():
            pool = IPPool.objects.create(
                region=region,
                name=name.strip() or str(network),
                cidr=str(network),
                gateway=str(gateway_address),
                nameservers=servers,
                excluded=[entry.strip() for entry in excluded or [] if entry.strip()],
            )
            IPAddress.objects.bulk_create(
                [IPAddress(pool=pool, address=str(address), value=int(address)) for address in usable],
                batch_size=2000,
            )
    except IntegrityError:
        raise ValidationError(
            _("%(cidr)s overlaps an existing pool.") % {"cidr": network}, code="overlap"
        ) from None
    return pool


def _free(region: Region) -> QuerySet[IPAddress]:
    cooled = timezone.now() - timedelta(minutes=settings.IPV4_COOLDOWN_MINUTES)
    return IPAddress.objects.filter(
        pool__region=region, pool__is_active=True, consumer_uuid__isnull=True, reserved=False
    ).filter(Q(released_at__isnull=True) | Q(released_at__lt=cooled))


def region_has_pools(region: Region) -> bool:
    return IPPool.objects.filter(region=region, is_active=True).exists()


def _take(region: Region, consumer_uuid: uuid_module.UUID) -> IPAddress | None:
    """One statement: lock the lowest free address of the region that no one else has locked (SKIP LOCKED,
    so concurrent orders take different rows without waiting) and give it to the consumer."""
    if connection.vendor != "postgresql":
        return _take_serialised(region, consumer_uuid)
    cooled = timezone.now() - timedelta(minutes=settings.IPV4_COOLDOWN_MINUTES)
    address, pool = IPAddress._meta.db_table, IPPool._meta.db_table
    sql = f"""
        UPDATE {address} SET consumer_uuid = %s, allocated_at = %s, released_at = NULL, ptr = ''
        WHERE id = (
            SELECT a.id FROM {address} a JOIN {pool} p ON p.id = a.pool_id
            WHERE p.region_id = %s AND p.is_active AND a.consumer_uuid IS NULL AND NOT a.reserved
              AND (a.released_at IS NULL OR a.released_at < %s)
            ORDER BY a.value LIMIT 1
            FOR UPDATE OF a SKIP LOCKED
        ) AND consumer_uuid IS NULL
        RETURNING *
    """  # noqa: S608 (table names from the models; values are parameters)
    with transaction.atomic(savepoint=False):
        taken = list(IPAddress.objects.raw(sql, [consumer_uuid, timezone.now(), region.pk, cooled]))
    return taken[0] if taken else None


def _take_serialised(region: Region, consumer_uuid: uuid_module.UUID) -> IPAddress | None:
    """_take() for the embedded SQLite database of `make run`, whose writers take turns (one write
    transaction at a time): the lowest free address, taken with an update conditional on it being free."""
    with transaction.atomic(savepoint=False):
        candidate = _free(region).order_by("value").first()
        if candidate is None:
            return None
        if not IPAddress.objects.filter(pk=candidate.pk, consumer_uuid__isnull=True).update(
            consumer_uuid=consumer_uuid, allocated_at=timezone.now(), released_at=None, ptr=""
        ):
            return None
        candidate.refresh_from_db()
        return candidate


def allocate(region: Region, consumer_uuid: uuid_module.UUID) -> IPAddress:
    """Give the consumer the lowest free address of the region. Concurrent callers never get the same one:
    the row is locked (others skip it) and the update is conditional on it still being free."""
    for _attempt in range(5):
        taken = _take(region, consumer_uuid)
        if taken is not None:
            return taken
        if not _free(region).exists():
            break
    raise NoAddress(_("No free IPv4 address in this region; please try again later."))


def allocate_if_pooled(region: Region, consumer_uuid: uuid_module.UUID) -> IPAddress | None:
    """allocate() for a region that may have no pools (then None: its servers get no managed address)."""
    taken = _take(region, consumer_uuid)
    if taken is not None:
        return taken
    if not region_has_pools(region):
        return None
    return allocate(region, consumer_uuid)


def release(consumer_uuid: uuid_module.UUID) -> int:
    """Free the consumer's addresses; they return to the pool after the cool-down."""
    return IPAddress.objects.filter(consumer_uuid=consumer_uuid).update(
        consumer_uuid=None, released_at=timezone.now(), ptr=""
    )


def addresses_of(consumer_uuids) -> dict[str, list[IPAddress]]:
    """Addresses by consumer UUID (as text), for many servers in one query."""
    result: dict[str, list[IPAddress]] = {}
    for address in IPAddress.objects.filter(consumer_uuid__in=list(consumer_uuids)).select_related("pool"):
        result.setdefault(str(address.consumer_uuid), []).append(address)
    return result


def set_ptr(consumer_uuid: uuid_module.UUID, address: str, ptr: str) -> IPAddress:
    """Set the reverse DNS name of one of the consumer's addresses (validated by the caller)."""
    updated = IPAddress.objects.filter(consumer_uuid=consumer_uuid, address=address).update(ptr=ptr)
    if not updated:
        raise IPAddress.DoesNotExist
    return IPAddress.objects.get(address=address)


def pool_usage(pool: IPPool) -> dict[str, int]:
    addresses = pool.addresses.all()
    cooled = timezone.now() - timedelta(minutes=settings.IPV4_COOLDOWN_MINUTES)
    return {
        "total": addresses.count(),
        "used": addresses.filter(consumer_uuid__isnull=False).count(),
        "cooling": addresses.filter(consumer_uuid__isnull=True, released_at__gte=cooled).count(),
        "reserved": addresses.filter(reserved=True).count(),
    }


def pools_with_usage() -> QuerySet[IPPool]:
    """Pools annotated with total, used, cooling and reserved address counts (one query)."""
    cooled = timezone.now() - timedelta(minutes=settings.IPV4_COOLDOWN_MINUTES)
    return IPPool.objects.select_related("region").annotate(
        total=Count("addresses"),
        used=Count("addresses", filter=Q(addresses__consumer_uuid__isnull=False)),
        cooling=Count(
            "addresses", filter=Q(addresses__consumer_uuid__isnull=True, addresses__released_at__gte=cooled)
        ),
        reserved=Count("addresses", filter=Q(addresses__reserved=True)),
    )
