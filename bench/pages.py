"""Scenario 3: a seeded installation at scale (1,000 customers, 200 hosts, 10,000 servers with addresses,
allocations, operations, subscriptions, usage samples and invoices), and the latency and SQL queries per
request of the main pages and API lists, through Django's test client (the whole middleware stack, in
production settings)."""

from __future__ import annotations

import csv
import io
import ipaddress
import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from .common import Section, env_int, fmt_ms, log, stopwatch, summary, unusable_password
from .provisioning import node_uri


@dataclass
class World:
    customers: list = field(default_factory=list)
    staff: object = None
    admin: object = None
    customer: object = None  # the customer whose pages are measured
    tokens: dict = field(default_factory=dict)  # user pk -> raw API token
    hosts: list = field(default_factory=list)
    regions: list = field(default_factory=list)
    plans: list = field(default_factory=list)
    server: object = None  # the server whose page is measured (it has usage samples and operations)
    sizes: dict = field(default_factory=dict)
    seed_seconds: float = 0.0


def copy_rows(model, fields: list[str], rows) -> int:
    """Insert many rows with Postgres COPY (much faster than INSERT for the usage samples)."""
    from django.db import connection

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    buffer.seek(0)
    columns = ", ".join(f'"{model._meta.get_field(name).column}"' for name in fields)
    with connection.cursor() as cursor:
        cursor.cursor.copy_expert(
            f'COPY "{model._meta.db_table}" ({columns}) FROM STDIN WITH (FORMAT csv)', buffer
        )
    return count


def seed(workdir: Path) -> World:
    """Build the installation with bulk inserts. Sizes: BENCH_CUSTOMERS, BENCH_SCALE_HOSTS, BENCH_SERVERS,
    BENCH_SAMPLE_SERVERS, BENCH_SAMPLES_PER_SERVER, BENCH_INVOICES_PER_CUSTOMER."""
    from django.db import connection, transaction
    from django.utils import timezone

    from billing.models import Invoice, InvoiceLine, LedgerEntry, Plan, Subscription
    from billing.money import currency
    from hypervisor.models import Allocation, Host, Image, IPAddress, IPPool, Region
    from panel.models import ApiToken, Operation, Server, UsageSample, User

    sizes = {
        "customers": env_int("BENCH_CUSTOMERS", 1000),
        "hosts": env_int("BENCH_SCALE_HOSTS", 200),
        "servers": env_int("BENCH_SERVERS", 10000),
        "sample_servers": env_int("BENCH_SAMPLE_SERVERS", 500),
        "samples_per_server": env_int("BENCH_SAMPLES_PER_SERVER", 288),
        "invoices_per_customer": env_int("BENCH_INVOICES_PER_CUSTOMER", 12),
    }
    log(f"scenario 3: seeding {sizes}")
    world = World(sizes=sizes)
    now = timezone.now()
    money = currency()
    BATCH = 2000
    with stopwatch() as elapsed, transaction.atomic():
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
        images = [
            Image.objects.create(slug=slug, name=name, os_family=family)
            for slug, name, family in [
                ("debian-12", "Debian 12", "debian"),
                ("ubuntu-24-04", "Ubuntu 24.04", "ubuntu"),
                ("rocky-9", "Rocky Linux 9", "rocky"),
            ]
        ]
        world.staff = User.objects.create(
            email="staff@bench.example",
            username="staff@bench.example",
            role=User.Role.STAFF,
            password=unusable_password(),
        )
        world.admin = User.objects.create(
            email="admin@bench.example",
            username="admin@bench.example",
            role=User.Role.ADMIN,
            password=unusable_password(),
            is_staff=True,
            is_superuser=True,
        )
        world.customers = User.objects.bulk_create(
            (
                User(
                    email=f"customer{i:05d}@bench.example",
                    username=f"customer{i:05d}@bench.example",
                    password=unusable_password(),
                    role=User.Role.CUSTOMER,
                )
                for i in range(sizes["customers"])
            ),
            batch_size=BATCH,
        )
        nodes = workdir / "scale-nodes"
        nodes.mkdir(exist_ok=True)
        world.hosts = Host.objects.bulk_create(
            (
                Host(
                    name=f"kvm-{n:03d}",
                    uri=node_uri(nodes, f"kvm-{n:03d}"),
                    region=world.regions[n % 2],
                    state=Host.State.READY,
                    domain_type="test",
                    arch="x86_64",
                    cpu_model="x86_64",
                    vcpus_total=64,
                    memory_mib_total=262144,
                    memory_mib_free=200000,
                    disk_gib_total=20000,
                    reserved_vcpus=0,
                    reserved_memory_mib=0,
                    last_probed_at=now,
                    last_seen_at=now,
                    libvirt_version="12.8.0",
                    hypervisor_version="Test 12.8.0",
                    inventory={"pools": ["default"], "networks": ["default"], "bridges": None},
                )
                for n in range(sizes["hosts"])
            ),
            batch_size=BATCH,
        )
        # Servers: 94% running, 4% stopped, 1% suspended (by staff), 1% error; and 2% more that were deleted.
        live = sizes["servers"]
        deleted = live // 50
        statuses = ["running"] * 94 + ["stopped"] * 4 + ["suspended", "error"]
        power = {"running": "running", "stopped": "shutoff", "suspended": "shutoff", "error": ""}
        servers = []
        customers, hosts, plans = world.customers, world.hosts, world.plans
        for i in range(live + deleted):
            host = hosts[i % len(hosts)]
            plan = plans[(i // len(customers)) % len(plans)]
            status = statuses[i % 100] if i < live else "deleted"
            servers.append(
                Server(
                    name=f"web-{i:05d}",
                    owner=customers[i % len(customers)],
                    plan=plan,
                    image=images[i % 3],
                    region=host.region,
                    host=host if i < live else None,
                    vcpus=plan.vcpus,
                    memory_mib=plan.memory_mib,
                    disk_gib=plan.disk_gib,
                    status=status,
                    power_state=power.get(status, ""),
                    status_reason="Creating the server failed: the host refused"
                    if status == "error"
                    else None,
                    suspended_by="staff" if status == "suspended" else "",
                    deleted_at=now if status == "deleted" else None,
                )
            )
        servers = Server.objects.bulk_create(servers, batch_size=BATCH)
        with connection.cursor() as cursor:  # spread the creation times over the past year
            cursor.execute(
                "UPDATE panel_server SET created_at = now() - (random() * interval '365 days'), "
                "updated_at = now() - (random() * interval '30 days')"
            )
        alive = [s for s in servers if s.status != "deleted"]
        Allocation.objects.bulk_create(
            (
                Allocation(
                    consumer_uuid=s.id,
                    host_id=s.host_id,
                    vcpus=s.vcpus,
                    memory_mib=s.memory_mib,
                    disk_gib=s.disk_gib,
                )
                for s in alive
            ),
            batch_size=BATCH,
        )
        pools = {}
        for n, region in enumerate(world.regions):
            network = ipaddress.IPv4Network(f"10.{100 + n}.0.0/16")
            pools[region.pk] = (
                IPPool.objects.create(
                    region=region,
                    name=f"{region.slug}-1",
                    cidr=str(network),
                    gateway=str(network[1]),
                    nameservers=["192.0.2.53"],
                ),
                int(network[2]),
            )
        taken = dict.fromkeys(pools, 0)
        addresses = []
        for s in alive:
            pool, first = pools[s.region_id]
            value = first + taken[s.region_id]
            taken[s.region_id] += 1
            addresses.append(
                IPAddress(
                    pool=pool,
                    address=str(ipaddress.IPv4Address(value)),
                    value=value,
                    consumer_uuid=s.id,
                    allocated_at=now,
                )
            )
        IPAddress.objects.bulk_create(addresses, batch_size=BATCH)
        Operation.objects.bulk_create(
            (
                Operation(
                    server=s,
                    type=Operation.Type.CREATE,
                    status=Operation.Status.SUCCEEDED,
                    attempts=1,
                    requested_by_id=s.owner_id,
                    started_at=now,
                    finished_at=now,
                )
                for s in servers
            ),
            batch_size=BATCH,
        )
        # The measured customer: the first; their first running server gets a history of operations.
        world.customer = customers[0]
        mine = [s for s in alive if s.owner_id == world.customer.pk]
        world.server = next(s for s in mine if s.status == "running")
        kinds = [Operation.Type.REBOOT, Operation.Type.SHUTDOWN, Operation.Type.START, Operation.Type.RESIZE]
        Operation.objects.bulk_create(
            Operation(
                server=s,
                type=kinds[k % 4],
                status=Operation.Status.SUCCEEDED,
                attempts=1,
                params={"plan": "small"} if kinds[k % 4] == Operation.Type.RESIZE else {},
                requested_by_id=s.owner_id,
                started_at=now,
                finished_at=now,
            )
            for s in mine
            for k in range(25)
        )
        # Subscriptions: every live server is billed monthly; deleted servers' subscriptions have ended.
        Subscription.objects.bulk_create(
            (
                Subscription(
                    account_id=s.owner_id,
                    reference=str(s.id),
                    label=s.name,
                    plan=s.plan,
                    price=s.plan.price_monthly,
                    currency=money,
                    started_at=now - timedelta(days=200 + n % 150),
                    period_start=now - timedelta(days=30 - n % 28),
                    paid_through=now + timedelta(days=1 + n % 28),
                    # (suspended servers were suspended by staff: billing keeps billing them)
                    status=Subscription.Status.ENDED if s.status == "deleted" else Subscription.Status.ACTIVE,
                    ended_at=now if s.status == "deleted" else None,
                )
                for n, s in enumerate(servers)
            ),
            batch_size=BATCH,
        )
        # Invoices: a paid one per month per customer (two lines), with the ledger's charge and payment;
        # every other customer keeps a prepaid credit as well.
        per = sizes["invoices_per_customer"]
        invoices = []
        serial = 0
        for customer in customers:
            for month in range(per):
                serial += 1
                issued = now - timedelta(days=30 * (per - month))
                invoices.append(
                    Invoice(
                        account=customer,
                        number=f"SEED-{serial:07d}",
                        status=Invoice.Status.PAID,
                        currency=money,
                        total=Decimal("140000"),
                        issued_at=issued,
                        due_at=issued + timedelta(days=7),
                        paid_at=issued + timedelta(days=1),
                    )
                )
        invoices = Invoice.objects.bulk_create(invoices, batch_size=BATCH)
        InvoiceLine.objects.bulk_create(
            (
                InvoiceLine(
                    invoice=invoice,
                    kind=InvoiceLine.Kind.PLAN,
                    description=f"Plan line {n}",
                    period_start=invoice.issued_at,
                    period_end=invoice.issued_at + timedelta(days=30),
                    unit_price=Decimal("70000"),
                    amount=Decimal("70000"),
                )
                for invoice in invoices
                for n in range(2)
            ),
            batch_size=BATCH,
        )
        entries = []
        for invoice in invoices:
            entries.append(
                LedgerEntry(
                    account_id=invoice.account_id,
                    kind=LedgerEntry.Kind.CHARGE,
                    amount=-invoice.total,
                    currency=money,
                    invoice=invoice,
                )
            )
            entries.append(
                LedgerEntry(
                    account_id=invoice.account_id,
                    kind=LedgerEntry.Kind.PAYMENT,
                    amount=invoice.total,
                    currency=money,
                    invoice=invoice,
                )
            )
        entries += [
            LedgerEntry(
                account=c,
                kind=LedgerEntry.Kind.PAYMENT,
                amount=Decimal("50000000"),
                currency=money,
                reason="Bank transfer",
            )
            for c in customers[::2]
        ]
        LedgerEntry.objects.bulk_create(entries, batch_size=BATCH)
        # Usage samples (5-minute buckets, the last day) of the first customers' servers, the measured
        # customer's among them.
        sampled = [
            s
            for s in alive
            if s.owner_id in {c.pk for c in customers[: max(1, sizes["sample_servers"] // 10)]}
        ]
        sampled = sorted(sampled, key=lambda s: s.owner_id != world.customer.pk)[: sizes["sample_servers"]]
        step = UsageSample.FIVE_MINUTES
        latest = now - timedelta(seconds=now.timestamp() % step, microseconds=now.microsecond)
        per_server = sizes["samples_per_server"]
        samples = copy_rows(
            UsageSample,
            [
                "server",
                "resolution",
                "start",
                "rx_bytes",
                "tx_bytes",
                "cpu_ns",
                "rd_bytes",
                "wr_bytes",
                "vcpus",
            ],
            (
                (
                    s.id,
                    step,
                    (latest - timedelta(seconds=step * k)).isoformat(),
                    3_000_000 + 1000 * k,
                    9_000_000 + 7 * k,
                    60 * 10**9,
                    400_000 + k,
                    800_000 + k,
                    s.vcpus,
                )
                for s in sampled
                for k in range(per_server)
            ),
        )
        for user in (world.customer, world.staff, world.admin):
            world.tokens[user.pk] = ApiToken.issue(user, "bench")[1]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    world.seed_seconds = elapsed()
    sizes.update({"deleted_servers": deleted, "usage_samples": samples, "invoices": len(invoices)})
    log(
        f"scenario 3: seeded {len(customers)} customers, {len(world.hosts)} hosts, "
        f"{live} live + {deleted} deleted "
        f"servers, {samples} usage samples, {len(invoices)} invoices in {world.seed_seconds:.1f} s"
    )
    return world


# Measuring.

WEB_TARGET_MS = 100.0


def _pages(world: World) -> list[tuple[str, str, object, dict]]:
    """(label, url, user, extra headers) of every page and API list measured."""
    server, host = world.server, world.hosts[0]
    htmx = {"HTTP_HX_REQUEST": "true"}
    return [
        ("customer dashboard /servers/", "/servers/", world.customer, {}),
        ("  its live rows (htmx, every 3 s)", "/servers/", world.customer, htmx),
        ("server page /servers/<id>/", f"/servers/{server.pk}/", world.customer, {}),
        ("  its live status (htmx, polled)", f"/servers/{server.pk}/status/", world.customer, htmx),
        ("staff server list /staff/servers/", "/staff/servers/", world.staff, {}),
        ("  its live rows (htmx, every 5 s)", "/staff/servers/", world.staff, htmx),
        ("host list /staff/hosts/", "/staff/hosts/", world.admin, {}),
        ("admin host page /staff/hosts/<id>/", f"/staff/hosts/{host.pk}/", world.admin, {}),
        ("GET /api/v1/servers/", "/api/v1/servers/", world.customer, {}),
        ("GET /api/v1/admin/servers/", "/api/v1/admin/servers/", world.staff, {}),
        ("GET /api/v1/admin/hosts/", "/api/v1/admin/hosts/", world.admin, {}),
        ("GET /api/v1/admin/customers/", "/api/v1/admin/customers/", world.staff, {}),
        ("GET /api/v1/invoices/", "/api/v1/invoices/", world.customer, {}),
        ("GET /api/v1/plans/", "/api/v1/plans/", world.customer, {}),
    ]


def measure(world: World) -> tuple[Section, dict]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    requests = env_int("BENCH_REQUESTS", 30)
    warmups = env_int("BENCH_WARMUPS", 3)
    sizes = world.sizes
    section = Section(
        f"3. Pages and API at scale: {sizes['customers']} customers, {sizes['hosts']} hosts, "
        f"{sizes['servers']} "
        f"servers, {sizes['usage_samples']} usage samples, {sizes['invoices']} invoices "
        f"({requests} requests each after {warmups} warm-ups)"
    )
    section.note(f"seeded in {world.seed_seconds:.1f} s with bulk inserts")
    results = {}
    clients = {}
    for label, url, user, headers in _pages(world):
        api = url.startswith("/api/")
        key = (user.pk, api)
        if key not in clients:
            client = Client()
            if not api:
                client.force_login(user)
            clients[key] = client
        client = clients[key]
        if api:
            headers = {**headers, "HTTP_AUTHORIZATION": f"Bearer {world.tokens[user.pk]}"}
        for _ in range(warmups):
            client.get(url, **headers)
        timings, statuses = [], set()
        for _ in range(requests):
            start = time.perf_counter()
            response = client.get(url, **headers)
            timings.append((time.perf_counter() - start) * 1000)
            statuses.add(response.status_code)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, **headers)
        rows = _rows_shown(response, api)
        stats = summary(timings)
        met = stats["p95"] is not None and stats["p95"] < WEB_TARGET_MS and statuses == {200}
        section.add(
            label,
            f"{len(queries)} queries" + (f", {rows} rows" if rows is not None else ""),
            fmt_ms(stats["p50"]),
            fmt_ms(stats["p95"]),
            "p95 < 100 ms",
            met,
        )
        if statuses != {200}:
            section.note(f"{label}: HTTP {sorted(statuses)}")
        results[label.strip()] = {
            "url": url,
            "queries": len(queries),
            "rows": rows,
            "ms": stats,
            "statuses": sorted(statuses),
            "sql": [q["sql"][:300] for q in queries.captured_queries],
        }
        log(
            f"scenario 3: {label.strip()}: p50 {stats['p50']:.1f} ms, p95 {stats['p95']:.1f} ms, "
            f"{len(queries)} queries"
        )
    section.note(
        "query counts are pinned by tests/panel/test_main_pages_have_constant_query_counts.py (3 vs 30 rows)"
    )
    return section, {"sizes": sizes, "seed_s": world.seed_seconds, "pages": results}


def _rows_shown(response, api: bool) -> int | None:
    if api:
        try:
            body = response.json()
        except ValueError:
            return None
        if isinstance(body, dict) and isinstance(body.get("results"), list):
            return len(body["results"])
        return len(body) if isinstance(body, list) else None
    return response.content.count(b"<tr") - response.content.count(b"<thead") or None
