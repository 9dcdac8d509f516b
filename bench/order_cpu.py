"""What one API order costs in CPU: the web process (the whole request through Django's handler: middleware,
authentication, throttling, serializer, order_server, the answer) and the Postgres backend that served it,
plus the SQL statements it sent. CPU time, not wall-clock time, so that other load on the machine does not
blur it.

    BENCH_DATABASE_URL=postgres://…/name_bench BENCH_REDIS_URL=redis://127.0.0.1:6379/N \\
        .venv/bin/python -m bench.order_cpu [--orders 200] [--hosts 20] [--sql] [--profile] \\
        [--no-web] [--creates] [--worker N]

The database (its name must end in _bench) is created, migrated and dropped afterwards (BENCH_KEEP_DB=1
keeps it). Orders go through Django's test client with bearer tokens, on simulated hosts (libvirt's test
driver); their operations are sent to the broker on a queue of their own, which is purged at the end
(nothing consumes it; the invoice mails go to another queue, purged too). `measure()` may be called from
another scenario with a ready catalogue.

The worker's part of an order, the create: `--creates` runs as many creates in this process as a worker's
task runs them (operations.execute; CPU of this process and of its Postgres backend, statements, with
`--profile` the profile), and `--worker N` has a real prefork Celery worker of N processes carry out as
many, measuring its processes' CPU (its main process apart) and its Postgres backends'. Each measurement
orders for customers of its own.
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

from bench.common import process_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
MAIL_QUEUE = "bench-order-cpu-mail"


def _profiled(work, path: str) -> None:
    """Run `work()` under cProfile (CPU time) and write its statistics to `path`."""
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    work()
    profiler.disable()
    profiler.dump_stats(path)


@dataclass
class OrderCost:
    orders: int
    web_cpu_ms: float  # per order: time.process_time() of this process
    postgres_cpu_ms: float  # per order: utime + stime of the Postgres backend serving this process
    statements: float  # per order
    accepted: int
    sql: list[str]  # the statements of the last order


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

    client = Client()
    _post_orders(client, customers, 3, region, plan, image, f"{prefix}-warm")  # imports, caches, connection
    pid = _backend_pid()
    web, backend = time.process_time(), process_cpu_seconds(pid)
    accepted = _post_orders(client, customers, count, region, plan, image, prefix)
    web, backend = time.process_time() - web, process_cpu_seconds(pid) - backend
    if _backend_pid() != pid:
        print("warning: the database connection changed during the run", file=sys.stderr)
    with _StatementLog(connection) as queries:
        _post_orders(client, customers, count, region, plan, image, f"{prefix}-sql")
    if profile:
        prof = f"{prefix}-prof"
        _profiled(lambda: _post_orders(client, customers, count, region, plan, image, prof), profile)
    return OrderCost(
        orders=count,
        web_cpu_ms=web * 1000 / count,
        postgres_cpu_ms=backend * 1000 / count,
        statements=len(queries.sql) / count,
        accepted=accepted,
        sql=queries.sql[-round(len(queries.sql) / count) :],
    )


class _StatementLog:
    """The statements sent on a connection while the block runs, across requests (Django's test client
    empties `connection.queries` at every request's start, so CaptureQueriesContext counts none)."""

    def __init__(self, connection):
        self.connection = connection
        self.sql: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        self.sql.append(sql)
        return execute(sql, params, many, context)

    def __enter__(self) -> _StatementLog:
        self._wrapper = self.connection.execute_wrapper(self)
        self._wrapper.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self._wrapper.__exit__(*exc_info)


@dataclass
class CreateCost:
    creates: int
    cpu_ms: float  # per create: time.process_time() of this process running operations.execute
    postgres_cpu_ms: float  # per create: the Postgres backend serving this process
    statements: float  # per create
    succeeded: int
    sql: list[str]  # the statements of the last create


def _order_without_dispatch(customers, count: int, region: str, plan: str, image: str, prefix: str):
    """`count` orders placed in this process (not measured) whose operations are not sent to the broker;
    the ids of their create operations."""
    from billing.models import Plan
    from hypervisor.models import Image, Region
    from panel import dispatch
    from panel.models import Operation
    from panel.servers import actions

    plan_row, image_row = Plan.objects.get(slug=plan), Image.objects.get(slug=image)
    region_row = Region.objects.get(slug=region)
    original = dispatch.operation_after_commit
    dispatch.operation_after_commit = lambda *args, **kwargs: None
    try:
        servers = [
            actions.order_server(
                customers[i % len(customers)][0],
                name=f"{prefix}-{i}",
                plan=plan_row,
                image=image_row,
                region=region_row,
            )
            for i in range(count)
        ]
    finally:
        dispatch.operation_after_commit = original
    operations = Operation.objects.filter(server__in=servers, type=Operation.Type.CREATE)
    return [str(pk) for pk in operations.order_by("created_at").values_list("pk", flat=True)]


def measure_creates(
    customers,
    count: int,
    region: str,
    plan: str,
    image: str,
    prefix: str = "create",
    profile: str | None = None,
) -> CreateCost:
    """The worker's part of `count` orders, run in this process as a worker's task runs it
    (operations.execute): CPU of this process and of its Postgres backend; then as many again counting
    statements and, with `profile`, as many under cProfile (process time)."""
    from django.db import connection

    from panel.models import Operation
    from panel.servers import operations

    def run(ids: list[str]) -> None:
        for pk in ids:
            operations.execute(pk)

    run(_order_without_dispatch(customers, 3, region, plan, image, f"{prefix}-warm"))
    ids = _order_without_dispatch(customers, count, region, plan, image, prefix)
    pid = _backend_pid()
    cpu, backend = time.process_time(), process_cpu_seconds(pid)
    run(ids)
    cpu, backend = time.process_time() - cpu, process_cpu_seconds(pid) - backend
    succeeded = Operation.objects.filter(pk__in=ids, status=Operation.Status.SUCCEEDED).count()
    sql_ids = _order_without_dispatch(customers, count, region, plan, image, f"{prefix}-sql")
    with _StatementLog(connection) as queries:
        run(sql_ids)
    if profile:
        profile_ids = _order_without_dispatch(customers, count, region, plan, image, f"{prefix}-prof")
        _profiled(lambda: run(profile_ids), profile)
    return CreateCost(
        creates=count,
        cpu_ms=cpu * 1000 / count,
        postgres_cpu_ms=backend * 1000 / count,
        statements=len(queries.sql) / count,
        succeeded=succeeded,
        sql=queries.sql[-round(len(queries.sql) / count) :],
    )


@dataclass
class WorkerCost:
    creates: int
    processes: int
    worker_cpu_ms: float  # per create: the worker's main and pool processes (utime + stime), idle deducted
    main_cpu_ms: float  # per create: of which the main process (it takes the messages, acks, hands them on)
    postgres_cpu_ms: float  # per create: the worker's Postgres backends
    idle_cpu_ms_per_s: float  # the worker's CPU per second while idle (deducted above)
    succeeded: int


def _tree_and_backends(root: int) -> tuple[float, dict[int, float]]:
    """CPU seconds of the worker's process tree, and of each Postgres backend of this database but this
    process's own."""
    from django.db import connection

    from bench.provisioning import _tree_cpu

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        pids = [row[0] for row in cursor.fetchall()]
    backends = {}
    for pid in pids:
        try:
            backends[pid] = process_cpu_seconds(pid)
        except OSError:
            pass
    return _tree_cpu(root), backends


def measure_worker(
    env: dict[str, str], customers, count: int, region: str, plan: str, image: str, processes: int
) -> WorkerCost:
    """A real prefork Celery worker of `processes` processes (as the bench's cluster starts one) carries out
    `count` creates queued by API orders: the worker's CPU per create (its idle CPU over the run deducted)
    and that of its Postgres backends."""
    import subprocess

    from django.test import Client

    from bench.common import celery_worker, stop_processes
    from panel.celery import app
    from panel.models import Operation

    log_path = ROOT / "var" / "bench" / "logs" / "order-cpu-worker.log"
    out = open(log_path, "w")  # closed by stop_processes
    worker = subprocess.Popen(
        celery_worker("order-cpu@%h", processes, "-Q", env["CELERY_QUEUE"]),
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    worker.log = out
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start (see {log_path})")
        client = Client()
        finished = (Operation.Status.SUCCEEDED, Operation.Status.FAILED)

        def wait_for(prefix: str) -> int:
            creates = Operation.objects.filter(type=Operation.Type.CREATE, server__name__startswith=prefix)
            while creates.exclude(status__in=finished).exists():
                time.sleep(0.1)
            return creates.filter(status=Operation.Status.SUCCEEDED).count()

        _post_orders(client, customers, 3, region, plan, image, "worker-warm")
        wait_for("worker-warm-")
        time.sleep(1)
        idle_before = _tree_and_backends(worker.pid)[0]
        time.sleep(3)
        idle = (_tree_and_backends(worker.pid)[0] - idle_before) / 3
        tree, backends = _tree_and_backends(worker.pid)
        main = process_cpu_seconds(worker.pid)
        started = time.monotonic()
        _post_orders(client, customers, count, region, plan, image, "worker-run")
        succeeded = wait_for("worker-run-")
        elapsed = time.monotonic() - started
        tree_after, backends_after = _tree_and_backends(worker.pid)
        main = process_cpu_seconds(worker.pid) - main
        postgres = sum(cpu - backends.get(pid, 0.0) for pid, cpu in backends_after.items())
    finally:
        stop_processes([worker])
    return WorkerCost(
        creates=count,
        processes=processes,
        worker_cpu_ms=(tree_after - tree - idle * elapsed) * 1000 / count,
        main_cpu_ms=main * 1000 / count,
        postgres_cpu_ms=postgres * 1000 / count,
        idle_cpu_ms_per_s=idle * 1000,
        succeeded=succeeded,
    )


def _purge() -> None:
    """Empty the queues of the operations and of the invoice mails."""
    from django.conf import settings

    from bench.common import purge_queues

    purge_queues(settings.CELERY_TASK_DEFAULT_QUEUE, MAIL_QUEUE)


def _drop_queued() -> None:
    """Forget the operations the measured orders sent (nothing consumed them): their messages are purged and
    the operations closed, so that they are not heavy operations ahead of the next measurement's creates on
    their hosts."""
    from django.utils import timezone

    from panel.models import Operation
    from panel.servers import operation_states

    _purge()
    Operation.objects.filter(status__in=operation_states.OPEN).update(
        status=Operation.Status.FAILED, finished_at=timezone.now(), error="not carried out (benchmark)"
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


def _report(title: str, cost, sql: bool, profile_path: str | None) -> None:
    print(f"== {title}")
    print(json.dumps({key: value for key, value in asdict(cost).items() if key != "sql"}, indent=2))
    if sql:
        print("\n".join(cost.sql))
    if profile_path:
        stats = pstats.Stats(profile_path)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(60)
        stats.print_stats(r"/(panel|hypervisor|billing)/", 50)  # the project's own functions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--sql", action="store_true", help="print the statements of one order")
    parser.add_argument("--profile", action="store_true", help="print the top functions (process time)")
    parser.add_argument("--no-web", action="store_true", help="leave out the web orders' measurement")
    parser.add_argument(
        "--creates",
        action="store_true",
        help="also the worker's part, run in this process (operations.execute)",
    )
    parser.add_argument(
        "--worker",
        type=int,
        default=0,
        metavar="N",
        help="also the CPU of a real prefork Celery worker of N processes carrying out the creates",
    )
    args = parser.parse_args()
    if args.no_web and not (args.creates or args.worker):
        parser.error("--no-web leaves nothing to measure without --creates or --worker")

    from bench import run

    env = run.configure_environment()
    os.environ["CELERY_QUEUE"] = env["CELERY_QUEUE"] = "bench-order-cpu"
    # The invoice mails (a PDF each) go to a queue of their own that nothing consumes here, as the bench's
    # cluster sends them to its low-priority mail worker: the measured worker carries out creates only.
    os.environ["INVOICE_MAIL_QUEUE"] = env["INVOICE_MAIL_QUEUE"] = MAIL_QUEUE
    run.create_database(env["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    run.quiet_this_process()

    workdir = Path(tempfile.mkdtemp(prefix="order-cpu-"))
    profile_path = str(workdir / "orders.prof") if args.profile else None
    try:
        # Each measurement orders for customers of its own (at most 5 servers each: see seed).
        runs = (not args.no_web) + args.creates + (args.worker > 0)
        customers, region, plan, image = seed(workdir, args.hosts, args.orders * runs)
        share = len(customers) // runs
        groups = [customers[k * share : (k + 1) * share] for k in range(runs)]
        if not args.no_web:
            cost = measure(groups.pop(0), args.orders, region, plan, image, profile=profile_path)
            _report("orders (web)", cost, args.sql, profile_path)
            _drop_queued()
        if args.creates:
            create_profile = str(workdir / "creates.prof") if args.profile else None
            creates = measure_creates(groups.pop(0), args.orders, region, plan, image, profile=create_profile)
            _report("creates (worker's part, in this process)", creates, args.sql, create_profile)
        if args.worker:
            worker = measure_worker(env, groups.pop(0), args.orders, region, plan, image, args.worker)
            _report("creates (a real Celery worker)", worker, False, None)
    finally:
        from django.db import connections

        _purge()
        connections.close_all()
        shutil.rmtree(workdir, ignore_errors=True)
        if os.environ.get("BENCH_KEEP_DB", "") in ("", "0"):
            run.drop_database(env["DATABASE_URL"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
