"""Chaos on real services: the broker, the database and the hypervisor daemon restart under working Celery
worker processes on the real libvirtd (qemu:///system), and every operation still ends, with no duplicate
domain, no leaked volume, claim or address.

- Redis (a private redis-server that keeps nothing, as the test broker) is killed in the middle of a burst of
  orders and started again empty: the operations Postgres records and no queue holds any more are sent again
  by the reaper once their dispatch window or lease runs out.
- PostgreSQL is restarted while a worker is in the middle of a create: the worker's next write fails, the
  attempt is retried on a new connection, and the create finishes.
- libvirtd is restarted while a worker is in the middle of a create: the next libvirt call fails or finds
  the connection closed, is retried on a new connection, and the create finishes.

The pause points (panel/faults.py) hold the worker between two known steps while the service restarts.
"""

from __future__ import annotations

import time

import libvirt
import pytest
from kombu import pools

from hypervisor.models import Allocation, IPAddress
from panel.celery import app as celery_app
from panel.models import Operation, Server
from panel.servers import actions
from tests import chaos, factories, real_workers

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]

LEASE = 4  # seconds: short, so the test waits little for leases to run out
FAST = {"OPERATION_LEASE_SECONDS": str(LEASE), "OPERATION_DISPATCH_SECONDS": "5"}


@pytest.fixture
def fast_leases(settings):
    settings.OPERATION_LEASE_SECONDS = LEASE
    settings.OPERATION_DISPATCH_SECONDS = 5


@pytest.fixture
def private_redis(settings, tmp_path):
    """A private broker for this process and its workers, restored afterwards."""
    server = chaos.RedisServer(tmp_path)
    server.start()
    previous = celery_app.conf.broker_url
    _use_broker(settings, server.url)
    try:
        yield server
    finally:
        server.kill()
        _use_broker(settings, previous)


def _use_broker(settings, url: str) -> None:
    settings.CELERY_BROKER_URL = url
    celery_app.conf.broker_url = url
    pools.reset()  # kombu's connection and producer pools of every broker; new ones are made on next use
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def order(customer, host, name: str) -> Server:
    plan = factories.make_plan(slug="chaos-tiny", vcpus=1, memory_mib=64, disk_gib=1)
    return actions.order_server(
        customer, name=name, plan=plan, image=factories.make_image(), region=host.region
    )


def creates(servers: list[Server]) -> list[Operation]:
    return list(Operation.objects.filter(server__in=servers, type=Operation.Type.CREATE))


def all_finished(servers: list[Server]):
    def check() -> bool:
        return all(operation.is_finished for operation in creates(servers))

    return check


def assert_all_running_once(libvirtd, servers: list[Server]) -> None:
    """Every create succeeded; each server runs as exactly one domain with one disk and one seed; claims and
    addresses are one per server."""
    failed = [(o.server_id, o.error, o.detail) for o in creates(servers) if o.status != "succeeded"]
    assert failed == []
    for server in servers:
        server.refresh_from_db()
        assert (server.status, server.task) == ("running", None)
        domains = real_workers.domains_of(libvirtd, server)
        assert len(domains) == 1 and domains[0].isActive()
        assert set(real_workers.volumes_of(libvirtd, str(server.id))) == {
            f"{server.id}.qcow2",
            f"{server.id}-seed.iso",
        }
    ids = [server.id for server in servers]
    assert Allocation.objects.filter(consumer_uuid__in=ids).count() == len(servers)
    assert IPAddress.objects.filter(consumer_uuid__in=ids).count() == len(servers)


def test_a_burst_of_orders_survives_redis_losing_every_message(
    fast_leases, private_redis, libvirtd, customer, settings, tmp_path
):
    host = real_workers.kvm_host(cidr="198.51.100.0/27")
    with real_workers.worker_processes(settings, tmp_path) as workers, chaos.reaper():
        workers.start(concurrency=2, env=FAST)
        servers = [order(customer, host, f"burst{n}.example.com") for n in range(6)]
        workers.wait(
            lambda: Operation.objects.filter(status="running").exists(), 60, "a worker beginning a create"
        )
        private_redis.kill()  # mid-burst: queued messages, unacked deliveries, all gone
        servers += [order(customer, host, f"late{n}.example.com") for n in range(2)]  # sent to no broker
        time.sleep(2)
        private_redis.start()
        restarted = time.monotonic()
        workers.wait(all_finished(servers), 120, "every create finishing after the broker came back")
        recovery = time.monotonic() - restarted
    print(f"redis restart: all {len(servers)} creates finished {recovery:.1f} s after the broker came back")
    assert_all_running_once(libvirtd, servers)


@pytest.mark.alone
def test_a_create_survives_a_postgres_restart_in_its_middle(
    fast_leases, libvirtd, kvm_host, workers, customer
):
    worker = workers.start(pause_at="create:seeded", env=FAST)
    server = order(customer, kvm_host, "pg.example.com")
    with chaos.reaper():
        workers.wait_paused(worker, "create:seeded")
        down = chaos.restart_postgres()
        go = workers.marker.with_name(workers.marker.name + ".go")
        go.touch()  # the worker goes on: its next write meets the cut connection
        began = time.monotonic()
        workers.wait(all_finished([server]), 90, "the create finishing after PostgreSQL restarted")
        recovery = time.monotonic() - began
    print(
        f"postgres restart: {down:.1f} s down; the create finished {recovery:.1f} s after the worker went on"
    )
    assert worker.alive()
    assert_all_running_once(libvirtd, [server])
    create = creates([server])[0]
    assert create.attempts >= 2, "the interrupted attempt was not retried"


@pytest.mark.alone
def test_a_create_survives_a_libvirtd_restart_in_its_middle(
    fast_leases, libvirtd, kvm_host, workers, customer
):
    worker = workers.start(pause_at="create:disk", env=FAST)
    server = order(customer, kvm_host, "libvirtd.example.com")
    with chaos.reaper():
        workers.wait_paused(worker, "create:disk")
        away = chaos.restart_libvirtd()
        workers.marker.with_name(workers.marker.name + ".go").touch()
        began = time.monotonic()
        workers.wait(all_finished([server]), 90, "the create finishing after libvirtd restarted")
        recovery = time.monotonic() - began
    print(
        f"libvirtd restart: {away:.1f} s away; the create finished {recovery:.1f} s after the worker went on"
    )
    assert worker.alive()
    fresh = libvirt.open(real_workers.URI)  # the fixture's connection died with the old daemon
    try:
        assert_all_running_once(fresh, [server])
    finally:
        fresh.close()
