"""Resize, snapshots, rebuild and reboot of a server on a real libvirtd (qemu:///system, QEMU emulation),
checked with libvirt and qemu-img at each step. The blank guest has no OS: it never answers ACPI, so
shutdowns and reboots fall back to power off and reset after short timeouts."""

from __future__ import annotations

import json
import os
import subprocess

import libvirt
import pytest
import yaml
from lxml import etree

from hypervisor import connection as libvirt_connection
from hypervisor import images
from hypervisor.cloudinit import read_seed_iso
from hypervisor.driver import DEFAULT_POOL_PATH
from hypervisor.models import Allocation, Host
from hypervisor.xml.storage import DirPool
from panel.models import Operation, Server, Snapshot
from panel.servers import actions
from tests import factories

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]

URI = "qemu:///system"
POOL = "default"
GIB = 1024**3


@pytest.fixture
def libvirtd() -> libvirt.virConnect:
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        pytest.fail(f"no libvirtd answers at {URI} (start it with `virtlogd -d; libvirtd -d`): {exc}")
    yield conn
    conn.close()


@pytest.fixture
def pool(libvirtd) -> libvirt.virStoragePool:
    """The host's `default` dir pool (defined for the test, and removed again, when the host lacks it)."""
    try:
        pool = libvirtd.storagePoolLookupByName(POOL)
        created = False
    except libvirt.libvirtError:
        pool = libvirtd.storagePoolDefineXML(DirPool(POOL, DEFAULT_POOL_PATH).to_xml(), 0)
        pool.build(0)
        created = True
    if not pool.isActive():
        pool.create(0)
    yield pool
    if created:
        libvirt_connection.when_pool_idle(lambda: pool.refresh(0))  # other tests' volume jobs
        if not pool.numOfVolumes():
            pool.destroy()
            pool.undefine()


def find_domain(conn: libvirt.virConnect, uuid) -> libvirt.virDomain | None:
    try:
        return conn.lookupByUUIDString(str(uuid))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def find_volume(pool: libvirt.virStoragePool, name: str) -> libvirt.virStorageVol | None:
    libvirt_connection.when_pool_idle(lambda: pool.refresh(0))  # other tests' volume jobs
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return None
        raise


@pytest.fixture
def host(libvirtd, pool, purge_queue, settings) -> Host:
    settings.SHUTDOWN_TIMEOUT = 2  # the blank guest ignores ACPI: a shutdown ends in a power off
    settings.REBOOT_TIMEOUT = 2  # …and a reboot in a reset
    host = factories.make_host(uri=URI, force_emulation=True)
    assert host.state == Host.State.READY, host.status_reason
    assert host.domain_type == "qemu"
    return host


@pytest.fixture
def leftovers(libvirtd, pool):
    """Names to clean up whatever happens: servers' domains and volumes, and base volumes of images."""
    made = {"servers": [], "volumes": []}
    yield made
    for uuid in made["servers"]:
        domain = find_domain(libvirtd, uuid)
        if domain is not None:
            if domain.isActive():
                domain.destroy()
            domain.undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
            )
        made["volumes"] += [f"{uuid}.qcow2", f"{uuid}-seed.iso"]
    for name in made["volumes"]:
        volume = find_volume(pool, name)
        if volume is not None:
            volume.delete(0)


@pytest.fixture
def tiny(db):
    return factories.make_plan(slug="tiny", vcpus=1, memory_mib=128, disk_gib=1)


@pytest.fixture
def bigger(db):
    return factories.make_plan(slug="tiny-plus", vcpus=1, memory_mib=256, disk_gib=2)


@pytest.fixture
def server(customer, host, tiny, leftovers) -> Server:
    """A running server with a blank disk (an image without a file) on the real host."""
    server = actions.order_server(
        customer, name="life1.example.com", plan=tiny, image=factories.make_image(), region=host.region
    )
    leftovers["servers"].append(str(server.id))
    create = factories.run_operation(Operation.objects.get(server=server, type=Operation.Type.CREATE))
    assert create.status == "succeeded", create.error
    server.refresh_from_db()
    assert server.status == "running"
    return server


def act(server: Server, action: str, user, **params) -> Operation:
    if action == "delete":
        operation = factories.run_operation(actions.delete_server(server, user))
    else:
        operation = factories.run_operation(actions.perform(server, action, user, params))
    server.refresh_from_db()
    assert operation.status == "succeeded", operation.error
    assert server.task is None
    return operation


def memory_kib(domain: libvirt.virDomain, flags: int = 0) -> int:
    return int(etree.fromstring(domain.XMLDesc(flags).encode()).findtext("memory"))


def qemu_img_info(path: str) -> dict:
    result = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", path], check=True, capture_output=True, text=True
    )
    return json.loads(result.stdout)


# ---------- Resize ----------


def test_a_running_server_is_resized_with_a_restart(libvirtd, pool, customer, server, bigger):
    domain = find_domain(libvirtd, server.id)
    assert memory_kib(domain) == 128 * 1024
    first_run = domain.ID()

    act(server, "resize", customer, plan="tiny-plus")

    assert (server.plan, server.vcpus, server.memory_mib, server.disk_gib) == (bigger, 1, 256, 2)
    assert (server.status, server.power_state) == ("running", "running")
    domain = find_domain(libvirtd, server.id)
    assert domain.isActive()
    assert domain.ID() != first_run  # restarted: a new QEMU process with the new memory size
    assert memory_kib(domain) == 262144
    assert domain.info()[2] == 262144  # what the running guest has, not only its definition
    assert find_volume(pool, f"{server.id}.qcow2").info()[1] == 2 * GIB
    allocation = Allocation.objects.get(consumer_uuid=server.id)
    assert (allocation.memory_mib, allocation.disk_gib) == (256, 2)


def test_a_stopped_server_is_resized_and_stays_stopped(libvirtd, pool, customer, server, bigger):
    act(server, "power_off", customer)

    act(server, "resize", customer, plan="tiny-plus")

    assert (server.plan, server.memory_mib, server.disk_gib) == (bigger, 256, 2)
    assert (server.status, server.power_state) == ("stopped", "shutoff")
    domain = find_domain(libvirtd, server.id)
    assert not domain.isActive()
    assert memory_kib(domain, libvirt.VIR_DOMAIN_XML_INACTIVE) == 262144
    assert find_volume(pool, f"{server.id}.qcow2").info()[1] == 2 * GIB

    act(server, "start", customer)  # the new size is what it starts with
    assert memory_kib(find_domain(libvirtd, server.id)) == 262144


# ---------- Snapshots ----------


def test_a_snapshot_of_the_running_server_is_taken_restored_and_deleted(libvirtd, customer, server, settings):
    xml = etree.fromstring(find_domain(libvirtd, server.id).XMLDesc(0).encode())
    (seed,) = xml.xpath("devices/disk[target/@dev='vdb']")
    # The raw seed stays out of internal snapshots: snapshot='no', which libvirt implies for (and so omits
    # from the XML of) a read-only disk.
    assert seed.find("readonly") is not None and seed.get("snapshot") in (None, "no")

    act(server, "snapshot", customer, name="before upgrade")
    snapshot = Snapshot.objects.get(server=server)
    domain = find_domain(libvirtd, server.id)
    assert domain.snapshotListNames(0) == [snapshot.libvirt_name]
    taken = domain.snapshotLookupByName(snapshot.libvirt_name, 0)
    assert etree.fromstring(taken.getXMLDesc(0).encode()).findtext("state") == "running"

    act(server, "power_off", customer)
    act(server, "restore", customer, snapshot=snapshot.pk)
    assert (server.status, server.power_state) == ("running", "running")
    assert find_domain(libvirtd, server.id).isActive()

    act(server, "delete_snapshot", customer, snapshot=snapshot.pk)
    assert find_domain(libvirtd, server.id).snapshotListNames(0) == []
    assert not Snapshot.objects.filter(server=server).exists()

    # A server deleted with a snapshot left leaves nothing behind on the host.
    act(server, "snapshot", customer, name="kept")
    act(server, "delete", customer)
    assert server.status == "deleted"
    assert find_domain(libvirtd, server.id) is None
    assert not Snapshot.objects.filter(server=server).exists()


# ---------- Rebuild ----------


@pytest.fixture
def small_image(tmp_path, leftovers, settings):
    """A small real qcow2 image registered on the panel (its base volume is removed after the test)."""
    settings.IMAGE_DIR = tmp_path
    raw = tmp_path / "image.raw"
    raw.write_bytes(os.urandom(2 * 1024 * 1024))
    path = tmp_path / "image.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)], check=True)
    image = images.register_image("tiny-os", str(path), name="Tiny OS", os_family="test")
    leftovers["volumes"].append(images.volume_name(image, "disk", image.checksum))
    return image


def seed_files(pool, server) -> dict[str, bytes]:
    with open(find_volume(pool, f"{server.id}-seed.iso").path(), "rb") as handle:
        return read_seed_iso(handle.read())


def test_a_rebuild_gives_a_new_overlay_on_the_image_and_a_new_seed(
    libvirtd, pool, customer, server, small_image
):
    disk = find_volume(pool, f"{server.id}.qcow2").path()
    assert "backing-filename" not in qemu_img_info(disk)  # the blank disk it was created with
    assert yaml.safe_load(seed_files(pool, server)["meta-data"])["instance-id"].startswith(str(server.id))

    operation = act(server, "rebuild", customer, image="tiny-os")

    assert server.image == small_image
    assert (server.status, server.power_state) == ("running", "running")
    base = find_volume(pool, images.volume_name(small_image, "disk", small_image.checksum))
    assert base is not None
    info = qemu_img_info(disk)
    assert info["backing-filename"] == base.path()
    assert info["virtual-size"] == 1 * GIB  # grown to the plan's disk, not the image's 2 MiB
    meta = yaml.safe_load(seed_files(pool, server)["meta-data"])
    assert meta["instance-id"] == f"{server.id}-{operation.id.hex[:8]}"  # cloud-init runs again
    assert meta["local-hostname"] == "life1"
    domain = find_domain(libvirtd, server.id)
    assert domain.isActive()
    assert disk in domain.XMLDesc(0)


# ---------- Reboot ----------


def test_a_reboot_the_guest_ignores_falls_back_to_a_reset(libvirtd, customer, server):
    process = find_domain(libvirtd, server.id).ID()

    act(server, "reboot", customer)

    assert (server.status, server.power_state) == ("running", "running")
    assert "reset" in server.status_reason
    domain = find_domain(libvirtd, server.id)
    assert domain.isActive()
    assert domain.ID() == process  # a reset of the same QEMU process, not a restart
