"""A live migration that cannot finish leaves the domain running on its host, and rollback_target then leaves
nothing of it on the other host: one aborted when its time is up (1 MiB/s for a domain whose memory and disk
take minutes at that rate, 2 seconds allowed), one whose target daemon cannot be reached, and one refused
because the domain has an internal snapshot (libvirt migrates no snapshots: the panel asks for them to be
deleted first)."""

from __future__ import annotations

import libvirt
import pytest

from hypervisor import connection, driver, migration
from hypervisor.migration import MigrationFailed, Progress, Where
from hypervisor.models import Host
from hypervisor.power_state import PowerState
from tests.second_libvirtd import define, register_hosts, second_libvirtd, tiny_request  # noqa: F401

pytestmark = [pytest.mark.kvm, pytest.mark.django_db]


def on_host(host: Host, uuid) -> list[str]:
    """The server's domain, volumes and network filters on the host."""
    conn = libvirt.open(host.uri)
    try:
        found = [d.name() for d in conn.listAllDomains(0) if d.UUIDString() == str(uuid)]
        pool = conn.storagePoolLookupByName("default")
        connection.when_pool_idle(lambda: pool.refresh(0))  # other tests' volume jobs
        found += [name for name in pool.listVolumes() if str(uuid) in name]
        found += [name for name in conn.listNWFilters() if str(uuid) in name]
        return found
    finally:
        conn.close()


def assert_left_where_it_was(system: Host, host2: Host, request, domain_id: int) -> None:
    assert migration.locate(system, host2, request.uuid) is Where.SOURCE
    assert not migration.job_running(system, request.uuid)
    assert driver.power_state(system, request.uuid) is PowerState.RUNNING
    conn = libvirt.open(system.uri)
    try:
        assert conn.lookupByUUIDString(str(request.uuid)).ID() == domain_id  # never restarted
    finally:
        conn.close()
    assert on_host(host2, request.uuid)  # what prepare_target made
    migration.rollback_target(host2, request)
    migration.rollback_target(host2, request)  # idempotent
    assert on_host(host2, request.uuid) == []
    assert driver.power_state(system, request.uuid) is PowerState.RUNNING


def domain_id(host: Host, uuid) -> int:
    conn = libvirt.open(host.uri)
    try:
        return conn.lookupByUUIDString(str(uuid)).ID()
    finally:
        conn.close()


@pytest.fixture
def running(second_libvirtd):  # noqa: F811
    system, host2 = register_hosts(second_libvirtd)
    request = tiny_request()
    define(system, request)
    yield system, host2, request
    driver.destroy(system, request)
    driver.destroy(host2, request)


def test_a_migration_past_its_time_is_aborted_and_the_server_runs_on(running):
    system, host2, request = running
    started = domain_id(system, request.uuid)
    migration.prepare_target(system, host2, request, b"seed")
    reported: list[Progress] = []
    with pytest.raises(MigrationFailed, match="did not finish within 2 seconds"):
        migration.live_migrate(
            system, host2, request, max_bandwidth_mib=1, timeout=2, on_progress=reported.append
        )
    assert reported and reported[-1].bytes_total > reported[-1].bytes_done  # it had begun, not finished
    assert_left_where_it_was(system, host2, request, started)


def test_a_target_that_cannot_be_reached_fails_the_migration_with_libvirts_reason(running):
    system, host2, request = running
    started = domain_id(system, request.uuid)
    migration.prepare_target(system, host2, request, b"seed")
    Host.objects.filter(pk=host2.pk).update(migration_uri="qemu+tcp://127.0.0.2:1/system")
    host2.refresh_from_db()
    with pytest.raises(MigrationFailed, match="127.0.0.2") as failed:
        migration.live_migrate(system, host2, request, max_bandwidth_mib=0, timeout=60, on_progress=print)
    assert failed.value.transient is False
    assert_left_where_it_was(system, host2, request, started)


def test_a_server_with_a_snapshot_is_refused(running):
    system, host2, request = running
    started = domain_id(system, request.uuid)
    driver.create_snapshot(system, request.uuid, "before-migration")
    assert migration.has_snapshots(system, request.uuid)
    migration.prepare_target(system, host2, request, b"seed")
    with pytest.raises(MigrationFailed, match="delete its snapshots"):
        migration.live_migrate(system, host2, request, max_bandwidth_mib=0, timeout=60, on_progress=print)
    assert_left_where_it_was(system, host2, request, started)
