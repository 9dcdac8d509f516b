"""A running domain moves from the system libvirtd to a second real libvirtd (host2) and back while it runs,
with libvirt's peer-to-peer live migration: its progress is reported, it runs on the target with the same
UUID and MAC, its interface bound to its own network filter there (on host2's bridge, then on the system
daemon's network again), and finish_source leaves nothing of it on the source: no domain, no volumes, no
filters. `locate` follows it."""

from __future__ import annotations

import subprocess

import libvirt
import pytest
from lxml import etree

from hypervisor import connection, driver, migration
from hypervisor.migration import Progress, Where
from hypervisor.power_state import PowerState
from tests.second_libvirtd import define, register_hosts, second_libvirtd, tiny_request  # noqa: F401

pytestmark = [pytest.mark.kvm, pytest.mark.django_db]


def bindings(uri: str) -> dict[str, str]:
    """`virsh nwfilter-binding-list`: interface (port dev) -> filter."""
    listing = subprocess.run(
        ["virsh", "-c", uri, "nwfilter-binding-list"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    rows = {}
    for line in listing.splitlines()[2:]:
        parts = line.split()
        if len(parts) == 2:
            rows[parts[0]] = parts[1]
    return rows


def interface(uri: str, uuid) -> etree._Element:
    conn = libvirt.open(uri)
    try:
        root = etree.fromstring(conn.lookupByUUIDString(str(uuid)).XMLDesc(0).encode())
    finally:
        conn.close()
    [element] = root.findall("devices/interface")
    return element


def leftovers(uri: str, uuid) -> list[str]:
    """What the host has of the server: its domain, volumes (after a pool refresh) and network filters."""
    conn = libvirt.open(uri)
    try:
        found = []
        if str(uuid) in [domain.UUIDString() for domain in conn.listAllDomains(0)]:
            found.append("domain")
        pool = conn.storagePoolLookupByName("default")
        connection.when_pool_idle(lambda: pool.refresh(0))  # other tests' volume jobs
        found += [name for name in pool.listVolumes() if str(uuid) in name]
        found += [name for name in conn.listNWFilters() if str(uuid) in name]
        return found
    finally:
        conn.close()


def move(source, target, request) -> list[Progress]:
    reported: list[Progress] = []
    assert migration.locate(source, target, request.uuid) is Where.SOURCE
    migration.prepare_target(source, target, request, b"seed")
    migration.live_migrate(
        source, target, request, max_bandwidth_mib=0, timeout=120, on_progress=reported.append
    )
    assert migration.locate(source, target, request.uuid) is Where.TARGET
    assert not migration.job_running(source, request.uuid)
    return reported


def test_a_running_domain_moves_to_the_other_host_and_back_while_it_runs(second_libvirtd):  # noqa: F811
    system, host2 = register_hosts(second_libvirtd)
    request = tiny_request()
    define(system, request)
    try:
        reported = move(system, host2, request)
        assert reported, "no progress was reported"
        assert reported[-1].percent == 100
        assert reported[-1].bytes_done == reported[-1].bytes_total > 0
        assert reported[-1].bytes_remaining == 0

        assert driver.power_state(host2, request.uuid) is PowerState.RUNNING
        assert driver.power_state(system, request.uuid) is None  # undefined on the source
        on_host2 = interface(host2.uri, request.uuid)
        assert on_host2.get("type") == "bridge"
        assert on_host2.find("source").get("bridge") == "virbr0"
        assert on_host2.find("mac").get("address") == request.mac
        assert on_host2.find("filterref").get("filter") == f"vps-{request.uuid}"
        dev = on_host2.find("target").get("dev")
        assert bindings(host2.uri).get(dev) == f"vps-{request.uuid}"

        # The source keeps its disk and filters until the switch-over is finished there.
        assert leftovers(system.uri, request.uuid)
        migration.finish_source(system, request)
        migration.finish_source(system, request)  # idempotent
        assert leftovers(system.uri, request.uuid) == []
        assert migration.locate(system, host2, request.uuid) is Where.TARGET

        # And back, onto the system daemon's libvirt network.
        reported = move(host2, system, request)
        assert reported and reported[-1].percent == 100
        assert driver.power_state(system, request.uuid) is PowerState.RUNNING
        on_system = interface(system.uri, request.uuid)
        assert on_system.get("type") == "network"
        assert on_system.find("source").get("network") == "default"
        assert on_system.find("mac").get("address") == request.mac
        dev = on_system.find("target").get("dev")
        assert bindings(system.uri).get(dev) == f"vps-{request.uuid}"
        migration.finish_source(host2, request)
        assert leftovers(host2.uri, request.uuid) == []
    finally:
        driver.destroy(system, request)
        driver.destroy(host2, request)
