"""Scenarios 1 and 2: orders through the REST API (gunicorn), carried out by a real Celery worker (prefork),
on simulated hosts (libvirt's test driver) and on the local real libvirtd, each against a baseline of the
same libvirt work made directly with libvirt-python."""

from __future__ import annotations

import http.client
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from .common import (
    Section,
    celery_worker,
    env_int,
    fmt_ms,
    fmt_rate,
    fmt_s,
    log,
    percentile,
    purge_queues,
    stop_processes,
    summary,
    unusable_password,
)
from .rawlibvirt import Job

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "var" / "bench" / "logs"
MAIL_QUEUE = "bench-mail"  # the low-priority invoice-mail worker's queue (INVOICE_MAIL_QUEUE, run.py)


def node_uri(directory: Path, name: str, cores: int = 64, memory_mib: int = 262144) -> str:
    """A test:///… URI of a simulated host of its own (a node file, as the tests make them)."""
    from tests.factories import node_uri as make_node

    return make_node(directory, cores=cores, memory_mib=memory_mib, name=f"{name}.xml")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """The web server and a Celery worker as the project ships them (the Dockerfile's and docker-compose.yml's
    commands: gunicorn with panel/gunicorn_conf.py, sized from the CPU count, and a prefork worker with one
    process per CPU), started for the benchmark and stopped after it. Simulated hosts live inside each worker
    process: each has its own."""

    def __init__(self, env: dict[str, str], workdir: Path):
        from panel.gunicorn_conf import sized_workers

        self.port = _free_port()
        # BENCH_WEB_WORKERS, BENCH_WEB_THREADS and BENCH_WORKERS try other sizes; unset, the shipped ones.
        self.env = {
            **env,
            "BIND": f"127.0.0.1:{self.port}",
            "WEB_WORKERS": os.environ.get("BENCH_WEB_WORKERS", ""),
            "WEB_THREADS": os.environ.get("BENCH_WEB_THREADS", ""),
        }
        self.workdir = workdir
        self.processes: list[subprocess.Popen] = []
        self.web_workers = env_int("BENCH_WEB_WORKERS", sized_workers())
        self.web_threads = env_int("BENCH_WEB_THREADS", 2)
        self.workers = env_int("BENCH_WORKERS", os.cpu_count() or 1)  # the worker's processes
        self._mail_workers = 1

    def _start(self, name: str, command: list[str]) -> None:
        out = open(LOGS / f"{name}.log", "w")  # closed in __exit__, with the process
        process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        process.log = out
        self.processes.append(process)

    def __enter__(self) -> Cluster:
        try:
            self._start_all()
        except BaseException:
            self.__exit__(None, None, None)  # stop whatever did start
            raise
        return self

    def _start_all(self) -> None:
        from panel.celery import app

        app.control.purge()
        bin_dir = Path(sys.executable).parent
        self._start(
            "gunicorn",
            [
                str(bin_dir / "gunicorn"),
                "-c",
                "python:panel.gunicorn_conf",
                "panel.wsgi",
            ],
        )
        self._start("worker", celery_worker("bench@%h", self.workers))
        self._start_mail_worker()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status = self.request("GET", "/api/v1/plans/")[0]
            except OSError:
                status = 0
            if status == 401:
                break
            self._check_alive()
            time.sleep(0.2)
        else:
            raise RuntimeError("gunicorn did not answer within 60 s (see var/bench/logs/gunicorn.log)")
        while time.monotonic() < deadline:
            if len(app.control.ping(timeout=0.5)) >= 2:
                break
            self._check_alive()
        else:
            raise RuntimeError("the Celery workers did not answer within 60 s (see var/bench/logs/)")
        log(
            f"web server on port {self.port} ({self.web_workers} gthread workers x {self.web_threads} "
            f"threads, panel/gunicorn_conf.py) and a Celery worker of {self.workers} processes are up"
        )

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system, this machine's /proc) used so far by the web server's processes, the
        worker's processes and every Postgres process (the server must run on this machine)."""
        return {
            "web": _tree_cpu(self.processes[0].pid),
            "worker": _tree_cpu(self.processes[1].pid),
            "mail": _tree_cpu(self.processes[2].pid),
            "postgres": _postgres_cpu(),
        }

    def drop_mails(self) -> None:
        """Drop the invoice mails queued so far (a billing run's, or a manual invoice's; a new server's is
        left to beat's sweep, which this cluster does not run): stop the mail worker (a warm shutdown hands
        back what it held), empty its queue and start a new one, so that a scenario's PDFs are not rendered
        under the next one's measurements."""
        mail = self.processes.pop(2)
        stop_processes([mail])
        purge_queues(MAIL_QUEUE)
        self._mail_workers += 1
        self._start_mail_worker()
        self.processes.insert(2, self.processes.pop())

    def _start_mail_worker(self) -> None:
        # The invoice mails' worker, at the lowest CPU priority as in docker-compose.
        mail_worker = celery_worker(f"bench-mail-{self._mail_workers}@%h", 1, "-Q", MAIL_QUEUE)
        self._start(f"worker-mail-{self._mail_workers}", ["nice", "-n", "19", *mail_worker])

    def _check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{process.args[0]} exited with {process.returncode} (see var/bench/logs/)"
                )

    def __exit__(self, *exc_info) -> None:
        stop_processes(self.processes)
        purge_queues(MAIL_QUEUE)  # the mails the last scenario's orders left waiting
        log("web server and workers stopped")

    def request(self, method: str, path: str, body: dict | None = None, token: str = "", conn=None):
        """(status, parsed body) of one API request; `conn` reuses a keep-alive connection."""
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            if own:
                conn.close()
        try:
            return response.status, json.loads(data or b"null")
        except ValueError:
            return response.status, None


def _proc_stats() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command name, utime + stime in seconds) of every process."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        stats[int(entry.name)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / ticks)
    return stats


def _tree_cpu(root: int) -> float:
    """CPU seconds of a process and its descendants alive now."""
    stats = _proc_stats()
    children: dict[int, list[int]] = {}
    for pid, (parent, _name, _cpu) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, (0, "", 0.0))[2]
        todo += children.get(pid, [])
    return total


def _postgres_cpu() -> float:
    return sum(cpu for _parent, name, cpu in _proc_stats().values() if name == "postgres")


# Catalogue rows shared by both scenarios.


def _catalog(region_slug: str, plan_slug: str, memory_mib: int, pool_size: int):
    from billing.models import Plan
    from hypervisor import ipam
    from hypervisor.models import Image, Region

    region = Region.objects.create(slug=region_slug, name=region_slug)
    plan = Plan.objects.create(
        slug=plan_slug,
        name=plan_slug,
        vcpus=1,
        memory_mib=memory_mib,
        disk_gib=1,
        transfer_gib=1000,
        price_monthly=Decimal("50000"),
        price_hourly=Decimal("75"),
    )
    image, _ = Image.objects.get_or_create(
        slug="blank", defaults={"name": "Blank disk", "os_family": "other"}
    )
    prefix = max(16, min(24, 32 - math.ceil(math.log2(pool_size + 8))))
    second = {"bench-sim": 64, "bench-kvm": 65}.get(region_slug, 66)
    ipam.create_pool(region, region_slug, f"10.{second}.0.0/{prefix}", f"10.{second}.0.1", ["192.0.2.53"])
    return region, plan, image


def _customers(count: int, tag: str) -> list[tuple[object, str]]:
    """Customers with API tokens (no password hashing: they only use tokens)."""
    from panel.models import ApiToken, User

    users = User.objects.bulk_create(
        User(
            email=f"{tag}{i}@bench.example", username=f"{tag}{i}@bench.example", password=unusable_password()
        )
        for i in range(count)
    )
    return [(user, ApiToken.issue(user, "bench")[1]) for user in users]


def _ready(host_id: int, **sizes) -> None:
    from hypervisor.models import Host

    values = dict(
        vcpus_total=64,
        memory_mib_total=262144,
        disk_gib_total=10000,
        reserved_vcpus=0,
        reserved_memory_mib=0,
        reserved_disk_gib=0,
        cpu_allocation_ratio=Decimal("4"),
        ram_allocation_ratio=Decimal("1"),
        disk_allocation_ratio=Decimal("1"),
    )
    values.update(sizes)
    Host.objects.filter(pk=host_id).update(**values)


@dataclass
class Order:
    index: int
    sent: float  # time.time() when the request went out
    answered: float
    status: int
    server_id: str | None
    error: str = ""


def _place_orders(cluster: Cluster, customers, count: int, clients: int, region: str, plan: str, prefix: str):
    """`count` orders from `clients` concurrent API clients (each with keep-alive connection of its own and
    customers of its own, so that no two clients wait on the same customer's row lock)."""
    orders: list[Order] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=120)
        barrier.wait()
        for i in range(k, count, clients):
            _user, token = customers[i % len(customers)]
            body = {"name": f"{prefix}-{i}", "plan": plan, "image": "blank", "region": region}
            sent = time.time()
            try:
                status, data = cluster.request("POST", "/api/v1/servers/", body, token, conn=conn)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=120)
                status, data = 0, {"error": {"message": str(exc)}}
            answered = time.time()
            server_id = data.get("id") if status == 202 and isinstance(data, dict) else None
            error = "" if server_id else json.dumps(data)[:300]
            with lock:
                orders.append(Order(i, sent, answered, status, server_id, error))
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(orders, key=lambda o: o.index)


def _wait_for_operations(server_ids: list[str], timeout: float) -> bool:
    from panel.models import Operation

    deadline = time.monotonic() + timeout
    finished = Operation.Status.SUCCEEDED, Operation.Status.FAILED
    creates = Operation.objects.filter(server_id__in=server_ids, type=Operation.Type.CREATE)
    while time.monotonic() < deadline:
        if creates.filter(status__in=finished).count() >= len(server_ids):
            return True
        time.sleep(0.25)
    return False


def _poll_until_running(cluster: Cluster, server_id: str, token: str, timeout: float) -> float | None:
    """time.time() when GET /api/v1/servers/{id}/ first says running, polled every BENCH_POLL_MS (20 ms)
    on a keep-alive connection of its own, as a client of the API sees it; None when it says error (or
    never running within `timeout` seconds)."""
    interval = env_int("BENCH_POLL_MS", 20) / 1000
    conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=60)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            status, data = cluster.request("GET", f"/api/v1/servers/{server_id}/", token=token, conn=conn)
            seen = time.time()
            state = data.get("status") if status == 200 and isinstance(data, dict) else None
            if state == "running":
                return seen
            if state == "error":
                return None
            time.sleep(interval)
    finally:
        conn.close()
    return None


def _outcomes(server_ids: list[str]) -> list[dict]:
    """Per server: its creation time, its create operation's times and status."""
    from panel.models import Operation

    rows = Operation.objects.filter(server_id__in=server_ids, type=Operation.Type.CREATE).values(
        "server_id",
        "server__created_at",
        "server__status",
        "created_at",
        "started_at",
        "finished_at",
        "status",
        "error",
    )
    return list(rows)


STAGES = {
    "request": "the order's request until the server's row is made",
    "queue": "server row made until a worker begins its create (commit, broker, worker)",
    "create": "the worker's create",
    "answer": "create finished until the API first says running (polling)",
}


def _stages(sent: float, seen: float, outcome: dict) -> dict[str, float]:
    """One order's time split into STAGES, in ms, from the bench's clock (request sent, API seen running)
    and the database's times (server created, create started and finished; the same machine's clock)."""
    created = outcome["server__created_at"].timestamp()
    started, finished = outcome["started_at"].timestamp(), outcome["finished_at"].timestamp()
    return {
        "request": (created - sent) * 1000,
        "queue": (started - created) * 1000,
        "create": (finished - started) * 1000,
        "answer": (seen - finished) * 1000,
    }


def _mail_cpu_ms(server_ids: list[str]) -> float:
    """CPU milliseconds of this process per invoice mail (its PDF rendered, the mail kept in memory: the
    bench's process has the locmem backend), over the first invoices of these servers' subscriptions, sent
    in one call of invoice_mail.send (the mail worker's task calls it once per invoice)."""
    from billing import invoice_mail
    from billing.models import Invoice, InvoiceLine

    references = [str(server_id) for server_id in server_ids]  # a server's subscription: its id
    lines = InvoiceLine.objects.filter(subscription__reference__in=references)
    invoices = sorted(set(lines.values_list("invoice_id", flat=True)))
    if not invoices:
        return 0.0
    from django.core import mail

    invoice_mail.send(invoices[:1])  # fonts and templates loaded once, as in a worker that has mailed before
    Invoice.objects.filter(pk__in=invoices).update(mailed_at=None)  # each measured one mailed, the first too
    started = time.process_time()
    sent = invoice_mail.send(invoices)
    elapsed = time.process_time() - started
    mail.outbox = []
    return elapsed * 1000 / max(sent, 1)


def _seconds(later, earlier) -> float | None:
    return (later - earlier).total_seconds() if later and earlier else None


def _jobs(servers, seeds: bool) -> list[Job]:
    """The baseline's work for these servers: the XML documents the panel's own code makes."""
    from hypervisor import driver, network_filter
    from hypervisor.xml.storage import GIB, Volume
    from panel.servers import guest

    jobs = []
    for server in servers:
        host = server.host
        request = guest.domain_request(server)
        pool_path = _pool_path(host)
        disk_path = f"{pool_path}/{request.volume_name}"
        seed_path = f"{pool_path}/{request.seed_volume_name}"
        seed = guest.seed_iso(server)
        jobs.append(
            Job(
                uri=host.uri,
                uuid=str(server.id),
                pool=host.storage_pool,
                disk_xml=Volume(request.volume_name, request.disk_gib * GIB).to_xml(),
                seed_xml=Volume(request.seed_volume_name, len(seed), format="raw").to_xml(),
                domain_xml=driver.domain_xml(host, request, disk_path, seed_path),
                seed=seed if seeds else b"",
                # The panel defines the server's filters before its domain on a real host; so does the twin.
                filters=tuple(item.to_xml() for item in network_filter.filters(request.network_filter))
                if request.network_filter is not None and host.transport != "test"
                else (),
            )
        )
    return jobs


_pool_paths: dict[str, str] = {}


def _pool_path(host) -> str:
    if host.uri.startswith("test:"):
        return "/var/lib/libvirt/images"
    if host.uri not in _pool_paths:
        import libvirt

        from hypervisor.xml.storage import pool_target_path

        conn = libvirt.open(host.uri)
        try:
            xml = conn.storagePoolLookupByName(host.storage_pool).XMLDesc(0)
        finally:
            conn.close()
        _pool_paths[host.uri] = pool_target_path(xml) or "/var/lib/libvirt/images"
    return _pool_paths[host.uri]


# Scenario 1.


def simulated(cluster: Cluster, workdir: Path) -> tuple[Section, dict]:
    from django.conf import settings

    from hypervisor import hosts
    from panel.models import Server

    count = env_int("BENCH_ORDERS", 1000)
    host_count = env_int("BENCH_HOSTS", 50)
    clients = env_int("BENCH_CLIENTS", 16)
    section = Section(
        f"1. Provisioning on simulated hosts: {count} API orders from {clients} clients, {host_count} "
        f"test-driver hosts, {cluster.workers} Celery worker processes"
    )
    region, plan, _image = _catalog(
        "bench-sim", "bench-small", 128, count + 13 + env_int("BENCH_PROFILE_ORDERS", 30)
    )
    nodes = workdir / "sim-nodes"
    nodes.mkdir()
    for n in range(host_count):
        host = hosts.register_host(f"sim-{n:03d}", node_uri(nodes, f"sim-{n:03d}"), region)
        hosts.probe_host(host.pk)
        _ready(host.pk)
    # The default quota allows 10 servers: 5 orders each; a multiple of the client count, so that each
    # client orders for customers of its own.
    customers = _customers(clients * math.ceil(math.ceil(count / 5) / clients), "sim")
    log(f"scenario 1: {host_count} simulated hosts probed, {len(customers)} customers; ordering {count}")

    # One client first, one order at a time: what an order costs without waiting for other orders.
    solo = _place_orders(cluster, _customers(3, "solo"), 13, 1, region.slug, plan.slug, "solo")
    _wait_for_operations([o.server_id for o in solo if o.server_id], timeout=120)
    solo_ms = summary([(o.answered - o.sent) * 1000 for o in solo[3:] if o.server_id])  # after 3 warm-ups

    cpu_before = cluster.cpu_seconds()
    orders = _place_orders(cluster, customers, count, clients, region.slug, plan.slug, "sim")
    accepted = [o for o in orders if o.server_id]
    refused = [o for o in orders if not o.server_id]
    ids = [o.server_id for o in accepted]
    done = _wait_for_operations(ids, timeout=max(300.0, count * 1.0))
    cpu_after = cluster.cpu_seconds()
    cpu_ms = {
        role: (cpu_after[role] - cpu_before[role]) * 1000 / max(len(accepted), 1) for role in cpu_before
    }
    # The mail worker's CPU in the window (besides the target's sum): a new server's invoice mail is handed on
    # by beat's sweep INVOICE_MAIL_DELAY_SECONDS later (this cluster runs no beat), so what one costs is
    # measured apart (_mail_cpu_ms).
    mail_window_ms = cpu_ms.pop("mail")
    delay = settings.INVOICE_MAIL_DELAY_SECONDS
    mail_ms = _mail_cpu_ms(ids[:20])
    outcomes = _outcomes(ids)
    running = [
        r for r in outcomes if r["status"] == "succeeded" and r["server__status"] == Server.Status.RUNNING
    ]
    failed = [r for r in outcomes if r["status"] == "failed"]
    log(
        f"scenario 1: {len(accepted)} accepted, {len(running)} running, {len(failed)} failed "
        f"(all done: {done})"
    )

    accept_wall = max(o.answered for o in orders) - min(o.sent for o in orders)
    api_ms = [(o.answered - o.sent) * 1000 for o in accepted]
    first_created = min((r["server__created_at"] for r in running), default=None)
    last_finished = max((r["finished_at"] for r in running), default=None)
    running_wall = _seconds(last_finished, first_created)
    latency = [_seconds(r["finished_at"], r["server__created_at"]) for r in running]
    queued = [_seconds(r["started_at"], r["created_at"]) for r in running]
    execution = [_seconds(r["finished_at"], r["started_at"]) for r in running]
    accepted_rate = len(accepted) / accept_wall if accept_wall else None
    running_rate = len(running) / running_wall if running_wall else None

    # The baseline: the same creates (volumes, define, start) straight through libvirt-python, in as many
    # processes as there are workers, each with simulated hosts of its own.
    from .rawlibvirt import run_in_processes

    servers = list(Server.objects.filter(id__in=ids).select_related("host", "image"))
    for server in servers:  # the same hostnames and UUIDs, on the same host files
        server.__dict__["ip_addresses"] = list(server.ip_addresses)
    jobs = _jobs(servers, seeds=False)
    raw, raw_wall = run_in_processes(jobs, cluster.workers)
    raw_ms = [t.total * 1000 for t in raw]
    raw_ds_ms = [t.define_start * 1000 for t in raw]
    raw_rate = len(raw) / raw_wall if raw_wall else None
    exec_p50 = summary([e * 1000 for e in execution])["p50"]
    raw_p50 = summary(raw_ms)["p50"]

    lat = summary(latency)
    section.add("orders accepted per second (API, 202)", fmt_rate(accepted_rate))
    cpu_total = sum(cpu_ms.values())
    section.add(
        "CPU per order: web + worker + Postgres (from /proc over the run)",
        f"{cpu_ms['web']:.1f} + {cpu_ms['worker']:.1f} + {cpu_ms['postgres']:.1f} = {cpu_total:.1f} ms",
        target="≤ 20 ms",
        met=cpu_total <= 20,
    )
    section.add(
        f"  besides: an order's invoice mail (its PDF), {delay} s later (beat) by the nice-19 mail worker",
        f"{mail_ms:.1f} ms an order",
    )
    section.add("  besides: the mail worker's CPU within the run", f"{mail_window_ms:.1f} ms an order")
    a = summary(api_ms)
    section.add(
        f"order request latency (API, {clients} clients)",
        f"{len(accepted)} orders",
        fmt_ms(a["p50"]),
        fmt_ms(a["p95"]),
    )
    section.add(
        "order request latency (API, one client, one at a time)",
        f"{solo_ms['count']} orders",
        fmt_ms(solo_ms["p50"]),
        fmt_ms(solo_ms["p95"]),
    )
    section.add(
        "servers reaching running per second",
        fmt_rate(running_rate),
        target="≥ 50/s",
        met=running_rate is not None and running_rate >= 50,
    )
    section.add("order-to-running latency", f"{len(running)} running", fmt_s(lat["p50"]), fmt_s(lat["p95"]))
    q = summary(queued)
    section.add("  of which waiting in the queue", "", fmt_s(q["p50"]), fmt_s(q["p95"]))
    e = summary(execution)
    section.add(
        "  of which the worker's create",
        "",
        fmt_ms(e["p50"] and e["p50"] * 1000),
        fmt_ms(e["p95"] and e["p95"] * 1000),
    )
    r = summary(raw_ms)
    section.add(
        f"baseline: libvirt-python volumes+define+start ({cluster.workers} processes)",
        fmt_rate(raw_rate),
        fmt_ms(r["p50"]),
        fmt_ms(r["p95"]),
    )
    d = summary(raw_ds_ms)
    section.add("baseline: define+start alone", "", fmt_ms(d["p50"]), fmt_ms(d["p95"]))
    throughput_ratio = raw_rate / running_rate if raw_rate and running_rate else None
    per_server_ratio = exec_p50 / raw_p50 if exec_p50 and raw_p50 else None
    section.add("control-plane overhead: throughput (raw/s ÷ panel/s)", _ratio(throughput_ratio))
    section.add("control-plane overhead: per create (worker p50 ÷ raw p50)", _ratio(per_server_ratio))
    profile = _profile_orders(region, plan, _image)
    cluster.drop_mails()  # this scenario's invoice mails are not rendered under the next one's measurements
    section.add(
        "SQL queries per order (order_server) / per create (worker)",
        f"{profile['queries_per_order']:.0f} / {profile['queries_per_create']:.0f}",
        fmt_ms(profile["order_ms"]),
        fmt_ms(profile["create_ms"]),
    )
    section.note(
        "the row above: queries, then in-process milliseconds per order and per create (mean of "
        f"{profile['orders']}, under the profiler) in the p50 and p95 columns"
    )
    if refused:
        section.note(f"{len(refused)} orders refused, first: HTTP {refused[0].status} {refused[0].error}")
    if failed:
        section.note(f"{len(failed)} creates failed, first: {failed[0]['error'][:200]}")
    if not done:
        section.note("not every create finished before the time limit")
    section.note(
        "the simulated host answers in microseconds, so this measures the control plane itself: API, "
        "placement/claim/IPAM/billing transaction, broker, worker bookkeeping, seed ISO, libvirt calls"
    )
    data = {
        "orders": count,
        "hosts": host_count,
        "clients": clients,
        "workers": cluster.workers,
        "accepted": len(accepted),
        "refused": len(refused),
        "running": len(running),
        "failed": len(failed),
        "accepted_per_s": accepted_rate,
        "cpu_ms_per_order": cpu_ms,
        "invoice_mail_cpu_ms_each": mail_ms,
        "mail_worker_cpu_ms_per_order_in_run": mail_window_ms,
        "accept_wall_s": accept_wall,
        "api_latency_ms": a,
        "running_per_s": running_rate,
        "running_wall_s": running_wall,
        "order_to_running_s": lat,
        "queue_wait_s": q,
        "worker_create_s": e,
        "raw_ms": r,
        "raw_define_start_ms": d,
        "raw_per_s": raw_rate,
        "raw_wall_s": raw_wall,
        "overhead_throughput": throughput_ratio,
        "overhead_per_create": per_server_ratio,
        "first_failure": failed[0]["error"] if failed else "",
        "solo_api_latency_ms": solo_ms,
        "profile": profile,
    }
    return section, data


def _profile_orders(region, plan, image) -> dict:
    """Orders placed and carried out in this process, under the profiler and counting SQL queries: where
    an order's and a create's time goes. The creates run here, not on the workers (dispatch is switched
    off in this process for the duration)."""
    import cProfile

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from panel import dispatch
    from panel.models import Operation
    from panel.servers import actions, operations

    from .periodic import _profile_text

    count = env_int("BENCH_PROFILE_ORDERS", 30)
    customers = _customers(math.ceil(count / 5), "prof")
    original = dispatch.operation_after_commit
    dispatch.operation_after_commit = lambda *args, **kwargs: None
    try:
        order_profile = cProfile.Profile()
        with CaptureQueriesContext(connection) as order_queries:
            start = time.perf_counter()
            order_profile.enable()
            servers = [
                actions.order_server(
                    customers[i % len(customers)][0], name=f"prof-{i}", plan=plan, image=image, region=region
                )
                for i in range(count)
            ]
            order_profile.disable()
            order_s = time.perf_counter() - start
        creates = list(
            Operation.objects.filter(server__in=servers, type=Operation.Type.CREATE).values_list(
                "pk", flat=True
            )
        )
        create_profile = cProfile.Profile()
        with CaptureQueriesContext(connection) as create_queries:
            start = time.perf_counter()
            create_profile.enable()
            for pk in creates:
                operations.execute(str(pk))
            create_profile.disable()
            create_s = time.perf_counter() - start
    finally:
        dispatch.operation_after_commit = original
    order_text, order_top = _profile_text(order_profile)
    create_text, create_top = _profile_text(create_profile)
    per_order, per_create = len(order_queries) // count, len(create_queries) // max(len(creates), 1)
    return {
        "orders": count,
        "queries_per_order": len(order_queries) / count,
        "queries_per_create": len(create_queries) / max(len(creates), 1),
        "order_ms": order_s * 1000 / count,
        "create_ms": create_s * 1000 / max(len(creates), 1),
        "order_sql": [q["sql"][:200] for q in order_queries.captured_queries[:per_order]],
        "create_sql": [q["sql"][:200] for q in create_queries.captured_queries[:per_create]],
        "order_profile": {"top_own_time": order_text, "top_project_cumulative": order_top},
        "create_profile": {"top_own_time": create_text, "top_project_cumulative": create_top},
    }


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


# Scenario 2.


def kvm(cluster: Cluster, workdir: Path) -> tuple[Section, dict]:
    import libvirt

    from hypervisor import hosts
    from hypervisor.models import Host

    count = env_int("BENCH_KVM_ORDERS", 20)
    uri = os.environ.get("BENCH_KVM_URI", "qemu:///system")
    section = Section(
        f"2. Real KVM: {count} orders on {uri} (blank disk, 128 MiB), one at a time, each beside its raw twin"
    )
    try:
        conn = libvirt.open(uri)
        conn.getLibVersion()
        conn.close()
    except libvirt.libvirtError as exc:
        section.add(f"SKIPPED: {uri} does not answer ({exc.get_error_message()})")
        return section, {"skipped": str(exc)}
    region, plan, _image = _catalog("bench-kvm", "bench-kvm", 128, count * 2)
    host = hosts.register_host("kvm-local", uri, region)
    if os.environ.get("BENCH_KVM_FORCE_EMULATION", "") not in ("", "0"):
        Host.objects.filter(pk=host.pk).update(force_emulation=True)
    host = hosts.probe_host(host.pk)
    if host.state != Host.State.READY:
        section.add(f"SKIPPED: probing {uri} failed: {host.status_reason}")
        return section, {"skipped": host.status_reason}
    _ready(host.pk, vcpus_total=max(host.vcpus_total, 64))
    host.refresh_from_db()
    customers = _customers(math.ceil(count / 5), "kvm")  # the default quota allows 10 servers: 5 orders each
    log(f"scenario 2: {uri} is ready (domain type {host.domain_type}); ordering {count} servers one by one")

    # Each order is measured with nothing else running on the host, then its twin is made straight through
    # libvirt (the same XML builder, a new UUID), and both are removed before the next pair.
    from panel.models import Server

    from .rawlibvirt import create as raw_create

    made: list[str] = []
    raw_jobs: list[Job] = []
    rows, raw = [], []
    api_latency: list[float] = []  # ms from the order's request to the API first saying running
    stages: list[dict[str, float]] = []  # where each order's time went (_stages)
    pair_ratios: list[float] = []  # each order's API time over its raw twin's (made just after it)
    conn = libvirt.open(uri)
    try:
        for i in range(count):
            _user, token = customers[i // 5]
            sent = time.time()
            status, data = cluster.request(
                "POST",
                "/api/v1/servers/",
                {"name": f"kvm-{i}", "plan": plan.slug, "image": "blank", "region": region.slug},
                token,
            )
            if status != 202:
                section.note(f"order {i} refused: HTTP {status} {json.dumps(data)[:200]}")
                continue
            made.append(data["id"])
            running_at = _poll_until_running(cluster, data["id"], token, timeout=180)
            if running_at is not None:
                api_latency.append((running_at - sent) * 1000)
            _wait_for_operations([data["id"]], timeout=180)
            outcome = _outcomes([data["id"]])
            rows += outcome
            if running_at is not None and outcome and outcome[0]["finished_at"]:
                stages.append(_stages(sent, running_at, outcome[0]))
            _clean_kvm(conn, [data["id"]], [], host)
            template = Server.objects.select_related("host", "image").get(pk=data["id"])
            twin = Server(**{f.attname: getattr(template, f.attname) for f in Server._meta.concrete_fields})
            twin.id, twin.name = uuid.uuid4(), f"kvm-raw-{i}"
            twin.host, twin.image = template.host, template.image
            twin.__dict__["ip_addresses"] = list(template.ip_addresses)
            job = _jobs([twin], seeds=True)[0]
            raw_jobs.append(job)
            raw.append(raw_create(conn, job))
            if running_at is not None:
                pair_ratios.append((running_at - sent) / raw[-1].total)
            _clean_kvm(conn, [], [job], host)
    finally:
        _clean_kvm(conn, made, raw_jobs, host)  # whatever is left after a failure
        conn.close()
        log(f"scenario 2: removed {len(made) + len(raw_jobs)} domains and their volumes from {uri}")
    ok = [r for r in rows if r["status"] == "succeeded"]
    latency = [_seconds(r["finished_at"], r["server__created_at"]) * 1000 for r in ok]
    execution = [_seconds(r["finished_at"], r["started_at"]) * 1000 for r in ok]

    raw_ms = [t.total * 1000 for t in raw]
    raw_ds_ms = [t.define_start * 1000 for t in raw]
    lat, exe, r, d = summary(latency), summary(execution), summary(raw_ms), summary(raw_ds_ms)
    api = summary(api_latency)
    ratio = api["p50"] / r["p50"] if api["p50"] and r["p50"] else None
    ratio_db = lat["p50"] / r["p50"] if lat["p50"] and r["p50"] else None
    ratio_ds = api["p50"] / d["p50"] if api["p50"] and d["p50"] else None
    poll_ms = env_int("BENCH_POLL_MS", 20)
    section.add(
        f"order-to-running (API request → API says running, polled every {poll_ms} ms)",
        f"{len(api_latency)}/{count} ok",
        fmt_ms(api["p50"]),
        fmt_ms(api["p95"]),
    )
    section.add(
        "order-to-running in the database (server created → create finished)",
        f"{len(ok)}/{count} ok",
        fmt_ms(lat["p50"]),
        fmt_ms(lat["p95"]),
    )
    section.add("  of which the worker's create", "", fmt_ms(exe["p50"]), fmt_ms(exe["p95"]))
    split = {name: summary([stage[name] for stage in stages]) for name in STAGES}
    for name, text in STAGES.items():
        section.add(f"    {name}: {text}", "", fmt_ms(split[name]["p50"]), fmt_ms(split[name]["p95"]))
    section.add(
        "raw libvirt: volumes + seed upload + define + start",
        f"{len(raw)}",
        fmt_ms(r["p50"]),
        fmt_ms(r["p95"]),
    )
    section.add("raw libvirt: define + start alone", "", fmt_ms(d["p50"]), fmt_ms(d["p95"]))
    section.add(
        "overhead: order-to-running (API) ÷ raw (p50)",
        _ratio(ratio),
        target="≤ 1.1x",
        met=ratio is not None and ratio <= 1.1,
    )
    section.add("overhead: order-to-running (database) ÷ raw (p50)", _ratio(ratio_db))
    paired = percentile(pair_ratios, 50)
    section.add("overhead: each order (API) ÷ its raw twin, median of the pairs", _ratio(paired))
    section.add("overhead: order-to-running (API) ÷ raw define+start (p50)", _ratio(ratio_ds))
    failed = [r for r in rows if r["status"] != "succeeded"]
    if failed:
        section.note(f"{len(failed)} creates failed, first: {failed[0]['error'][:200]}")
    section.note(f"domain type {host.domain_type}; every domain and volume made here was removed afterwards")
    data = {
        "orders": count,
        "uri": uri,
        "domain_type": host.domain_type,
        "ok": len(ok),
        "order_to_running_ms": api,
        "order_to_running_db_ms": lat,
        "poll_ms": poll_ms,
        "worker_create_ms": exe,
        "stages_ms": split,
        "overhead_paired": paired,
        "raw_ms": r,
        "raw_define_start_ms": d,
        "overhead": ratio,
        "overhead_db": ratio_db,
        "overhead_vs_define_start": ratio_ds,
        "first_failure": failed[0]["error"] if failed else "",
    }
    return section, data


def _clean_kvm(conn, server_ids: list[str], raw_jobs: list[Job], host) -> None:
    """Remove the domains, volumes, network filters and logs of these servers and baseline jobs from the real
    host."""
    from hypervisor import network_filter

    from .rawlibvirt import destroy

    names = {str(s): f"vps-{s}" for s in server_ids}
    for job in raw_jobs:
        names[job.uuid] = f"vps-{job.uuid}"
    for uuid_text, name in names.items():
        volumes = [f"{uuid_text}.qcow2", f"{uuid_text}-seed.iso"]
        destroy(conn, uuid_text, host.storage_pool, volumes, network_filter.filter_names(uuid_text))
        for log_file in (f"/var/log/libvirt/qemu/{name}-console.log", f"/var/log/libvirt/qemu/{name}.log"):
            try:
                os.remove(log_file)
            except OSError:
                pass
