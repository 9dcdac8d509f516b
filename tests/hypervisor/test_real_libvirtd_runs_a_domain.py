"""Integration with a real libvirtd (qemu:///system): a server is created, powered off, started, rebooted
and deleted as a real QEMU domain, checked with libvirt itself at each step."""

from __future__ import annotations

import libvirt
import pytest
from lxml import etree

from hypervisor import connection as libvirt_connection
from hypervisor.driver import DEFAULT_POOL_PATH
from hypervisor.models import Allocation, Host
from hypervisor.xml.domain import server_id_from_xml
from hypervisor.xml.storage import DirPool
from panel.models import Operation, Server
from panel.servers import actions, operations
from tests import factories

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]

URI = "qemu:///system"
POOL = "default"


@pytest.fixture
def libvirtd() -> libvirt.virConnect:
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        pytest.fail(f"no libvirtd answers at {URI} (start it with `virtlogd -d; libvirtd -d`): {exc}")
    yield conn
    conn.close()


def find_pool(conn: libvirt.virConnect) -> libvirt.virStoragePool | None:
    try:
        return conn.storagePoolLookupByName(POOL)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            return None
        raise


def remove_pool_if_empty(conn: libvirt.virConnect) -> None:
    """Remove the `default` pool definition (never its directory) unless it holds volumes."""
    pool = find_pool(conn)
    if pool is None:
        return
    if pool.isActive():
        libvirt_connection.when_pool_idle(lambda: pool.refresh(0))  # other tests' volume jobs
        if pool.numOfVolumes():
            return
        pool.destroy()
    pool.undefine()


@pytest.fixture
def default_pool(libvirtd) -> libvirt.virStoragePool:
    """The host's `default` dir pool, prepared as an admin prepares a KVM host when it is missing (and removed
    again afterwards in that case). A test below shows the panel creating it itself."""
    pool = find_pool(libvirtd)
    created = pool is None
    if created:
        pool = libvirtd.storagePoolDefineXML(DirPool(POOL, DEFAULT_POOL_PATH).to_xml(), 0)
        pool.build(0)
    if not pool.isActive():
        pool.create(0)
    yield pool
    if created:
        remove_pool_if_empty(libvirtd)


@pytest.fixture
def without_default_pool(libvirtd):
    """No `default` pool during the test; an empty one that existed is put back exactly as it was after."""
    pool = find_pool(libvirtd)
    saved = None
    if pool is not None:
        if pool.isActive():
            libvirt_connection.when_pool_idle(lambda: pool.refresh(0))  # other tests' volume jobs
            if pool.numOfVolumes():
                pytest.skip("the host's default pool holds volumes; not removing it, even for a moment")
        saved = (pool.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE), pool.isActive(), pool.autostart())
        if pool.isActive():
            pool.destroy()
        pool.undefine()
    yield
    remove_pool_if_empty(libvirtd)
    if saved is not None and find_pool(libvirtd) is None:
        xml, active, autostart = saved
        pool = libvirtd.storagePoolDefineXML(xml, 0)
        pool.setAutostart(autostart)
        if active:
            pool.create(0)


def find_domain(conn: libvirt.virConnect, uuid: str) -> libvirt.virDomain | None:
    try:
        return conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def find_volume(conn: libvirt.virConnect, name: str) -> libvirt.virStorageVol | None:
    try:
        pool = conn.storagePoolLookupByName(POOL)
        libvirt_connection.when_pool_idle(lambda: pool.refresh(0))  # other tests' volume jobs
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_STORAGE_POOL):
            return None
        raise


def remove_leftovers(conn: libvirt.virConnect, uuid: str) -> None:
    domain = find_domain(conn, uuid)
    if domain is not None:
        if domain.isActive():
            domain.destroy()
        domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
    for name in (f"{uuid}.qcow2", f"{uuid}-seed.iso"):
        volume = find_volume(conn, name)
        if volume is not None:
            volume.delete(0)


def act(server: Server, action: str, user) -> Operation:
    operation = actions.request_action(server, action, user)
    operations.execute(str(operation.pk))
    operation.refresh_from_db()
    server.refresh_from_db()
    assert operation.status == "succeeded", operation.error
    assert server.task is None
    return operation


def test_a_server_lives_and_dies_as_a_real_domain(libvirtd, default_pool, customer, purge_queue, settings):
    settings.REBOOT_TIMEOUT = 2  # the blank guest has no OS to answer ACPI: the reboot falls back to a reset
    host = factories.make_host(uri=URI)
    assert host.state == Host.State.READY, host.status_reason
    assert host.domain_type in ("kvm", "qemu")
    plan = factories.make_plan(slug="tiny", vcpus=1, memory_mib=128, disk_gib=1)
    server = actions.order_server(
        customer, name="real1.example.com", plan=plan, image=factories.make_image(), region=host.region
    )
    server_id = str(server.id)
    try:
        create = Operation.objects.get(server=server, type=Operation.Type.CREATE)
        operations.execute(str(create.pk))
        create.refresh_from_db()
        server.refresh_from_db()
        assert create.status == "succeeded", create.error
        assert (server.status, server.task, server.power_state) == ("running", None, "running")

        domain = find_domain(libvirtd, server_id)
        assert domain is not None
        assert domain.isActive()
        assert domain.name() == server.domain_name
        xml = domain.XMLDesc()
        assert server_id_from_xml(xml) == server_id
        root = etree.fromstring(xml.encode())
        assert root.get("type") == host.domain_type
        assert int(root.findtext("memory")) == 128 * 1024  # libvirt reports KiB
        disk = root.find("devices/disk[@device='disk']")
        assert disk.find("driver").get("type") == "qcow2"
        volume = find_volume(libvirtd, f"{server_id}.qcow2")
        assert volume is not None
        assert disk.find("source").get("file") == volume.path()
        assert volume.storagePoolLookupByVolume().name() == POOL
        assert etree.fromstring(volume.XMLDesc(0).encode()).find("target/format").get("type") == "qcow2"
        assert volume.info()[1] == 1024**3  # capacity in bytes
        allocation = Allocation.objects.get(consumer_uuid=server_id)
        assert (allocation.host_id, allocation.memory_mib, allocation.disk_gib) == (host.pk, 128, 1)

        act(server, Operation.Type.POWER_OFF, customer)
        assert (server.status, server.power_state) == ("stopped", "shutoff")
        assert not find_domain(libvirtd, server_id).isActive()

        act(server, Operation.Type.START, customer)
        assert (server.status, server.power_state) == ("running", "running")
        assert find_domain(libvirtd, server_id).isActive()

        domain_id = find_domain(libvirtd, server_id).ID()
        act(server, Operation.Type.REBOOT, customer)
        assert server.status == "running"
        domain = find_domain(libvirtd, server_id)
        assert domain.isActive()
        assert domain.ID() == domain_id  # a reset, not a new QEMU process
        assert "reset" in server.status_reason

        act(server, Operation.Type.DELETE, customer)
        assert server.status == "deleted"
        assert server.deleted_at is not None
        assert find_domain(libvirtd, server_id) is None
        assert find_volume(libvirtd, f"{server_id}.qcow2") is None
        assert find_volume(libvirtd, f"{server_id}-seed.iso") is None
        assert not Allocation.objects.filter(consumer_uuid=server_id).exists()
    finally:
        remove_leftovers(libvirtd, server_id)


@pytest.mark.alone  # removes the `default` pool the other processes' tests use
def test_probing_a_host_without_a_default_pool_creates_it(libvirtd, without_default_pool):
    host = factories.make_host(uri=URI)
    assert host.state == Host.State.READY, host.status_reason
    pool = find_pool(libvirtd)
    assert pool is not None
    assert pool.isActive()
    assert pool.autostart()
    assert etree.fromstring(pool.XMLDesc(0).encode()).findtext("target/path") == DEFAULT_POOL_PATH
