"""IP pools: the addresses of a region, handed out atomically and released after a cool-down.

An IPv4 pool holds one row per usable address of its network. An IPv6 pool either holds one row per /64 of
its prefix (`assignment` prefix64: each server gets its own routed /64 and uses the /64's ::1) or one row
per address of an on-link /64 or longer prefix (`assignment` address). A server holds one primary address
per family and may hold additional IPv4 addresses (`role` additional) that can move between servers.

Allocation never waits for another's: the lowest free row no one else has locked is taken in one statement
(FOR UPDATE SKIP LOCKED on Postgres), conditional on it still being free."""

from __future__ import annotations

import bisect
import ipaddress
import uuid as uuid_module
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _

import prepared_statements

from . import pool_counts, statements
from .models import IPAddress, IPPool, Region

# Rows a pool is made with at most: an IPv4 /16, the first 65,536 usable addresses of an IPv6 prefix, or
# the first 65,536 /64s of a routed prefix (a /48 has exactly that many).
MAX_POOL_ADDRESSES = 65536
# A pool of routed /64s takes a prefix from /44 to /63.
SHORTEST_ROUTED_PREFIX = 44
# The first key of the advisory lock that serialises creating pools (the overlap check and the insert). The
# other classes: 7301 a host's turn (panel.servers.operations), 7303 the firewall, 7304 reverse DNS pushes.
POOL_CHANGE_LOCK = 7302

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddressValue = ipaddress.IPv4Address | ipaddress.IPv6Address
Interval = tuple[int, int]


class NoAddress(Exception):
    """No free address of the wanted family in the region."""


# The shape of a pool: which units (addresses, or /64s) it hands out.


@dataclass(frozen=True)
class _Layout:
    network: IPNetwork
    assignment: str
    gateway: IPAddressValue

    @property
    def routed(self) -> bool:
        return self.assignment == IPPool.Assignment.PREFIX64

    @property
    def shift(self) -> int:
        """Units are addresses (shift 0) or /64s (shift 64: a unit is the address's top 64 bits)."""
        return 64 if self.routed else 0

    @property
    def prefix_length(self) -> int:
        if self.network.version == 4:
            return 32
        return 64 if self.routed else 128

    @property
    def first_unit(self) -> int:
        return int(self.network.network_address) >> self.shift

    @property
    def last_unit(self) -> int:
        return int(self.network.broadcast_address) >> self.shift

    def unit_count(self) -> int:
        return self.last_unit - self.first_unit + 1

    def row_value(self, unit: int) -> int:
        """The address a unit gives its server, as an integer: the address, or the /64's ::1."""
        return (unit << 64) + 1 if self.routed else unit

    def unit_of(self, value: int) -> int:
        return value >> self.shift

    def special_units(self) -> set[int]:
        """Units never handed out: the IPv4 network and broadcast addresses, the IPv6 subnet-router anycast
        address (the prefix's ::0), and the gateway (for a routed pool: the /64 it is in)."""
        special: set[int] = set()
        network = self.network
        if network.version == 4 and network.prefixlen < 31:
            special |= {int(network.network_address), int(network.broadcast_address)}
        if network.version == 6 and not self.routed and network.prefixlen < 127:
            special.add(int(network.network_address))
        if self.gateway.version == network.version and self.gateway in network:
            special.add(int(self.gateway) >> self.shift)
        return special

    def to_units(self, intervals: list[Interval]) -> list[Interval]:
        return _merge([(first >> self.shift, last >> self.shift) for first, last in intervals])

    def walk(self, skip: list[Interval], first: int, last: int, limit: int) -> list[int]:
        """The units from first to last that are neither skipped (merged, sorted intervals) nor special,
        at most `limit` of them. A skipped interval is stepped over, never expanded."""
        special = self.special_units()
        units: list[int] = []
        index = 0
        unit = first
        while unit <= last and len(units) < limit:
            while index < len(skip) and skip[index][1] < unit:
                index += 1
            if index < len(skip) and skip[index][0] <= unit:
                unit = skip[index][1] + 1
                continue
            if unit not in special:
                units.append(unit)
            unit += 1
        return units

    def rows(self, pool: IPPool, units: Iterable[int]) -> list[IPAddress]:
        address_class = ipaddress.IPv4Address if self.network.version == 4 else ipaddress.IPv6Address
        rows = []
        for unit in units:
            value = self.row_value(unit)
            rows.append(
                IPAddress(
                    pool=pool,
                    address=str(address_class(value)),
                    value=value,
                    prefix_length=self.prefix_length,
                )
            )
        return rows


def _layout(pool: IPPool) -> _Layout:
    return _Layout(ipaddress.ip_network(pool.cidr), pool.assignment, ipaddress.ip_address(pool.gateway))


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[list[int]] = []
    for first, last in sorted(intervals):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return [(first, last) for first, last in merged]


def _subtract(intervals: list[Interval], minus: list[Interval]) -> list[Interval]:
    """The parts of the merged intervals that none of the merged `minus` intervals covers."""
    result: list[Interval] = []
    for first, last in intervals:
        start = first
        for cut_first, cut_last in minus:
            if cut_last < start or cut_first > last:
                continue
            if cut_first > start:
                result.append((start, cut_first - 1))
            start = max(start, cut_last + 1)
            if start > last:
                break
        if start <= last:
            result.append((start, last))
    return result


def _count(intervals: list[Interval]) -> int:
    return sum(last - first + 1 for first, last in intervals)


# Validating what an admin gives.


def _parse_network(cidr: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(cidr.strip(), strict=True)
    except ValueError as exc:
        raise ValidationError(
            _(
                "“%(cidr)s” is not an IPv4 network in CIDR form (like 192.0.2.0/24), nor an IPv6 prefix "
                "(like 2001:db8::/48): %(error)s"
            ),
            params={"cidr": cidr, "error": exc},
            code="invalid_cidr",
        ) from None


def _assignment(network: IPNetwork, assignment: str | None) -> str:
    """The pool's assignment: checked against its family and prefix length, or chosen from them."""
    if assignment not in (None, "", *IPPool.Assignment.values):
        raise ValidationError(
            _("“%(assignment)s” is not an assignment: use address or prefix64."),
            params={"assignment": assignment},
            code="invalid_assignment",
        )
    if network.version == 4:
        if assignment == IPPool.Assignment.PREFIX64:
            raise ValidationError(
                _("An IPv4 pool hands out single addresses; a routed /64 per server is for IPv6 prefixes."),
                code="invalid_assignment",
            )
        if network.num_addresses > MAX_POOL_ADDRESSES:
            raise ValidationError(_("A pool holds at most a /16."), code="too_large")
        return IPPool.Assignment.ADDRESS
    if not assignment:
        assignment = IPPool.Assignment.PREFIX64 if network.prefixlen < 64 else IPPool.Assignment.ADDRESS
    if assignment == IPPool.Assignment.PREFIX64:
        if network.prefixlen >= 64:
            raise ValidationError(
                _(
                    "A routed /64 per server needs a prefix from /%(shortest)s to /63; %(cidr)s is a "
                    "/%(length)s: hand out its addresses one by one instead."
                ),
                params={"shortest": SHORTEST_ROUTED_PREFIX, "cidr": network, "length": network.prefixlen},
                code="invalid_assignment",
            )
        if network.prefixlen < SHORTEST_ROUTED_PREFIX:
            raise ValidationError(
                _(
                    "A pool of routed /64s takes a prefix from /%(shortest)s to /63 (a /48 holds 65,536 "
                    "/64s); %(cidr)s is too large."
                ),
                params={"shortest": SHORTEST_ROUTED_PREFIX, "cidr": network},
                code="too_large",
            )
    elif network.prefixlen < 64:
        raise ValidationError(
            _(
                "One address per server needs an on-link prefix of /64 or longer; %(cidr)s is a /%(length)s: "
                "give each server a routed /64 instead."
            ),
            params={"cidr": network, "length": network.prefixlen},
            code="invalid_assignment",
        )
    return assignment


def _parse_gateway(gateway: str, network: IPNetwork, assignment: str) -> IPAddressValue:
    text = gateway.strip()
    try:
        if "%" in text:  # a zone index ("fe80::1%eth0") means nothing inside the guest
            raise ValueError(text)
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValidationError(
            _("“%(gateway)s” is not an IPv%(family)s address."),
            params={"gateway": gateway, "family": network.version},
            code="invalid_gateway",
        ) from None
    if address.version != network.version:
        raise ValidationError(
            _(
                "“%(gateway)s” is an IPv%(gateway_family)s address, and %(cidr)s is not an "
                "IPv%(gateway_family)s network: give an IPv%(family)s gateway."
            ),
            params={
                "gateway": gateway,
                "gateway_family": address.version,
                "cidr": network,
                "family": network.version,
            },
            code="invalid_gateway",
        )
    if network.version == 4:
        if address not in network:
            raise ValidationError(
                _("The gateway must be inside %(cidr)s."), params={"cidr": network}, code="invalid_gateway"
            )
        return address
    if address.is_multicast or address.is_unspecified or address.is_loopback:
        raise ValidationError(
            _("“%(gateway)s” cannot be a gateway."), params={"gateway": gateway}, code="invalid_gateway"
        )
    if not address.is_link_local and address not in network:
        raise ValidationError(
            _(
                "An IPv6 gateway must be link-local (such as fe80::1, the usual for routed /64s) or inside "
                "%(cidr)s."
            ),
            params={"cidr": network},
            code="invalid_gateway",
        )
    return address


def _parse_nameservers(nameservers: Iterable[str]) -> list[str]:
    servers = []
    for entry in nameservers:
        try:
            servers.append(str(ipaddress.ip_address(entry.strip())))
        except ValueError:
            raise ValidationError(
                _("“%(entry)s” is not an IP address."), params={"entry": entry}, code="invalid_nameserver"
            ) from None
    return servers


def _entry_error(entry: str, layout: _Layout) -> ValidationError:
    if layout.network.version == 4:
        message = _("“%(entry)s” is not an address or a range like 192.0.2.10-192.0.2.20.")
    elif layout.routed:
        message = _(
            "“%(entry)s” is not a /64 like 2001:db8:0:5::/64, an IPv6 address inside one or a range of them."
        )
    else:
        message = _(
            "“%(entry)s” is not an IPv6 address, a range like 2001:db8::10-2001:db8::20 or a network like "
            "2001:db8::/120."
        )
    return ValidationError(message, params={"entry": entry}, code="invalid_excluded")


def _parse_entry(entry: str, layout: _Layout) -> Interval:
    """An excluded address (a.b.c.d), range (first-last) or network (CIDR) of the pool's family."""
    if layout.network.version == 4:
        address_class, network_class = ipaddress.IPv4Address, ipaddress.IPv4Network
    else:
        address_class, network_class = ipaddress.IPv6Address, ipaddress.IPv6Network
    try:
        if "%" in entry:
            raise ValueError(entry)
        if "/" in entry:
            network = network_class(entry, strict=True)
            first, last = network.network_address, network.broadcast_address
        elif "-" in entry:
            first, last = (address_class(part.strip()) for part in entry.split("-", 1))
        else:
            first = last = address_class(entry)
    except ValueError:
        raise _entry_error(entry, layout) from None
    if last < first:
        raise ValidationError(
            _("The range “%(entry)s” ends before it starts."),
            params={"entry": entry},
            code="invalid_excluded",
        )
    return int(first), int(last)


def _parse_excluded(entries: Iterable[str], layout: _Layout) -> tuple[list[str], list[Interval]]:
    """The entries as given (stripped, empty ones dropped) and the merged address intervals they cover.

    Every entry is checked (both ends inside the network, in order) before anything is used, and nothing
    is expanded: intervals are stepped over when the rows are made."""
    kept: list[str] = []
    intervals: list[Interval] = []
    outside = []
    network = layout.network
    low, high = int(network.network_address), int(network.broadcast_address)
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        first, last = _parse_entry(entry, layout)
        if first < low or last > high:
            outside.append(entry)
        else:
            kept.append(entry)
            intervals.append((first, last))
    if outside:
        raise ValidationError(
            _("Excluded addresses outside the network %(cidr)s: %(list)s."),
            params={"cidr": network, "list": ", ".join(outside[:5])},
            code="invalid_excluded",
        )
    return kept, _merge(intervals)


def _name(name: str, network: IPNetwork) -> str:
    name = (name or "").strip() or str(network)
    if len(name) > 100:
        raise ValidationError(_("A pool's name has at most 100 characters."), code="invalid_name")
    return name


def _lock_pool_changes() -> None:
    """Serialise pool creation to the end of the transaction, so that two overlapping networks created at
    the same moment cannot both pass the overlap check."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, 0)", [POOL_CHANGE_LOCK])


def _overlapping(network: IPNetwork) -> IPPool | None:
    """The first pool of the same family whose network overlaps this one."""
    for other in IPPool.objects.filter(family=network.version).order_by("pk"):
        if ipaddress.ip_network(other.cidr).overlaps(network):
            return other
    return None


def create_pool(
    region: Region,
    name: str,
    cidr: str,
    gateway: str,
    nameservers: list[str] | None = None,
    excluded: list[str] | None = None,
    assignment: str | None = None,
) -> IPPool:
    """Create a pool and its rows.

    IPv4: a network of at most a /16 and a gateway inside it; one row per usable address (not the network,
    broadcast, gateway or excluded addresses). IPv6: `assignment` prefix64 (default for prefixes shorter
    than /64) takes a /44 to /63 and makes one row per /64 (the server's address is the /64's ::1), for at
    most its first 65,536 /64s; `assignment` address takes a /64 or longer and makes one row per address,
    for at most its first 65,536 usable ones (not the subnet-router anycast ::0, the gateway or excluded
    ones). An IPv6 gateway is link-local (fe80::1, the usual for routed /64s) or inside the prefix; a /64
    holding the gateway is never handed out. Excluded entries are addresses, first-last ranges or networks
    of the pool's family (for prefix64: each /64 they touch is kept out). Pools of one family never
    overlap. Raises ValidationError with a code (invalid_cidr, too_large, invalid_assignment,
    invalid_gateway, invalid_nameserver, invalid_excluded, invalid_name, no_usable_address, overlap)."""
    network = _parse_network(cidr)
    assignment = _assignment(network, assignment)
    gateway_address = _parse_gateway(gateway, network, assignment)
    layout = _Layout(network, assignment, gateway_address)
    servers = _parse_nameservers(nameservers or [])
    kept, intervals = _parse_excluded(excluded or [], layout)
    pool_name = _name(name, network)
    units = layout.walk(layout.to_units(intervals), layout.first_unit, layout.last_unit, MAX_POOL_ADDRESSES)
    if not units:
        raise ValidationError(_("The pool has no usable address left."), code="no_usable_address")
    try:
        with transaction.atomic():
            _lock_pool_changes()
            other = _overlapping(network)
            if other is not None:
                raise ValidationError(
                    _("%(cidr)s overlaps the pool %(pool)s."),
                    params={"cidr": network, "pool": other},
                    code="overlap",
                )
            pool = IPPool.objects.create(
                region=region,
                name=pool_name,
                family=network.version,
                assignment=assignment,
                cidr=str(network),
                gateway=str(gateway_address),
                nameservers=servers,
                excluded=kept,
            )
            IPAddress.objects.bulk_create(layout.rows(pool, units), batch_size=2000)
            _refresh_statistics()
    except IntegrityError:
        raise ValidationError(
            _("%(cidr)s overlaps an existing pool.") % {"cidr": network}, code="overlap"
        ) from None
    return pool


def update_pool(
    pool: IPPool,
    *,
    name: str | None = None,
    nameservers: list[str] | None = None,
    excluded: list[str] | None = None,
    is_active: bool | None = None,
) -> IPPool:
    """Change what may change of a pool (None: leave as it is); its network, gateway and assignment stay.

    A new excluded list reserves the free rows it covers (a cooling row keeps its pending reverse DNS
    withdrawal) and frees the reserved rows it no longer covers; addresses excluded when the pool was made
    (which have no row) get their rows, at most 65,536 in one change. An excluded address a server holds
    is a ValidationError naming it (code excluded_in_use), and nothing changes."""
    with transaction.atomic():
        locked = IPPool.objects.select_for_update(of=("self",)).select_related("region").get(pk=pool.pk)
        layout = _layout(locked)
        network = layout.network
        changed: list[str] = []
        if name is not None:
            locked.name = _name(name, network)
            changed.append("name")
        if nameservers is not None:
            locked.nameservers = _parse_nameservers(nameservers)
            changed.append("nameservers")
        if is_active is not None:
            locked.is_active = bool(is_active)
            changed.append("is_active")
        if excluded is not None:
            kept, intervals = _parse_excluded(excluded, layout)
            _apply_excluded(locked, layout, intervals)
            locked.excluded = kept
            changed.append("excluded")
        if changed:
            locked.save(update_fields=changed)
    return locked


def _covers(intervals: list[Interval], unit: int) -> bool:
    """Whether one of the merged, sorted intervals holds the unit."""
    index = bisect.bisect_right(intervals, (unit, float("inf"))) - 1
    return index >= 0 and intervals[index][0] <= unit <= intervals[index][1]


def _in_chunks(ids: list[int], size: int = 5000) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _apply_excluded(pool: IPPool, layout: _Layout, intervals: list[Interval]) -> None:
    """Reserve the free rows the new excluded intervals cover, free the others, and make the rows of units
    excluded before that no longer are (the caller holds the pool's row lock).

    Which rows an interval covers is worked out here from their addresses, not with ranges of `value` in
    SQL: SQLite (the demo's database) keeps numbers that large as floating point."""
    now_excluded = layout.to_units(intervals)
    rows = IPAddress.objects.filter(pool=pool)
    units = {
        pk: layout.unit_of(int(ipaddress.ip_address(text))) for pk, text in rows.values_list("pk", "address")
    }
    covered = [pk for pk, unit in units.items() if _covers(now_excluded, unit)]
    # Reserve first: the update waits for an allocation in flight on one of these rows, and skips it once
    # it is held; the check below then sees it held.
    held: list[IPAddress] = []
    for chunk in _in_chunks(covered):
        rows.filter(pk__in=chunk, consumer_uuid__isnull=True, reserved=False).update(reserved=True)
        held += rows.filter(pk__in=chunk, consumer_uuid__isnull=False)
    if held:
        held.sort(key=lambda row: units[row.pk])
        listed = ", ".join(address_network(row) if layout.routed else row.address for row in held[:5])
        raise ValidationError(
            _("These addresses are in use and cannot be excluded: %(list)s."),
            params={"list": listed + (", …" if len(held) > 5 else "")},
            code="excluded_in_use",
        )
    kept = set(covered)
    freed_rows = [pk for pk in rows.filter(reserved=True).values_list("pk", flat=True) if pk not in kept]
    for chunk in _in_chunks(freed_rows):
        rows.filter(pk__in=chunk).update(reserved=False)
    freed = _subtract(_previously_excluded(pool, layout), now_excluded)
    highest = max(units.values(), default=layout.first_unit - 1)
    new = _units_to_add(layout, freed, highest, len(units))
    if new:
        IPAddress.objects.bulk_create(layout.rows(pool, new), batch_size=2000, ignore_conflicts=True)
        _refresh_statistics()


def _refresh_statistics() -> None:
    """Have Postgres count the address rows now (ANALYZE, which sees this transaction's new rows and
    commits with it), so that the order's address statement is planned for the pools as they are from the
    first order on: until autovacuum's analyze, up to a minute later, Postgres planned it as for an empty
    table and read every row of the pool at each order (0.65-0.85 ms of its CPU an order for a pool of
    1,021 addresses, 0.27-0.45 ms once analyzed; 2026-12-07, `log_statement_stats`). A prepared statement's
    plan is made again after an ANALYZE."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(IPAddress._meta.db_table)}")


def _previously_excluded(pool: IPPool, layout: _Layout) -> list[Interval]:
    """The unit intervals of the pool's stored excluded list (stored entries were validated)."""
    intervals = []
    for entry in pool.excluded or []:
        try:
            intervals.append(_parse_entry(entry.strip(), layout))
        except ValidationError:
            continue
    return layout.to_units(_merge(intervals))


def _units_to_add(layout: _Layout, freed: list[Interval], highest: int, rows: int) -> list[int]:
    """The units of `freed` (excluded before, no longer) that get rows: every one inside what the pool
    covers (the whole network, or for a prefix larger than a pool is made with, up to its `highest` row's
    unit), and beyond that as long as the pool holds fewer than 65,536 rows. More than 65,536 new rows in
    one change is a ValidationError (too_large)."""
    if not freed:
        return []
    if layout.unit_count() <= MAX_POOL_ADDRESSES:
        inside, beyond = freed, []
    else:
        inside = [(first, min(last, highest)) for first, last in freed if first <= highest]
        beyond = [(max(first, highest + 1), last) for first, last in freed if last > highest]
    if _count(inside) > MAX_POOL_ADDRESSES:
        raise ValidationError(
            _(
                "Taking these addresses out of the excluded list would add more than %(count)s rows to the "
                "pool."
            ),
            params={"count": MAX_POOL_ADDRESSES},
            code="too_large",
        )
    units: list[int] = []
    for first, last in inside:
        units += layout.walk([], first, last, MAX_POOL_ADDRESSES)
    room = MAX_POOL_ADDRESSES - rows - len(units)
    for first, last in beyond:
        if room <= 0:
            break
        more = layout.walk([], first, last, room)
        units += more
        room -= len(more)
    return units


# Handing out.


def _cooled() -> datetime:
    """Rows released before this moment have cooled down (IPV4_COOLDOWN_MINUTES, for both families)."""
    return timezone.now() - timedelta(minutes=settings.IPV4_COOLDOWN_MINUTES)


def _free(region: Region, family: int = 4) -> QuerySet[IPAddress]:
    return IPAddress.objects.filter(
        pool__region=region,
        pool__is_active=True,
        pool__family=family,
        consumer_uuid__isnull=True,
        reserved=False,
    ).filter(Q(released_at__isnull=True) | Q(released_at__lt=_cooled()))


def region_has_pools(region: Region, family: int = 4) -> bool:
    """Whether the region has an active pool of the family (IPv4 unless told)."""
    return IPPool.objects.filter(region=region, is_active=True, family=family).exists()


def _take_statement(
    region: Region, consumer_uuid: uuid_module.UUID, family: int, role: str
) -> tuple[str, list]:
    """The UPDATE that gives the consumer the lowest free row of the family in the region that no one else
    has locked (SKIP LOCKED, so concurrent orders take different rows without waiting), conditional on the
    row still being free, and returns it.

    In constant time, however many of the pools' rows are taken: per active pool of the region (a LATERAL
    subquery) the index on (pool, consumer_uuid, value) is walked from the pool's lowest free row (ordering
    by consumer_uuid, which is NULL for all of them, lets that index give the order without sorting), and
    the lowest of the pools' first rows is taken (the others stay locked to the commit: concurrent orders
    take the next ones). Joining every row of the pools and sorting the free ones cost time in proportion to
    the pools' size."""
    address, pool = IPAddress._meta.db_table, IPPool._meta.db_table
    sql = f"""
        UPDATE {address} SET consumer_uuid = %s, allocated_at = %s, released_at = NULL, ptr = '', role = %s
        WHERE id = (
            SELECT free.id FROM {pool} p CROSS JOIN LATERAL (
                SELECT a.id, a.value FROM {address} a
                WHERE a.pool_id = p.id AND a.consumer_uuid IS NULL
                  AND NOT a.reserved AND (a.released_at IS NULL OR a.released_at < %s)
                ORDER BY a.consumer_uuid, a.value LIMIT 1
                FOR UPDATE OF a SKIP LOCKED
            ) AS free
            WHERE p.region_id = %s AND p.is_active AND p.family = %s
            ORDER BY free.value LIMIT 1
        ) AND consumer_uuid IS NULL
        RETURNING {statements.columns(IPAddress).sql}
    """  # noqa: S608 (table names from the models; values are parameters)
    return sql, [consumer_uuid, timezone.now(), role, _cooled(), region.pk, family]


def _taken_rows(sql: str, params: list) -> list[tuple]:
    """The rows a taking statement answers (the address row's columns, named, then any others), run as a
    statement prepared on the database session (the order's hot path), in the caller's transaction or one
    of its own. Named columns: a column a migration adds must not change what a statement prepared before
    it answers."""
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        prepared_statements.execute(cursor, sql, params)
        return cursor.fetchall()


def _address(row: tuple) -> IPAddress | None:
    """The address of a taking statement's row; None when it took none (an outer join's NULLs)."""
    return statements.columns(IPAddress).build(row)


def _take(
    region: Region,
    consumer_uuid: uuid_module.UUID,
    family: int = 4,
    role: str = IPAddress.Role.PRIMARY,
) -> IPAddress | None:
    """One statement: the lowest free row of the family in the region no one else has locked, given to the
    consumer (None when there is none to take now)."""
    if connection.vendor != "postgresql":
        return _take_serialised(region, consumer_uuid, family, role)
    sql, params = _take_statement(region, consumer_uuid, family, role)
    taken = _taken_rows(sql, params)
    return _address(taken[0]) if taken else None


def _take_telling(
    region: Region, consumer_uuid: uuid_module.UUID, family: int, role: str = IPAddress.Role.PRIMARY
) -> tuple[IPAddress | None, bool]:
    """_take(), and whether the region has an active pool of the family, in one statement (an order in a
    region without IPv6 pools pays one query for finding that out)."""
    if connection.vendor != "postgresql":
        taken = _take_serialised(region, consumer_uuid, family, role)
        return taken, taken is not None or region_has_pools(region, family)
    update, params = _take_statement(region, consumer_uuid, family, role)
    pool = IPPool._meta.db_table
    sql = f"""
        WITH taken AS ({update})
        SELECT taken.*, EXISTS (
            SELECT 1 FROM {pool} WHERE region_id = %s AND is_active AND family = %s
        ) AS pooled
        FROM (SELECT 1) AS one LEFT JOIN taken ON TRUE
    """  # noqa: S608 (table names from the models; values are parameters)
    (row,) = _taken_rows(sql, [*params, region.pk, family])
    return _address(row), bool(row[statements.columns(IPAddress).width])


def _take_serialised(
    region: Region,
    consumer_uuid: uuid_module.UUID,
    family: int = 4,
    role: str = IPAddress.Role.PRIMARY,
) -> IPAddress | None:
    """_take() for the embedded SQLite database of `make run`, whose writers take turns (one write
    transaction at a time): the lowest free row, taken with an update conditional on it being free."""
    with transaction.atomic(savepoint=False):
        candidate = _free(region, family).order_by("value", "id").first()
        if candidate is None:
            return None
        if not IPAddress.objects.filter(pk=candidate.pk, consumer_uuid__isnull=True).update(
            consumer_uuid=consumer_uuid, allocated_at=timezone.now(), released_at=None, ptr="", role=role
        ):
            return None
        candidate.refresh_from_db()
        return candidate


def _allocate(region: Region, consumer_uuid: uuid_module.UUID, family: int, role: str) -> IPAddress:
    for _attempt in range(5):
        taken = _take(region, consumer_uuid, family, role)
        if taken is not None:
            return taken
        if not _free(region, family).exists():
            break
    if family == 6:
        raise NoAddress(_("No free IPv6 address in this region; please try again later."))
    raise NoAddress(_("No free IPv4 address in this region; please try again later."))


def allocate(region: Region, consumer_uuid: uuid_module.UUID) -> IPAddress:
    """Give the consumer the lowest free IPv4 address of the region as its primary one. Concurrent callers
    never get the same one: the row is locked (others skip it) and the update is conditional on it still
    being free."""
    return _allocate(region, consumer_uuid, 4, IPAddress.Role.PRIMARY)


def allocate_if_pooled(region: Region, consumer_uuid: uuid_module.UUID) -> IPAddress | None:
    """allocate() for a region that may have no IPv4 pools (then None: its servers get no managed IPv4)."""
    taken = _take(region, consumer_uuid)
    if taken is not None:
        return taken
    if not region_has_pools(region):
        return None
    return allocate(region, consumer_uuid)


def allocate_ipv6_if_pooled(region: Region, consumer_uuid: uuid_module.UUID) -> IPAddress | None:
    """The consumer's primary IPv6 row (an address, or a routed /64 whose ::1 is the server's address);
    None when the region has no active IPv6 pool, NoAddress when it has but none is free. Never waits."""
    taken, pooled = _take_telling(region, consumer_uuid, 6)
    if taken is not None:
        return taken
    if not pooled:
        return None
    return _allocate(region, consumer_uuid, 6, IPAddress.Role.PRIMARY)


def allocate_primaries_if_pooled(region: Region, consumer_uuid: uuid_module.UUID) -> list[IPAddress]:
    """allocate_if_pooled() and allocate_ipv6_if_pooled() together (IPv4 first), as an order needs them: on
    Postgres one statement takes a free row of each family and tells which families the region pools;
    only a family whose free rows were all locked by others (or none is free) goes on to its retries and
    NoAddress as before."""
    if connection.vendor != "postgresql":
        taken = [allocate_if_pooled(region, consumer_uuid), allocate_ipv6_if_pooled(region, consumer_uuid)]
        return [address for address in taken if address is not None]
    update4, params4 = _take_statement(region, consumer_uuid, 4, IPAddress.Role.PRIMARY)
    update6, params6 = _take_statement(region, consumer_uuid, 6, IPAddress.Role.PRIMARY)
    pool = IPPool._meta.db_table
    sql = f"""
        WITH v4 AS ({update4}), v6 AS ({update6})
        SELECT taken.*,
            EXISTS (SELECT 1 FROM {pool} WHERE region_id = %s AND is_active AND family = 4) AS pooled4,
            EXISTS (SELECT 1 FROM {pool} WHERE region_id = %s AND is_active AND family = 6) AS pooled6
        FROM (SELECT 1) AS one LEFT JOIN (SELECT * FROM v4 UNION ALL SELECT * FROM v6) AS taken ON TRUE
    """  # noqa: S608 (table names from the models; values are parameters)
    rows = _taken_rows(sql, [*params4, *params6, region.pk, region.pk])
    taken = {address.family: address for address in map(_address, rows) if address is not None}
    width = statements.columns(IPAddress).width
    pooled4, pooled6 = rows[0][width], rows[0][width + 1]
    if 4 not in taken and pooled4:
        taken[4] = allocate(region, consumer_uuid)
    if 6 not in taken and pooled6:
        taken[6] = _allocate(region, consumer_uuid, 6, IPAddress.Role.PRIMARY)
    return [taken[family] for family in (4, 6) if family in taken]


def allocate_additional(region: Region, consumer_uuid: uuid_module.UUID) -> IPAddress:
    """One more IPv4 address of the region for the consumer (role additional); NoAddress when none is
    free."""
    return _allocate(region, consumer_uuid, 4, IPAddress.Role.ADDITIONAL)


# Taking back.


def _released(now: datetime) -> dict:
    """What releasing writes: the row is free (cooling down), primary again and nameless; where it had a
    reverse DNS name, the record is to be withdrawn (ptr_state pending)."""
    had_name = ~Q(ptr="")
    return {
        "consumer_uuid": None,
        "released_at": now,
        "role": IPAddress.Role.PRIMARY,
        "ptr": "",
        "ptr_state": Case(
            When(had_name, then=Value(IPAddress.PtrState.PENDING)),
            default=F("ptr_state"),
            output_field=models.CharField(),
        ),
        "ptr_changed_at": Case(
            When(had_name, then=Value(now)), default=F("ptr_changed_at"), output_field=models.DateTimeField()
        ),
    }


def release(consumer_uuid: uuid_module.UUID) -> int:
    """Free all of the consumer's rows; they return to their pools after the cool-down."""
    return IPAddress.objects.filter(consumer_uuid=consumer_uuid).update(**_released(timezone.now()))


def _address_text(address: str) -> str:
    """The address as stored (IPv6 compressed); IPAddress.DoesNotExist for what is no address."""
    try:
        return str(ipaddress.ip_address(str(address).strip()))
    except ValueError:
        raise IPAddress.DoesNotExist(address) from None


def release_one(consumer_uuid: uuid_module.UUID, address: str) -> IPAddress:
    """Free one additional address of the consumer (its cool-down starts); IPAddress.DoesNotExist when the
    consumer does not hold it as an additional address (a primary one is released only with the server)."""
    text = _address_text(address)
    updated = IPAddress.objects.filter(
        consumer_uuid=consumer_uuid, address=text, role=IPAddress.Role.ADDITIONAL
    ).update(**_released(timezone.now()))
    if not updated:
        raise IPAddress.DoesNotExist(address)
    return IPAddress.objects.select_related("pool").get(address=text)


def move(address: str, from_uuid: uuid_module.UUID, to_uuid: uuid_module.UUID) -> IPAddress:
    """Give an additional address of one consumer to another, keeping its role and reverse DNS name; one
    conditional update, so of two concurrent moves only one finds it held by `from_uuid`.
    IPAddress.DoesNotExist when `from_uuid` does not hold it as an additional address."""
    text = _address_text(address)
    updated = IPAddress.objects.filter(
        address=text, consumer_uuid=from_uuid, role=IPAddress.Role.ADDITIONAL
    ).update(consumer_uuid=to_uuid, allocated_at=timezone.now())
    if not updated:
        raise IPAddress.DoesNotExist(address)
    return IPAddress.objects.select_related("pool").get(address=text)


# Reading.


def addresses_of(consumer_uuids) -> dict[str, list[IPAddress]]:
    """Addresses by consumer UUID (as text), for many servers in one query."""
    result: dict[str, list[IPAddress]] = {}
    for address in IPAddress.objects.filter(consumer_uuid__in=list(consumer_uuids)).select_related("pool"):
        result.setdefault(str(address.consumer_uuid), []).append(address)
    return result


def address_network(address: IPAddress) -> str:
    """What the row gives its server as a network: "2001:db8:0:5::/64" for a routed /64,
    "2001:db8::5/128" or "192.0.2.5/32" for a single address."""
    return str(ipaddress.ip_interface(f"{address.address}/{address.prefix_length}").network)


def pool_usage(pool: IPPool) -> dict[str, int]:
    """The pool's rows: total, used (held), cooling (released, not yet handed out again) and reserved
    (excluded by an admin); free = total - used - cooling - reserved."""
    addresses = pool.addresses.all()
    cooled = _cooled()
    return {
        "total": addresses.count(),
        "used": addresses.filter(consumer_uuid__isnull=False).count(),
        "cooling": addresses.filter(
            consumer_uuid__isnull=True, reserved=False, released_at__gte=cooled
        ).count(),
        "reserved": addresses.filter(consumer_uuid__isnull=True, reserved=True).count(),
    }


def pools_with_usage() -> QuerySet[IPPool]:
    """Pools annotated with total, used, cooling and reserved address counts (one query, from the pools'
    counts kept by the address triggers: hypervisor.pool_counts)."""
    return pool_counts.with_counts(IPPool.objects.select_related("region"), _cooled())
