"""Real Celery worker processes and the real libvirtd (qemu:///system), for tests that run operations the way
production does: `celery -A panel worker` processes on a private queue, talking to the test's database and
broker, doing libvirt work on the local daemon. Plain classes and functions; the fixtures that use them are
in tests/panel/conftest.py (and in the test modules elsewhere that need them).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import libvirt
import pytest
import redis
from django.db import connection

from hypervisor import connection as libvirt_connection
from hypervisor import ipam
from hypervisor.models import Host
from panel.celery import app as celery_app
from panel.models import Server
from tests import factories

URI = "qemu:///system"
POOL = "default"
VISIBILITY_TIMEOUT = 8  # seconds; the broker gives a dead worker's unacknowledged task back after this
PROJECT = Path(__file__).resolve().parents[1]
CELERY = Path(sys.executable).with_name("celery")
GIB = 1024**3


# Real worker processes on a private queue, talking to this test's database and broker.


@dataclass
class Worker:
    process: subprocess.Popen
    log: Path
    pause_at: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker's whole process group: no ack, no cleanup, no goodbye to the broker."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Workers:
    """Starts `celery -A panel worker` processes; remembers them so that every one is killed at the end."""

    def __init__(self, queue: str, env: dict[str, str], directory: Path):
        self.queue = queue
        self.env = env
        self.directory = directory
        self.marker = directory / "paused-at"
        self.started: list[Worker] = []

    def start(
        self, pause_at: str = "", concurrency: int = 1, env: dict[str, str] | None = None, name: str = ""
    ) -> Worker:
        """Start a worker: the solo pool for one task at a time, else a prefork pool of `concurrency`
        processes. `env` adds to (or overrides) the variables every worker gets, `pause_at` sets
        PANEL_FAULT_PAUSE_AT, `name` is its node name (by default one of its own: worker<n>-<queue>@host;
        give a killed worker's name to start it again as its supervisor would)."""
        number = len(self.started) + 1
        name = name or f"worker{number}-{self.queue}@%h"
        variables = {**self.env, **(env or {})}
        variables.pop("PANEL_FAULT_PAUSE_AT", None)
        if pause_at:
            variables["PANEL_FAULT_PAUSE_AT"] = pause_at
        pool = ["--pool", "solo"] if concurrency == 1 else ["--pool", "prefork"]
        log = self.directory / f"worker{number}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(CELERY), "-A", "panel", "worker", *pool, "--concurrency", str(concurrency),
                 "--loglevel", "INFO", "-Q", self.queue, "-n", name,
                 "--without-mingle", "--without-gossip"],
                cwd=PROJECT, env=variables, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        worker = Worker(process, log, pause_at)
        self.started.append(worker)
        return worker

    def logs(self, lines: int = 40) -> str:
        return "\n".join(
            f"--- worker {worker.pid} (pause at {worker.pause_at or '-'}):\n{worker.tail(lines)}"
            for worker in self.started
        )

    def wait(self, predicate: Callable[[], object], timeout: float, what: str):
        """Poll until predicate() is truthy; fail with the workers' logs after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        pytest.fail(f"{what}: not within {timeout} s\n{self.logs()}")

    def wait_ready(self, worker: Worker, timeout: float = 60) -> None:
        """Wait until the worker consumes from its queue (Celery logs "<node name> ready.")."""

        def ready() -> bool:
            if not worker.alive():
                pytest.fail(f"the worker exited while starting\n{self.logs()}")
            return " ready." in worker.log.read_text(errors="replace")

        self.wait(ready, timeout, "the worker starting")

    def wait_paused(self, worker: Worker, step: str) -> None:
        """Wait until the worker sleeps at the step's pause point."""

        def paused() -> bool:
            if not worker.alive():
                pytest.fail(f"the worker exited before reaching {step}\n{self.logs()}")
            return self.marker.exists() and self.marker.read_text().endswith("\n")  # written in full

        self.wait(paused, 60, f"the worker reaching {step}")
        assert self.marker.read_text().split() == [step, str(worker.pid)]
        self.marker.unlink()

    def kill_all(self) -> None:
        for worker in self.started:
            worker.kill()


def database_url() -> str:
    """The URL of the test database pytest-django created (not the one in DATABASE_URL)."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def broker() -> redis.Redis:
    return redis.Redis.from_url(celery_app.conf.broker_url)


def unacked(task_id: str) -> float | None:
    """When the broker delivered the task still waiting for its ack (kombu's Redis ack emulation), or None
    when no delivery of it waits for an ack."""
    client = broker()
    for tag, payload in client.hgetall("unacked").items():
        raw, _exchange, _routing_key = json.loads(payload)
        if raw.get("headers", {}).get("id") == task_id:
            return client.zscore("unacked_index", tag)
    return None


def drop_queue(queue: str) -> None:
    """Remove the queue's messages, its binding and any unacknowledged delivery of it from the broker."""
    client = broker()
    client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    for tag, payload in client.hgetall("unacked").items():
        _raw, exchange, routing_key = json.loads(payload)
        if queue in (exchange, routing_key):
            client.zrem("unacked_index", tag)
            client.hdel("unacked", tag)


def send_to(queue: str) -> None:
    """Make `queue` where this process sends tasks by default. Celery builds its map of queues from the
    default queue on first use and keeps it (a worker started in this process later consumes from what it
    holds), so the map is dropped too, to be built anew from this one."""
    celery_app.conf.task_default_queue = queue
    del celery_app.amqp.queues
    del celery_app.amqp.default_queue


@contextmanager
def worker_processes(settings, directory: Path) -> Iterator[Workers]:
    """Workers for a test (`settings`: pytest-django's fixture), on a queue of their own that this process
    sends operations to; every worker is killed and the queue dropped at the end."""
    queue = f"workers-{uuid.uuid4().hex[:10]}"
    previous_queue = celery_app.conf.task_default_queue
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    send_to(queue)
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.CELERY_BROKER_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "DEBUG": "",
        "CELERY_QUEUE": queue,
        "BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        "INVOICE_MAIL_DELAY_SECONDS": "0",  # an order's invoice mailed after its commit (no beat runs here)
        "OPERATION_DEADLINE": "3600",
        "SHUTDOWN_TIMEOUT": "3",  # the blank guest has no OS to answer ACPI: power off after 3 s
        "REBOOT_TIMEOUT": "2",
        "PANEL_FAULT_MARKER": str(directory / "paused-at"),
    }
    pool = Workers(queue, env, directory)
    try:
        yield pool
    finally:
        pool.kill_all()
        send_to(previous_queue)
        drop_queue(queue)


# The real libvirtd.


def find_pool(conn: libvirt.virConnect) -> libvirt.virStoragePool | None:
    try:
        return conn.storagePoolLookupByName(POOL)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            return None
        raise


def find_domain(conn: libvirt.virConnect, server_id: str) -> libvirt.virDomain | None:
    try:
        return conn.lookupByUUIDString(server_id)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def domains_of(conn: libvirt.virConnect, server: Server) -> list[libvirt.virDomain]:
    """Every domain that is the server's, by UUID or by name."""
    return [
        domain
        for domain in conn.listAllDomains(0)
        if domain.UUIDString() == str(server.id) or domain.name() == server.domain_name
    ]


def volumes_of(conn: libvirt.virConnect, server_id: str) -> dict[str, libvirt.virStorageVol]:
    """The pool's volumes whose names hold the server's id, after a refresh (waiting while the pool is busy
    with another volume job)."""
    pool = find_pool(conn)
    if pool is None:
        return {}
    libvirt_connection.when_pool_idle(lambda: pool.refresh(0))
    return {name: pool.storageVolLookupByName(name) for name in pool.listVolumes() if server_id in name}


def remove_leftovers(conn: libvirt.virConnect, server_id: str) -> None:
    domain = find_domain(conn, server_id)
    if domain is not None:
        if domain.isActive():
            domain.destroy()
        domain.undefineFlags(
            libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
            | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
        )
    for volume in volumes_of(conn, server_id).values():
        volume.delete(0)


@contextmanager
def real_libvirtd() -> Iterator[libvirt.virConnect]:
    """A connection to the real libvirtd with its `default` pool; at the end every domain and volume of the
    test's servers is removed (and the pool, if this made it and it is empty). Needs the database."""
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        pytest.fail(f"no libvirtd answers at {URI} (start it with `virtlogd -d; libvirtd -d`): {exc}")
    pool = find_pool(conn)
    created = pool is None
    if created:
        from hypervisor.driver import DEFAULT_POOL_PATH
        from hypervisor.xml.storage import DirPool

        pool = conn.storagePoolDefineXML(DirPool(POOL, DEFAULT_POOL_PATH).to_xml(), 0)
        pool.build(0)
    if not pool.isActive():
        pool.create(0)
    try:
        yield conn
    finally:
        if not conn.isAlive():  # a chaos test restarted libvirtd
            conn = libvirt.open(URI)
            pool = find_pool(conn)
        # Side by side: tearing down a running domain takes libvirtd a few seconds (its filters, its QEMU).
        server_ids = [str(server_id) for server_id in Server.objects.values_list("id", flat=True)]
        with ThreadPoolExecutor(max_workers=8) as pool_of_threads:
            list(pool_of_threads.map(lambda server_id: remove_leftovers(conn, server_id), server_ids))
        if created:
            libvirt_connection.when_pool_idle(lambda: pool.refresh(0))
            if not pool.numOfVolumes():
                libvirt_connection.when_pool_idle(pool.destroy)
                libvirt_connection.when_pool_idle(pool.undefine)
        conn.close()


def kvm_host(cidr: str = "198.51.100.0/28", **fields) -> Host:
    """The local libvirtd as a host (QEMU emulation, as guests boot here; `fields` set on the host before it
    is probed) in a region with an IPv4 pool of `cidr` (its first address the gateway)."""
    host = factories.make_host(uri=URI, force_emulation=True, **fields)
    assert host.state == Host.State.READY, host.status_reason
    gateway = next(ipaddress.IPv4Network(cidr).hosts())
    ipam.create_pool(host.region, "t", cidr, str(gateway))
    return host
