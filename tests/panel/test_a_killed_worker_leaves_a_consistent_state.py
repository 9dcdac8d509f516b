"""Crash safety on a real libvirtd (qemu:///system) with real Celery worker processes: a worker is killed
(SIGKILL) in the middle of a create, a resize and a delete, and a fresh worker finishes the operation from
where it was. Each case ends consistent: no duplicate domain, no orphaned volume, no task left on the
server, capacity and addresses accounted for. A worker that never comes back is covered by the reaper.

The first worker is started with PANEL_FAULT_PAUSE_AT=<step> (panel/faults.py): it writes a marker file and
sleeps when the operation reaches that step, so the kill lands between two known steps, not by timing.

How the killed worker's task comes back: acks are late, so the message stays in kombu's Redis `unacked`
hash (scored with its delivery time in `unacked_index`) while the worker runs it. A SIGKILLed worker never
acks nor gives it back; another consumer puts it back on its queue once it is older than the visibility
timeout (BROKER_VISIBILITY_TIMEOUT, 8 s here). kombu 5.7 scans for such messages once when a worker starts
consuming, and after that only about every 100 s (unacked_restore_interval 10 s x unacked_restore_throttle
10): a fresh worker started at once after the kill was seen to pick the task up only 100 s after it started.
So the fresh worker is started once the visibility timeout has passed since the delivery (as a worker
restarted by its supervisor some time after a crash finds it), and it picks the task up at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import libvirt
import pytest
import redis
from django.db import connection
from django.utils import timezone

from hypervisor import ipam
from hypervisor.models import Allocation, Host, IPAddress
from panel.celery import app as celery_app
from panel.infrastructure import allocation_audit as audit
from panel.models import Operation, Server
from panel.servers import actions, operations
from tests import factories

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]

URI = "qemu:///system"
POOL = "default"
VISIBILITY_TIMEOUT = 8  # seconds; the broker gives a dead worker's unacknowledged task back after this
PROJECT = Path(__file__).resolve().parents[2]
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

    def start(self, pause_at: str = "") -> Worker:
        number = len(self.started) + 1
        env = dict(self.env)
        env.pop("PANEL_FAULT_PAUSE_AT", None)
        if pause_at:
            env["PANEL_FAULT_PAUSE_AT"] = pause_at
        log = self.directory / f"worker{number}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(CELERY), "-A", "panel", "worker", "--pool", "solo", "--concurrency", "1",
                 "--loglevel", "INFO", "-Q", self.queue, "-n", f"crash{number}-{self.queue}@%h",
                 "--without-mingle", "--without-gossip"],
                cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        worker = Worker(process, log, pause_at)
        self.started.append(worker)
        return worker

    def logs(self) -> str:
        return "\n".join(
            f"--- worker {worker.pid} (pause at {worker.pause_at or '-'}):\n{worker.tail()}"
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


@pytest.fixture
def workers(libvirtd, settings, tmp_path):
    """Worker processes for the test (killed before the test's domains are cleaned up and its database
    flushed), on a queue of its own that this process sends operations to."""
    queue = f"crash-{uuid.uuid4().hex[:10]}"
    previous_queue = celery_app.conf.task_default_queue
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    celery_app.conf.task_default_queue = queue  # where this process sends operations
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.CELERY_BROKER_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "DEBUG": "",
        "CELERY_QUEUE": queue,
        "BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        "OPERATION_DEADLINE": "3600",
        "SHUTDOWN_TIMEOUT": "3",  # the blank guest has no OS to answer ACPI: power off after 3 s
        "REBOOT_TIMEOUT": "2",
        "PANEL_FAULT_MARKER": str(tmp_path / "paused-at"),
    }
    pool = Workers(queue, env, tmp_path)
    try:
        yield pool
    finally:
        pool.kill_all()
        celery_app.conf.task_default_queue = previous_queue
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
    pool = find_pool(conn)
    if pool is None:
        return {}
    pool.refresh(0)
    return {name: pool.storageVolLookupByName(name) for name in pool.listVolumes() if server_id in name}


def remove_leftovers(conn: libvirt.virConnect, server_id: str) -> None:
    domain = find_domain(conn, server_id)
    if domain is not None:
        if domain.isActive():
            domain.destroy()
        domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
    for volume in volumes_of(conn, server_id).values():
        volume.delete(0)


@pytest.fixture
def libvirtd(transactional_db):
    """A connection to the real libvirtd with its `default` pool; at the end every domain and volume of the
    test's servers is removed (and the pool, if the test made it and it is empty)."""
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
        for server_id in Server.objects.values_list("id", flat=True):
            remove_leftovers(conn, str(server_id))
        if created:
            pool.refresh(0)
            if not pool.numOfVolumes():
                pool.destroy()
                pool.undefine()
        conn.close()


# The catalogue and the steps every case shares.


@pytest.fixture
def kvm_host(libvirtd) -> Host:
    """The local libvirtd as a host (QEMU emulation, as guests boot here) in a region with an IPv4 pool."""
    host = factories.make_host(uri=URI, force_emulation=True)
    assert host.state == Host.State.READY, host.status_reason
    ipam.create_pool(host.region, "t", "198.51.100.0/28", "198.51.100.1")
    return host


def order(customer, host: Host) -> tuple[Server, Operation]:
    plan = factories.make_plan(slug="crash-tiny", vcpus=1, memory_mib=128, disk_gib=1)
    server = actions.order_server(
        customer, name="crash.example.com", plan=plan, image=factories.make_image(), region=host.region
    )
    return server, Operation.objects.get(server=server, type=Operation.Type.CREATE)


def bigger_plan():
    return factories.make_plan(slug="crash-bigger", vcpus=1, memory_mib=256, disk_gib=2)


def finished(operation: Operation) -> Callable[[], bool]:
    def check() -> bool:
        operation.refresh_from_db()
        return operation.is_finished

    return check


def kill_mid_task(worker: Worker, server: Server, operation: Operation) -> float:
    """SIGKILL the paused worker; check that nothing closed the operation nor freed the server, and that the
    task waits in the broker for the ack that will never come. Returns when the broker delivered it."""
    worker.kill()
    server.refresh_from_db()
    operation.refresh_from_db()
    assert server.task == operation.type
    assert (operation.status, operation.attempts) == ("running", 1)
    delivered_at = unacked(str(operation.pk))
    assert delivered_at is not None, "the killed worker's task is not waiting for its ack in the broker"
    return delivered_at


def resume_with_fresh_worker(workers: Workers, operation: Operation, delivered_at: float) -> Worker:
    """Start a worker without a pause point once the broker gives the killed worker's task back (the
    visibility timeout after its delivery); wait until it ran the operation to its end and acknowledged
    the task."""
    task_id = str(operation.pk)
    time.sleep(max(0.0, delivered_at + VISIBILITY_TIMEOUT + 0.5 - time.time()))
    fresh = workers.start()
    workers.wait(finished(operation), 60, f"the fresh worker finishing the {operation.type}")
    workers.wait(
        lambda: f"run_operation[{task_id}] succeeded" in fresh.log.read_text(errors="replace"),
        60,
        "the fresh worker running the redelivered task",
    )
    workers.wait(
        lambda: unacked(task_id) is None and not broker().llen(workers.queue),
        15,
        "the fresh worker acknowledging the task",
    )
    return fresh


def assert_one_running_domain(conn: libvirt.virConnect, server: Server, memory_mib: int, disk_gib: int):
    server_id = str(server.id)
    domains = domains_of(conn, server)
    assert len(domains) == 1, [d.name() for d in domains]
    domain = domains[0]
    assert (domain.UUIDString(), domain.name()) == (server_id, server.domain_name)
    assert domain.isActive()
    assert domain.maxMemory() == memory_mib * 1024  # KiB
    assert domain.info()[2] == memory_mib * 1024  # current memory, KiB
    volumes = volumes_of(conn, server_id)
    assert set(volumes) == {f"{server_id}.qcow2", f"{server_id}-seed.iso"}
    assert volumes[f"{server_id}.qcow2"].info()[1] == disk_gib * GIB
    allocation = Allocation.objects.get(consumer_uuid=server.id)
    assert (allocation.host_id, allocation.vcpus, allocation.memory_mib, allocation.disk_gib) == (
        server.host_id,
        server.vcpus,
        memory_mib,
        disk_gib,
    )
    assert IPAddress.objects.filter(consumer_uuid=server.id).count() == 1


def assert_nothing_left(conn: libvirt.virConnect, server: Server) -> None:
    server_id = str(server.id)
    assert domains_of(conn, server) == []
    assert volumes_of(conn, server_id) == {}
    assert not Allocation.objects.filter(consumer_uuid=server.id).exists()
    assert not IPAddress.objects.filter(consumer_uuid=server.id).exists()
    assert IPAddress.objects.filter(released_at__isnull=False).count() == 1  # its address, cooling down


# The cases.


@pytest.mark.parametrize("step", ["create:disk", "create:defined"])
def test_a_create_killed_midway_is_finished_by_a_fresh_worker(libvirtd, kvm_host, workers, customer, step):
    workers.start(pause_at=step)
    server, create = order(customer, kvm_host)
    workers.wait_paused(workers.started[0], step)
    delivered_at = kill_mid_task(workers.started[0], server, create)
    assert server.status == "provisioning"
    server_id = str(server.id)
    half_made = set(volumes_of(libvirtd, server_id))
    if step == "create:disk":
        assert (half_made, find_domain(libvirtd, server_id)) == ({f"{server_id}.qcow2"}, None)
    else:
        assert half_made == {f"{server_id}.qcow2", f"{server_id}-seed.iso"}
        assert not find_domain(libvirtd, server_id).isActive()

    resume_with_fresh_worker(workers, create, delivered_at)

    server.refresh_from_db()
    assert (create.status, create.attempts, create.error) == ("succeeded", 2, "")
    assert (server.status, server.task, server.power_state) == ("running", None, "running")
    assert_one_running_domain(libvirtd, server, memory_mib=128, disk_gib=1)
    assert Allocation.objects.count() == 1


def test_a_resize_killed_midway_is_finished_by_a_fresh_worker(libvirtd, kvm_host, workers, customer):
    worker = workers.start(pause_at="resize:configured")  # it creates the server without pausing
    server, create = order(customer, kvm_host)
    workers.wait(finished(create), 60, "the worker creating the server")
    assert create.status == "succeeded", create.error
    server.refresh_from_db()

    resize = actions.resize_server(server, bigger_plan(), customer)
    workers.wait_paused(worker, "resize:configured")
    delivered_at = kill_mid_task(worker, server, resize)
    assert (server.status, server.plan.slug, server.memory_mib) == ("running", "crash-tiny", 128)
    domain = find_domain(libvirtd, str(server.id))
    assert domain.isActive() and domain.maxMemory() == 128 * 1024  # the new size waits for a restart

    resume_with_fresh_worker(workers, resize, delivered_at)

    server.refresh_from_db()
    assert (resize.status, resize.attempts, resize.error) == ("succeeded", 2, "")
    assert (server.status, server.task, server.power_state) == ("running", None, "running")
    assert (server.plan.slug, server.vcpus, server.memory_mib, server.disk_gib) == ("crash-bigger", 1, 256, 2)
    assert_one_running_domain(libvirtd, server, memory_mib=256, disk_gib=2)


def test_a_delete_killed_midway_is_finished_by_a_fresh_worker(libvirtd, kvm_host, workers, customer):
    worker = workers.start(pause_at="delete:destroyed")  # it creates the server without pausing
    server, create = order(customer, kvm_host)
    workers.wait(finished(create), 60, "the worker creating the server")
    assert create.status == "succeeded", create.error
    server.refresh_from_db()

    delete = actions.delete_server(server, customer)
    workers.wait_paused(worker, "delete:destroyed")
    delivered_at = kill_mid_task(worker, server, delete)
    assert server.status == "deleting"
    assert domains_of(libvirtd, server) == []  # destroyed, but the panel has not recorded it yet
    assert Allocation.objects.filter(consumer_uuid=server.id).exists()

    resume_with_fresh_worker(workers, delete, delivered_at)

    server.refresh_from_db()
    assert (delete.status, delete.attempts, delete.error) == ("succeeded", 2, "")
    assert (server.status, server.task) == ("deleted", None)
    assert server.deleted_at is not None
    assert_nothing_left(libvirtd, server)


def test_a_create_whose_worker_never_returns_is_reaped_and_can_be_deleted(
    libvirtd, kvm_host, workers, customer
):
    worker = workers.start(pause_at="create:defined")
    server, create = order(customer, kvm_host)
    workers.wait_paused(worker, "create:defined")
    delivered_at = kill_mid_task(worker, server, create)

    # No worker comes back before the operation's deadline.
    Operation.objects.filter(pk=create.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    assert operations.reap_stuck_operations() == 1

    server.refresh_from_db()
    create.refresh_from_db()
    assert create.status == "failed"
    assert "deadline" in create.error
    assert (server.status, server.task) == ("error", None)
    assert "deadline" in server.status_detail
    assert find_domain(libvirtd, str(server.id)) is not None  # the half-made server is still there

    delete = actions.delete_server(server, customer)
    # The fresh worker also gets the dead worker's create back from the broker; it must leave it alone.
    resume_with_fresh_worker(workers, create, delivered_at)
    workers.wait(finished(delete), 60, "the fresh worker deleting the server")

    server.refresh_from_db()
    create.refresh_from_db()
    assert (create.status, create.attempts) == ("failed", 1)
    assert (delete.status, delete.attempts, delete.error) == ("succeeded", 1, "")
    assert (server.status, server.task) == ("deleted", None)
    assert_nothing_left(libvirtd, server)


def test_a_resize_whose_worker_never_returns_is_reaped_and_gives_back_its_claim(
    libvirtd, kvm_host, workers, customer
):
    worker = workers.start(pause_at="resize:configured")  # it creates the server without pausing
    server, create = order(customer, kvm_host)
    workers.wait(finished(create), 60, "the worker creating the server")
    assert create.status == "succeeded", create.error
    server.refresh_from_db()
    resize = actions.resize_server(server, bigger_plan(), customer)
    workers.wait_paused(worker, "resize:configured")
    kill_mid_task(worker, server, resize)

    Operation.objects.filter(pk=resize.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    assert operations.reap_stuck_operations() == 1

    server.refresh_from_db()
    resize.refresh_from_db()
    assert resize.status == "failed"
    assert "deadline" in resize.error
    assert (server.status, server.task) == ("running", None)
    assert (server.plan.slug, server.vcpus, server.memory_mib, server.disk_gib) == ("crash-tiny", 1, 128, 1)
    assert audit.audit_allocations() == []  # the server holds what it has, no more
