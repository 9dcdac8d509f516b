"""`locate` says where a server's domain is between two hosts at every point of a migration, for a retry after
a crash: on the source; on both (a cold copy defined on the target, or the target running it while the
source runs too, as during a live job); on the target (the source has no definition left, or keeps one
that does not run: a switch-over not finished on the source); nowhere. The steps around a migration work
on simulated hosts (volumes and domains exist there in memory), never the migration itself: libvirt's test
driver cannot migrate or stream volumes. finish_source and rollback_target never remove a domain that runs.
"""

from __future__ import annotations

import pytest

from hypervisor import connection, driver, migration
from hypervisor.migration import MigrationFailed, Where
from hypervisor.power_state import PowerState
from tests import factories
from tests.second_libvirtd import SEED, define, tiny_request

pytestmark = pytest.mark.django_db


@pytest.fixture
def hosts(tmp_path):
    region = factories.make_region()
    source = factories.make_host(uri=factories.node_uri(tmp_path, name="source.xml"), region=region)
    target = factories.make_host(uri=factories.node_uri(tmp_path, name="target.xml"), region=region)
    return source, target


def volumes(host, request) -> list[str]:
    def work(conn) -> list[str]:
        names = conn.storagePoolLookupByName(host.storage_pool).listVolumes()
        return sorted(name for name in names if str(request.uuid) in name)

    return connection.run(host, work)


def test_each_point_of_a_migration_is_located(hosts):
    source, target = hosts
    request = tiny_request(network_filter=False)
    assert migration.locate(source, target, request.uuid) is Where.NOWHERE
    define(source, request, start=False)
    assert migration.locate(source, target, request.uuid) is Where.SOURCE
    assert not migration.job_running(source, request.uuid)

    migration.prepare_target(source, target, request, SEED)
    migration.prepare_target(source, target, request, SEED)  # idempotent
    assert volumes(target, request) == [request.seed_volume_name]  # no disk: the domain does not run
    assert migration.locate(source, target, request.uuid) is Where.SOURCE

    # A cold copy defined on the target (here as the driver defines it): both have it until finish_source.
    define(target, request, start=False)
    assert migration.locate(source, target, request.uuid) is Where.BOTH
    # Running on both (a live job's incoming domain on the target): both.
    driver.start(source, request.uuid)
    driver.start(target, request.uuid)
    assert migration.locate(source, target, request.uuid) is Where.BOTH
    with pytest.raises(MigrationFailed, match="running on the source"):
        migration.finish_source(source, request)
    with pytest.raises(MigrationFailed, match="running on the target"):
        migration.rollback_target(target, request)
    # Running on the target, defined but stopped on the source: the switch-over happened.
    driver.power_off(source, request.uuid)
    assert migration.locate(source, target, request.uuid) is Where.TARGET

    migration.finish_source(source, request)
    migration.finish_source(source, request)  # idempotent
    assert driver.power_state(source, request.uuid) is None
    assert volumes(source, request) == []
    assert migration.locate(source, target, request.uuid) is Where.TARGET
    assert driver.power_state(target, request.uuid) is PowerState.RUNNING


def test_a_failed_migration_is_rolled_back_on_the_target_only(hosts):
    source, target = hosts
    request = tiny_request(network_filter=False)
    define(source, request)
    migration.prepare_target(source, target, request, SEED)
    # The domain runs on the source: the disk the live copy writes into is made too.
    assert volumes(target, request) == sorted([request.volume_name, request.seed_volume_name])
    define(target, request, start=False)  # as if a copy had got that far

    migration.rollback_target(target, request)
    migration.rollback_target(target, request)  # idempotent
    assert volumes(target, request) == []
    assert driver.power_state(target, request.uuid) is None
    assert migration.locate(source, target, request.uuid) is Where.SOURCE
    assert driver.power_state(source, request.uuid) is PowerState.RUNNING
    assert volumes(source, request) == sorted([request.volume_name, request.seed_volume_name])


def test_simulated_hosts_never_migrate_a_server(hosts):
    source, target = hosts
    request = tiny_request(network_filter=False)
    define(source, request)
    with pytest.raises(MigrationFailed, match="simulated hosts cannot migrate") as failed:
        migration.live_migrate(source, target, request, max_bandwidth_mib=0, timeout=10, on_progress=print)
    assert failed.value.transient is False
    driver.power_off(source, request.uuid)
    with pytest.raises(MigrationFailed, match="simulated hosts cannot migrate"):
        migration.cold_migrate(source, target, request, on_progress=print)
    assert migration.locate(source, target, request.uuid) is Where.SOURCE
    assert not migration.has_snapshots(source, request.uuid)
