"""The installation scenarios 3 and 4 run on: by default 10,000 customers, 1,000 hosts and 100,000 live
servers (and 2% more deleted ones), each server with what an order and its life leave behind: its
allocation (and the host's usage counters), its IPv4 and IPv6 addresses from the region's pools, its
firewall, its create operation, its subscription, its transfer period and its "ordered" activity line;
monthly invoices with their lines and ledger entries per customer, logins, staff actions on the audit log,
and usage samples of the last day for a share of the servers.

Big tables are written with Postgres COPY (`copy_rows`), small ones with bulk_create; a few minutes at
most for the default sizes. Sizes: BENCH_CUSTOMERS, BENCH_SCALE_HOSTS, BENCH_SERVERS, BENCH_SAMPLE_SERVERS,
BENCH_SAMPLES_PER_SERVER, BENCH_INVOICES_PER_CUSTOMER."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from .common import env_int, log, stopwatch, unusable_password
from .provisioning import node_uri

# Hosts: 96 cores and 512 GiB each, so that 100 servers of the plans below fit on every one.
HOST_CORES, HOST_MEMORY_MIB, HOST_DISK_GIB = 96, 524288, 20000
# A quarter of the servers belong to the 1% of customers who are resellers (no server quota).
RESELLER_SHARE, RESELLER_EVERY = 0.01, 4
IPV4_POOLS_PER_REGION, IPV4_POOL_PREFIX = 3, 17  # 3 x 32,765 usable addresses per region
IPV6_POOL_ROWS = 65536  # a routed /44's first 65,536 /64s (as hypervisor.ipam makes them)


@dataclass
class World:
    customers: list = field(default_factory=list)
    staff: object = None
    admin: object = None
    customer: object = None  # the customer whose pages are measured (a typical one)
    tokens: dict = field(default_factory=dict)  # user pk -> raw API token
    hosts: list = field(default_factory=list)
    regions: list = field(default_factory=list)
    plans: list = field(default_factory=list)
    pools: list = field(default_factory=list)
    server: object = None  # the server whose page is measured (it has usage samples and operations)
    invoice_id: int | None = None  # one of the measured customer's invoices
    sizes: dict = field(default_factory=dict)
    seed_seconds: float = 0.0


# Writing rows with COPY.

NULL = r"\N"


def _cell(value):
    """A value as COPY's csv reads it: NULL, a boolean, JSON or the value itself (csv writes its str)."""
    if value is None:
        return NULL
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def _converters(fields: list) -> list[tuple[int, object]]:
    """(index, function) of the given columns whose values need _cell (nullable, boolean, JSON): the
    other values are written as they are, which keeps the copy of a million rows cheap."""
    from django.db.models import BooleanField, JSONField

    return [(i, _cell) for i, f in enumerate(fields) if f.null or isinstance(f, BooleanField | JSONField)]


def copy_rows(model, fields: Sequence[str], rows: Iterable[Sequence], *, now: datetime | None = None) -> int:
    """Insert rows (tuples in the order of `fields`) with Postgres COPY. The model's other columns get
    their default (a callable default is called once), `now` for auto_now fields, "" (text) or NULL; a
    unique or primary-key column without an auto-increment must be given. Returns the number of rows."""
    from django.db import connection
    from django.db.models import AutoField, BigAutoField, SmallAutoField

    given = [model._meta.get_field(name) for name in fields]
    names = {f.name for f in given}
    constant_fields, constants = [], []
    for f in model._meta.concrete_fields:
        if f.name in names or isinstance(f, AutoField | BigAutoField | SmallAutoField):
            continue
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            value = now
        elif f.has_default():
            if f.primary_key or f.unique:
                raise ValueError(f"{model.__name__}.{f.name} is unique: give it per row")
            value = f.get_default()
        else:
            value = f.get_default()  # "" for text columns, None for the others
        if value is None and not f.null:
            raise ValueError(f"{model.__name__}.{f.name} needs a value")
        constant_fields.append(f)
        constants.append(_cell(value))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    count = 0
    tail = tuple(constants)
    converters = _converters(given)
    for row in rows:
        if converters:
            row = list(row)
            for i, convert in converters:
                row[i] = convert(row[i])
        writer.writerow((*row, *tail))
        count += 1
    buffer.seek(0)
    columns = ", ".join(f'"{f.column}"' for f in (*given, *constant_fields))
    with connection.cursor() as cursor:
        cursor.cursor.copy_expert(
            f"COPY \"{model._meta.db_table}\" ({columns}) FROM STDIN WITH (FORMAT csv, NULL '{NULL}')", buffer
        )
    return count


def _next_ids(model, count: int) -> range:
    """`count` primary keys for rows written with explicit ids (the sequence is reset afterwards)."""
    from django.db.models import Max

    start = (model.objects.aggregate(top=Max("pk"))["top"] or 0) + 1
    return range(start, start + count)


def _reset_sequences(models: list) -> None:
    from django.core.management.color import no_style
    from django.db import connection

    with connection.cursor() as cursor:
        for statement in connection.ops.sequence_reset_sql(no_style(), models):
            cursor.execute(statement)


# The installation.


def _sizes() -> dict:
    return {
        "customers": env_int("BENCH_CUSTOMERS", 10000),
        "hosts": env_int("BENCH_SCALE_HOSTS", 1000),
        "servers": env_int("BENCH_SERVERS", 100000),
        "sample_servers": env_int("BENCH_SAMPLE_SERVERS", 1000),
        "samples_per_server": env_int("BENCH_SAMPLES_PER_SERVER", 288),
        "invoices_per_customer": env_int("BENCH_INVOICES_PER_CUSTOMER", 12),
    }


def _catalog(world: World) -> list:
    from billing.models import Plan
    from hypervisor.models import Image, Region

    world.regions = [
        Region.objects.create(slug="jakarta", name="Jakarta"),
        Region.objects.create(slug="singapore", name="Singapore"),
    ]
    world.plans = [
        Plan.objects.create(
            slug=slug,
            name=slug.title(),
            vcpus=vcpus,
            memory_mib=memory,
            disk_gib=disk,
            transfer_gib=transfer,
            price_monthly=Decimal(price),
            price_hourly=(Decimal(price) / 672).quantize(Decimal("0.0001")),
            sort_order=n,
        )
        for n, (slug, vcpus, memory, disk, transfer, price) in enumerate(
            [
                ("nano", 1, 512, 10, 500, 50000),
                ("small", 1, 1024, 25, 1000, 90000),
                ("medium", 2, 2048, 50, 2000, 170000),
                ("large", 4, 8192, 160, None, 600000),
            ]
        )
    ]
    return [
        Image.objects.create(slug=slug, name=name, os_family=family)
        for slug, name, family in [
            ("debian-12", "Debian 12", "debian"),
            ("ubuntu-24-04", "Ubuntu 24.04", "ubuntu"),
            ("rocky-9", "Rocky Linux 9", "rocky"),
        ]
    ]


def _users(world: World, count: int, now: datetime) -> None:
    from django.conf import settings
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from panel.accounts import totp
    from panel.models import Quota, User

    password = unusable_password()
    world.staff = User.objects.create(
        email="staff@bench.example", username="staff@bench.example", role=User.Role.STAFF, password=password
    )
    world.admin = User.objects.create(
        email="admin@bench.example",
        username="admin@bench.example",
        role=User.Role.ADMIN,
        password=password,
        is_staff=True,
        is_superuser=True,
    )
    world.customers = User.objects.bulk_create(
        (
            User(
                email=f"customer{i:05d}@bench.example",
                username=f"customer{i:05d}@bench.example",
                first_name=f"Customer {i}",
                password=password,
                role=User.Role.CUSTOMER,
                date_joined=now - timedelta(days=400 - i % 30),
                last_login=now - timedelta(hours=i % 500),
            )
            for i in range(count)
        ),
        batch_size=5000,
    )
    for user in (world.staff, world.admin):  # staff and admins have a second factor (panel.middleware)
        TOTPDevice.objects.create(user=user, name=totp.TOTP_DEVICE_NAME, confirmed=True)
        user.refresh_from_db()
    limits = {name: settings.DEFAULT_QUOTA.get(name) for name in Quota.RESOURCES}
    resellers = _resellers(world.customers)
    Quota.objects.bulk_create(
        (
            Quota(
                user=c, **({**limits, "servers": None, "vcpus": None, "memory_mib": None, "disk_gib": None})
            )
            if c.pk in resellers
            else Quota(user=c, **limits)
            for c in world.customers
        ),
        batch_size=5000,
    )


def _resellers(customers: list) -> set[int]:
    """The pks of the customers who are resellers: 1% of them, never the first (the measured one)."""
    return {c.pk for c in customers[1 : 1 + max(1, int(len(customers) * RESELLER_SHARE))]}


def _hosts(world: World, count: int, workdir: Path, now: datetime) -> None:
    from hypervisor.models import Host

    nodes = workdir / "scale-nodes"
    nodes.mkdir(exist_ok=True)
    world.hosts = Host.objects.bulk_create(
        (
            Host(
                name=f"kvm-{n:04d}",
                uri=node_uri(nodes, f"kvm-{n:04d}", cores=HOST_CORES, memory_mib=HOST_MEMORY_MIB),
                region=world.regions[n % 2],
                state=Host.State.READY,
                domain_type="test",
                arch="x86_64",
                cpu_model="x86_64",
                vcpus_total=HOST_CORES,
                memory_mib_total=HOST_MEMORY_MIB,
                memory_mib_free=HOST_MEMORY_MIB // 3,
                disk_gib_total=HOST_DISK_GIB,
                reserved_vcpus=0,
                reserved_memory_mib=0,
                last_probed_at=now,
                last_seen_at=now,
                libvirt_version="12.8.0",
                hypervisor_version="Test 12.8.0",
                inventory={"pools": ["default"], "networks": ["default"], "bridges": None},
            )
            for n in range(count)
        ),
        batch_size=2000,
    )


@dataclass(frozen=True)
class ServerRow:
    """What the other tables need to know of a seeded server."""

    id: uuid.UUID
    name: str
    owner_id: int
    plan: object
    region_id: int
    host_id: int | None
    status: str
    created_at: datetime
    deleted_at: datetime | None


def _servers(world: World, images: list, live: int, deleted: int, now: datetime) -> list[ServerRow]:
    """Servers: 94% running, 4% stopped, 1% suspended (by staff), 1% error; and `deleted` more that were
    deleted. Their creation times spread over the past year; a quarter belong to the resellers."""
    from panel.models import Server

    rng = random.Random(19)
    statuses = ["running"] * 94 + ["stopped"] * 4 + ["suspended", "error"]
    power = {"running": "running", "stopped": "shutoff", "suspended": "shutoff", "error": "", "deleted": ""}
    customers, hosts, plans = world.customers, world.hosts, world.plans
    chosen = _resellers(customers)
    resellers = [c for c in customers if c.pk in chosen]
    regular = [c for c in customers if c.pk not in chosen]
    rows: list[ServerRow] = []
    regular_n = 0
    for i in range(live + deleted):
        host = hosts[i % len(hosts)]
        if i % RESELLER_EVERY == 0:
            owner = resellers[(i // RESELLER_EVERY) % len(resellers)]
        else:
            owner = regular[regular_n % len(regular)]
            regular_n += 1
        status = statuses[i % 100] if i < live else "deleted"
        created = now - timedelta(seconds=rng.randrange(3600, 365 * 86400))
        rows.append(
            ServerRow(
                id=_uuid(rng),
                name=f"web-{i:06d}",
                owner_id=owner.id,
                plan=plans[(i // 7) % len(plans)],
                region_id=host.region_id,
                host_id=host.id if i < live else None,
                status=status,
                created_at=created,
                deleted_at=created + (now - created) / 2 if status == "deleted" else None,
            )
        )
    copy_rows(
        Server,
        (
            "id name owner plan image region host vcpus memory_mib "
            "disk_gib mac status power_state status_reason suspended_by created_at updated_at deleted_at"
        ).split(),
        (
            (
                s.id,
                s.name,
                s.owner_id,
                s.plan.id,
                images[n % len(images)].pk,
                s.region_id,
                s.host_id,
                s.plan.vcpus,
                s.plan.memory_mib,
                s.plan.disk_gib,
                f"52:54:{n >> 24 & 255:02x}:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}",
                s.status,
                power[s.status],
                "Creating the server failed: the host refused" if s.status == "error" else None,
                "staff" if s.status == "suspended" else "",
                s.created_at,
                max(s.created_at, now - timedelta(days=n % 30)),
                s.deleted_at,
            )
            for n, s in enumerate(rows)
        ),
        now=now,
    )
    return rows


def _placement(rows: list[ServerRow], now: datetime) -> None:
    """Allocations of the live servers and the hosts' usage counters (what the claims keep)."""
    from django.db import connection

    from hypervisor.models import Allocation

    alive = [s for s in rows if s.status != "deleted"]
    copy_rows(
        Allocation,
        "consumer_uuid host vcpus memory_mib disk_gib created_at".split(),
        ((s.id, s.host_id, s.plan.vcpus, s.plan.memory_mib, s.plan.disk_gib, s.created_at) for s in alive),
    )
    # (the counters' trigger, hypervisor migration 0005, is off during the seed: see `seed`)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE hypervisor_host h SET used_vcpus = a.vcpus, used_memory_mib = a.memory_mib, "
            "used_disk_gib = a.disk_gib FROM (SELECT host_id, sum(vcpus) AS vcpus, "
            "sum(memory_mib) AS memory_mib, sum(disk_gib) AS disk_gib FROM hypervisor_allocation "
            "GROUP BY host_id) a WHERE h.id = a.host_id"
        )


def _pool_counts() -> None:
    """The pools' counts as the address triggers (hypervisor migration 0006, off during the seed) would have
    written them, folded: one row per pool."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO hypervisor_ippoolcount (pool_id, total, used, reserved) "
            "SELECT pool_id, COUNT(*), COUNT(*) FILTER (WHERE consumer_uuid IS NOT NULL), "
            "COUNT(*) FILTER (WHERE consumer_uuid IS NULL AND reserved) FROM hypervisor_ipaddress "
            "GROUP BY pool_id"
        )


def _addresses(world: World, rows: list[ServerRow], now: datetime) -> None:
    """IPv4 pools of /17s and a routed IPv6 /44 per region, every usable unit a row (as hypervisor.ipam
    makes them); each live server holds a primary IPv4 address and an IPv6 /64, one in fifty an additional
    IPv4 address; the deleted servers' addresses were released."""
    from hypervisor.models import IPAddress, IPPool

    world.pools = []
    units: dict[tuple[int, int], list] = {}  # (region, family) -> [(pool id, value, address text, prefix)]
    for r, region in enumerate(world.regions):
        v4 = []
        for p in range(IPV4_POOLS_PER_REGION):
            network = ipaddress.IPv4Network(f"10.{16 + r * 8 + p}.0.0/{IPV4_POOL_PREFIX}")
            pool = IPPool.objects.create(
                region=region,
                name=f"{region.slug}-v4-{p + 1}",
                cidr=str(network),
                gateway=str(network[1]),
                nameservers=["192.0.2.53", "192.0.2.54"],
            )
            world.pools.append(pool)
            first, last = int(network.network_address) + 2, int(network.broadcast_address) - 1
            v4 += [
                (pool.pk, value, f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}", 32)
                for value in range(first, last + 1)
            ]
        prefix = ipaddress.IPv6Network(f"2001:db8:{r:x}0::/44")
        pool6 = IPPool.objects.create(
            region=region,
            name=f"{region.slug}-v6",
            family=IPPool.Family.IPV6,
            assignment=IPPool.Assignment.PREFIX64,
            cidr=str(prefix),
            gateway="fe80::1",
        )
        world.pools.append(pool6)
        base = int(prefix.network_address) >> 64
        v6 = []
        for unit in range(base, base + IPV6_POOL_ROWS):
            text = f"{unit >> 48:x}:{unit >> 32 & 0xFFFF:x}:{unit >> 16 & 0xFFFF:x}:{unit & 0xFFFF:x}::1"
            v6.append((pool6.pk, (unit << 64) + 1, text, 64))  # (Postgres keeps inet in canonical form)
        units[(region.pk, 4)], units[(region.pk, 6)] = v4, v6
    held: dict[tuple[int, int], list] = {
        key: [] for key in units
    }  # (unit, consumer, role, allocated, released)
    for n, s in enumerate(rows):
        for family in (4, 6):
            held[(s.region_id, family)].append((s, "primary"))
        if n % 50 == 7 and s.status != "deleted":
            held[(s.region_id, 4)].append((s, "additional"))

    def addresses():
        for key, free in units.items():
            holders = held[key]
            if len(holders) > len(free):
                raise ValueError(f"the pools of region {key[0]} are too small for {len(holders)} addresses")
            for (pool, value, text, prefix), (s, role) in zip(free, holders, strict=False):
                if s.status == "deleted":
                    yield (pool, text, prefix, value, None, role, s.created_at, s.deleted_at)
                else:
                    yield (pool, text, prefix, value, s.id, role, s.created_at, None)
            for pool, value, text, prefix in free[len(holders) :]:
                yield (pool, text, prefix, value, None, "primary", None, None)

    copy_rows(
        IPAddress,
        "pool address prefix_length value consumer_uuid role allocated_at released_at".split(),
        addresses(),
    )


def _operations(world: World, rows: list[ServerRow], now: datetime) -> None:
    """Every server's create operation (and the delete of the deleted ones); the measured customer's servers
    also have a history of 25 actions each."""
    from panel.models import Operation

    rng = random.Random(7)
    kinds = [Operation.Type.REBOOT, Operation.Type.SHUTDOWN, Operation.Type.START, Operation.Type.RESIZE]

    def operations():
        for s in rows:
            yield (_uuid(rng), s.id, "create", {}, s.owner_id, s.created_at, timedelta(seconds=40))
            if s.deleted_at:
                yield (_uuid(rng), s.id, "delete", {}, s.owner_id, s.deleted_at, timedelta(seconds=5))
            if s.owner_id == world.customer.id and s.status != "deleted":
                for k in range(25):
                    kind = kinds[k % 4]
                    params = {"plan": "small"} if kind == Operation.Type.RESIZE else {}
                    at = s.created_at + (now - s.created_at) * (k + 1) / 26
                    yield (_uuid(rng), s.id, kind, params, s.owner_id, at, timedelta(seconds=8))

    # Finished operations: succeeded at the first attempt, no lease, their deadline met.
    copy_rows(
        Operation,
        (
            "id server type params requested_by created_at "
            "started_at finished_at deadline status attempts lease_expires_at"
        ).split(),
        ((*head, at, at, at + took, at + took, "succeeded", 1, None) for *head, at, took in operations()),
        now=now,
    )


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _server_rows(rows: list[ServerRow], now: datetime) -> None:
    """Each live server's firewall (applied) and current transfer period."""
    from panel.models import Firewall, TransferPeriod

    alive = [s for s in rows if s.status != "deleted"]
    rule = [{"protocol": "tcp", "ports": "22", "sources": ["0.0.0.0/0", "::/0"]}]
    copy_rows(
        Firewall,
        "server inbound default_inbound applied_version applied_at updated_at".split(),
        (
            (s.id, rule if n % 3 == 0 else [], "accept", 1, s.created_at, s.created_at)
            for n, s in enumerate(alive)
        ),
    )
    copy_rows(
        TransferPeriod,
        ["server", "start", "end", "in_bytes", "out_bytes"],
        (
            (
                s.id,
                _anniversary(s.created_at, now),
                _anniversary(s.created_at, now) + timedelta(days=30),
                (n % 97) * 3 * 10**9,
                (n % 89) * 10**9,
            )
            for n, s in enumerate(alive)
        ),
    )


def _anniversary(start: datetime, now: datetime) -> datetime:
    """The start of the 30-day period `now` is in, counted from `start`."""
    return start + timedelta(days=30 * ((now - start).days // 30))


def _billing(world: World, rows: list[ServerRow], now: datetime) -> int:
    """Subscriptions (monthly, one per server; the deleted servers' have ended), a paid invoice a month per
    customer with a line per subscription it renewed (at most three), the ledger's charge and payment of
    each, and a prepaid credit on every other account. Returns the number of invoices."""
    from billing.models import Invoice, InvoiceLine, LedgerEntry, Subscription
    from billing.money import currency

    money = currency()
    sub_ids = _next_ids(Subscription, len(rows))
    by_owner: dict[int, list[int]] = {}
    subscriptions = []
    for sid, s in zip(sub_ids, rows, strict=True):
        period = _anniversary(s.created_at, now)
        ended = s.status == "deleted"
        subscriptions.append(
            (
                sid,
                s.owner_id,
                str(s.id),
                s.name,
                s.plan.id,
                s.plan.price_monthly,
                money,
                "ended" if ended else "active",
                s.created_at,
                period,
                period + timedelta(days=30),
                s.deleted_at if ended else None,
            )
        )
        if not ended:
            by_owner.setdefault(s.owner_id, []).append(sid)
    copy_rows(
        Subscription,
        (
            "id account reference label plan price "
            "currency status started_at period_start paid_through ended_at"
        ).split(),
        subscriptions,
    )
    per = world.sizes["invoices_per_customer"]
    invoice_ids = iter(_next_ids(Invoice, len(world.customers) * per))
    invoices, lines, entries = [], [], []
    for customer in world.customers:
        subs = by_owner.get(customer.id, [])[:3]
        for month in range(per):
            iid = next(invoice_ids)
            issued = now - timedelta(days=30 * (per - month), hours=customer.id % 24)
            amount = Decimal("90000")
            total = amount * max(1, len(subs))
            invoices.append(
                (
                    iid,
                    customer.id,
                    f"INV-{iid:08d}",
                    "paid",
                    money,
                    total,
                    total,
                    issued,
                    issued + timedelta(days=7),
                    issued + timedelta(days=1),
                    f"Customer {customer.id}",
                    issued,
                )
            )
            for sid in subs or [None]:
                lines.append(
                    (
                        iid,
                        "plan",
                        "Plan small, one month",
                        sid,
                        issued,
                        issued + timedelta(days=30),
                        amount,
                        amount,
                    )
                )
            entries.append((customer.id, "charge", -total, money, iid, "", issued))
            entries.append(
                (customer.id, "payment", total, money, iid, "Bank transfer", issued + timedelta(days=1))
            )
        if customer.id % 2 == 0:
            entries.append(
                (
                    customer.id,
                    "payment",
                    Decimal("5000000"),
                    money,
                    None,
                    "Bank transfer",
                    now - timedelta(days=3),
                )
            )
    copy_rows(
        Invoice,
        (
            "id account number status currency subtotal total issued_at due_at paid_at buyer_name created_at"
        ).split(),
        invoices,
    )
    copy_rows(
        InvoiceLine,
        "invoice kind description subscription period_start period_end unit_price amount".split(),
        lines,
    )
    copy_rows(LedgerEntry, "account kind amount currency invoice reason created_at".split(), entries)
    _reset_sequences([Subscription, Invoice])
    if invoices:
        world.invoice_id = next(i[0] for i in reversed(invoices) if i[1] == world.customer.id)
    return len(invoices)


def _activity(world: World, rows: list[ServerRow], now: datetime) -> int:
    """The activity log: an "ordered" line per server, logins of every customer, and staff actions on the
    audit log (suspensions, credits, host changes)."""
    from panel.models import ActivityEvent

    plans = {p.pk: p.name for p in world.plans}
    regions = {r.pk: r.name for r in world.regions}
    staff = world.staff.pk

    def events():
        for s in rows:
            yield (
                s.created_at,
                s.owner_id,
                s.owner_id,
                "server_ordered",
                "198.51.100.7",
                f"server:{s.id}",
                "Ordered server %(name)s (%(plan)s, %(image)s, %(region)s).",
                {
                    "name": s.name,
                    "plan": plans[s.plan.id],
                    "image": "Debian 12",
                    "region": regions[s.region_id],
                },
                False,
            )
            if s.status == "suspended":
                yield (
                    s.created_at + timedelta(days=1),
                    s.owner_id,
                    staff,
                    "suspension",
                    "203.0.113.9",
                    f"server:{s.id}",
                    "Suspended server %(name)s: %(reason)s.",
                    {"name": s.name, "reason": "abuse"},
                    True,
                )
        for c in world.customers:
            for k in range(5):
                yield (
                    now - timedelta(hours=c.pk % 500 + 24 * k),
                    c.pk,
                    c.pk,
                    "login",
                    "198.51.100.7",
                    f"user:{c.pk}",
                    "Logged in.",
                    {},
                    False,
                )
            if c.pk % 2 == 0:
                yield (
                    now - timedelta(days=3),
                    c.pk,
                    staff,
                    "payment",
                    "203.0.113.9",
                    f"user:{c.pk}",
                    "Recorded a payment of %(money)s.",
                    {"amount": "5000000", "currency": "IDR"},
                    True,
                )
        for host in world.hosts:
            yield (
                now - timedelta(days=200),
                None,
                world.admin.pk,
                "host_changed",
                "203.0.113.10",
                f"host:{host.pk}",
                "Registered host %(host)s.",
                {"host": host.name},
                True,
            )

    return copy_rows(
        ActivityEvent,
        "at account actor type ip target summary data staff_action".split(),
        events(),
    )


def _usage_samples(world: World, rows: list[ServerRow], now: datetime) -> int:
    """5-minute usage samples of the last day of the first `sample_servers` live servers, the measured
    customer's first."""
    from panel.models import UsageSample

    sizes = world.sizes
    alive = [s for s in rows if s.status != "deleted"]
    sampled = sorted(alive, key=lambda s: s.owner_id != world.customer.id)[: sizes["sample_servers"]]
    step = UsageSample.FIVE_MINUTES
    latest = now - timedelta(seconds=now.timestamp() % step, microseconds=now.microsecond)
    starts = [latest - timedelta(seconds=step * k) for k in range(sizes["samples_per_server"])]
    return copy_rows(
        UsageSample,
        "server resolution start rx_bytes tx_bytes cpu_ns rd_bytes wr_bytes vcpus".split(),
        (
            (
                s.id,
                step,
                start,
                3_000_000 + 1000 * k,
                9_000_000 + 7 * k,
                60 * 10**9,
                400_000 + k,
                800_000 + k,
                s.plan.vcpus,
            )
            for s in sampled
            for k, start in enumerate(starts)
        ),
    )


def _check_references() -> None:
    """Every foreign key of the panel's, hypervisor's and billing's tables points at a row (what the
    triggers the seed turned off would have checked): one anti-join per foreign key."""
    from django.apps import apps
    from django.db import connection

    broken = []
    with connection.cursor() as cursor:
        for model in apps.get_models():
            if model._meta.app_label not in ("panel", "hypervisor", "billing") or model._meta.proxy:
                continue
            for f in model._meta.concrete_fields:
                if not f.is_relation:
                    continue
                target = f.target_field
                cursor.execute(
                    f'SELECT count(*) FROM "{model._meta.db_table}" c WHERE c."{f.column}" IS NOT NULL AND '
                    f'NOT EXISTS (SELECT 1 FROM "{target.model._meta.db_table}" p '
                    f'WHERE p."{target.column}" = c."{f.column}")'
                )
                if missing := cursor.fetchone()[0]:
                    broken.append(f"{model.__name__}.{f.name}: {missing} rows")
    if broken:
        raise AssertionError(f"the seed wrote references to nothing: {broken}")


def seed(workdir: Path) -> World:
    """Build the installation (see the module's docstring) and ANALYZE it."""
    from django.db import connection, transaction
    from django.utils import timezone

    from panel.models import ApiToken, Server

    sizes = _sizes()
    log(f"scenario 3: seeding {sizes}")
    world = World(sizes=sizes)
    now = timezone.now()
    live = sizes["servers"]
    deleted = live // 50
    steps: dict[str, float] = {}
    with stopwatch() as elapsed, transaction.atomic():
        # Triggers are off while the seed writes (no foreign-key check per row, no host counter update per
        # allocation); the references are checked once at the end (_check_references).
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")

        def step(name: str, function, *args):
            with stopwatch() as took:
                result = function(*args)
            steps[name] = round(took(), 1)
            return result

        images = step("catalog", _catalog, world)
        step("users", _users, world, sizes["customers"], now)
        step("hosts", _hosts, world, sizes["hosts"], workdir, now)
        world.customer = world.customers[0]
        rows = step("servers", _servers, world, images, live, deleted, now)
        step("placement", _placement, rows, now)
        step("addresses", _addresses, world, rows, now)
        step("pool counts", _pool_counts)
        step("operations", _operations, world, rows, now)
        step("firewalls and transfer", _server_rows, rows, now)
        invoices = step("billing", _billing, world, rows, now)
        events = step("activity", _activity, world, rows, now)
        samples = step("usage samples", _usage_samples, world, rows, now)
        for user in (world.customer, world.staff, world.admin):
            world.tokens[user.pk] = ApiToken.issue(user, "bench")[1]
        step("reference check", _check_references)
        mine = [s.id for s in rows if s.owner_id == world.customer.id and s.status == "running"]
        world.server = Server.objects.get(pk=mine[0])
    with stopwatch() as took, connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")  # as autovacuum leaves a real installation: visibility maps set
    steps["analyze"] = round(took(), 1)
    world.seed_seconds = elapsed() + steps["analyze"]
    sizes.update(
        {
            "deleted_servers": deleted,
            "usage_samples": samples,
            "invoices": invoices,
            "activity_events": events,
        }
    )
    log(
        f"scenario 3: seeded {len(world.customers)} customers, {len(world.hosts)} hosts, {live} live + "
        f"{deleted} deleted servers, {samples} usage samples, {invoices} invoices, {events} activity events "
        f"in {world.seed_seconds:.1f} s ({steps})"
    )
    return world
