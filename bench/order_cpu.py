"""What one API order costs in CPU: the web process (the whole request through Django's handler: middleware,
authentication, throttling, serializer, order_server, the answer) and the Postgres backend that served it,
plus the SQL statements it sent. CPU time, not wall-clock time, so that other load on the machine does not
blur it.

    BENCH_DATABASE_URL=postgres://…/name_bench BENCH_REDIS_URL=redis://127.0.0.1:6379/N \\
        .venv/bin/python -m bench.order_cpu [--orders 200] [--hosts 20] [--sql] [--profile]

The database (its name must end in _bench) is created, migrated and dropped afterwards (BENCH_KEEP_DB=1
keeps it). Orders go through Django's test client with bearer tokens, on simulated hosts (libvirt's test
driver); their operations are sent to the broker on a queue of their own, which is purged at the end
(nothing consumes it). `measure()` may be called from another scenario with a ready catalogue.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class OrderCost:
    orders: int
    web_cpu_ms: float  # per order: time.process_time() of this process
    postgres_cpu_ms: float  # per order: utime + stime of the Postgres backend serving this process
    statements: float  # per order
    accepted: int
    sql: list[str]  # the statements of the last order


def _backend_cpu_seconds(pid: int) -> float:
    """utime + stime of a Postgres backend (this machine's /proc; the server must run here)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _post_orders(client, customers, count: int, region: str, plan: str, image: str, prefix: str) -> int:
    accepted = 0
    for i in range(count):
        _user, token = customers[i % len(customers)]
        response = client.post(
            "/api/v1/servers/",
            data=json.dumps({"name": f"{prefix}-{i}", "plan": plan, "image": image, "region": region}),
            content_type="application/json",
            secure=True,  # as behind the TLS-terminating proxy production runs behind
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        if response.status_code == 202:
            accepted += 1
        elif accepted == 0 and i == 0:
            print(f"order refused: {response.status_code} {response.content[:300]!r}", file=sys.stderr)
    return accepted


def measure(
    customers, count: int, region: str, plan: str, image: str, prefix: str = "cpu", profile: str | None = None
) -> OrderCost:
    """`count` API orders, measured; then as many again counting statements (the capture costs CPU of its
    own) and, with `profile`, as many under cProfile (process time), whose stats are written there."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    _post_orders(client, customers, 3, region, plan, image, f"{prefix}-warm")  # imports, caches, connection
    pid = _backend_pid()
    web, backend = time.process_time(), _backend_cpu_seconds(pid)
    accepted = _post_orders(client, customers, count, region, plan, image, prefix)
    web, backend = time.process_time() - web, _backend_cpu_seconds(pid) - backend
    if _backend_pid() != pid:
        print("warning: the database connection changed during the run", file=sys.stderr)
    with CaptureQueriesContext(connection) as queries:
        _post_orders(client, customers, count, region, plan, image, f"{prefix}-sql")
    if profile:
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        _post_orders(client, customers, count, region, plan, image, f"{prefix}-prof")
        profiler.disable()
        profiler.dump_stats(profile)
    return OrderCost(
        orders=count,
        web_cpu_ms=web * 1000 / count,
        postgres_cpu_ms=backend * 1000 / count,
        statements=len(queries) / count,
        accepted=accepted,
        sql=[query["sql"] for query in queries.captured_queries[-round(len(queries) / count) :]],
    )


def seed(workdir: Path, hosts_count: int, orders: int):
    """A region with simulated hosts and an IPv4 pool, a plan, an image, and customers with tokens (each
    orders at most 5 servers of the default quota's 10)."""
    from bench.provisioning import _catalog, _customers, _ready, node_uri
    from hypervisor import hosts

    region, plan, image = _catalog("cpu-sim", "cpu-small", 128, orders * 3 + 40)
    for n in range(hosts_count):
        host = hosts.register_host(f"cpu-{n:03d}", node_uri(workdir, f"cpu-{n:03d}"), region)
        hosts.probe_host(host.pk)
        _ready(host.pk)
    customers = _customers(math.ceil((orders * 3 + 10) / 5), "cpu")
    return customers, region.slug, plan.slug, image.slug


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--sql", action="store_true", help="print the statements of one order")
    parser.add_argument("--profile", action="store_true", help="print the top functions (process time)")
    args = parser.parse_args()

    from bench import run

    env = run.configure_environment()
    os.environ["CELERY_QUEUE"] = env["CELERY_QUEUE"] = "bench-order-cpu"
    run.create_database(env["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    run.quiet_this_process()
    from panel.celery import app

    workdir = Path(tempfile.mkdtemp(prefix="order-cpu-"))
    profile_path = str(workdir / "orders.prof") if args.profile else None
    try:
        customers, region, plan, image = seed(workdir, args.hosts, args.orders)
        cost = measure(customers, args.orders, region, plan, image, profile=profile_path)
        summary = {key: value for key, value in asdict(cost).items() if key != "sql"}
        print(json.dumps(summary, indent=2))
        if args.sql:
            print("\n".join(cost.sql))
        if profile_path:
            stats = pstats.Stats(profile_path)
            stats.sort_stats("tottime").print_stats(30)
            stats.sort_stats("cumulative").print_stats(60)
    finally:
        from django.db import connections

        app.control.purge()
        connections.close_all()
        shutil.rmtree(workdir, ignore_errors=True)
        if os.environ.get("BENCH_KEEP_DB", "") in ("", "0"):
            run.drop_database(env["DATABASE_URL"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
