"""A shut-off domain moves to the other real libvirtd with its disk copied through libvirt streams: the
disk, an overlay of a base image, arrives flattened (what the guest reads from the base and from the
overlay alike, no backing file), the domain is defined there (not started) on that host's bridge and
paths, a copy an earlier attempt left half-done is replaced, a second call does nothing more, and the
source keeps everything until finish_source. The copy then starts on the target. A running domain is
refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from hypervisor import connection, disk_backup, driver, migration
from hypervisor.migration import MigrationFailed, Progress, Where
from hypervisor.power_state import PowerState
from tests.second_libvirtd import define, register_hosts, second_libvirtd, tiny_request  # noqa: F401

pytestmark = [pytest.mark.kvm, pytest.mark.django_db]

MIB = 1024**2


def qemu_io(path: Path | str, *commands: str, read_only: bool = False) -> None:
    arguments = ["qemu-io", *(["-r"] if read_only else [])]
    for command in commands:
        arguments += ["-c", command]
    result = subprocess.run([*arguments, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "Pattern verification failed" not in result.stdout, result


def base_volume(host, name: str, directory: Path) -> str:
    """A qcow2 base image with 0x41 in its first 64 KiB, uploaded into the host's pool; returns its path."""
    local = directory / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(local), "1G"], check=True)
    qemu_io(local, "write -P 0x41 0 64k")
    disk_backup.upload(host, host.storage_pool, "", name, [local.read_bytes()])

    def path(conn: libvirt.virConnect) -> str:
        pool = conn.storagePoolLookupByName(host.storage_pool)
        connection.when_pool_idle(lambda: pool.refresh(0))
        return pool.storageVolLookupByName(name).path()

    return connection.run(host, path)


def test_a_shut_off_domain_moves_with_its_disk_flattened(second_libvirtd, tmp_path):  # noqa: F811
    system, host2 = register_hosts(second_libvirtd)
    request = tiny_request()
    base_name = f"base-{request.uuid}.qcow2"
    try:
        disk = define(system, request, base_path=base_volume(system, base_name, tmp_path), start=False)
        # The system daemon's pool is this machine's directory: the overlay gets 0x42 at 1 MiB.
        qemu_io(disk, "write -P 0x42 1M 64k")

        driver.start(system, request.uuid)
        migration.prepare_target(system, host2, request, b"seed")
        with pytest.raises(MigrationFailed, match="shut off"):
            migration.cold_migrate(system, host2, request, on_progress=print)
        driver.power_off(system, request.uuid)
        # What an interrupted copy would have left: a partial file under the disk's name.
        disk_backup.upload(host2, host2.storage_pool, "", request.volume_name, [b"partial" * 1000])

        reported: list[Progress] = []
        migration.cold_migrate(system, host2, request, on_progress=reported.append)
        assert reported[-1].percent == 100
        assert reported[-1].bytes_done == reported[-1].bytes_total > 0
        assert migration.locate(system, host2, request.uuid) is Where.BOTH  # source not finished yet
        migration.cold_migrate(system, host2, request, on_progress=reported.append)  # a retry: done already

        conn = libvirt.open(host2.uri)
        try:
            domain = conn.lookupByUUIDString(str(request.uuid))
            assert not domain.isActive()
            root = etree.fromstring(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
        finally:
            conn.close()
        [interface] = root.findall("devices/interface")
        assert interface.get("type") == "bridge"
        assert interface.find("source").get("bridge") == "virbr0"
        assert interface.find("mac").get("address") == request.mac
        assert interface.find("filterref").get("filter") == f"vps-{request.uuid}"
        sources = [element.get("file") for element in root.findall("devices/disk/source")]
        assert sources == [
            f"/var/lib/libvirt/images/{request.volume_name}",
            f"/var/lib/libvirt/images/{request.seed_volume_name}",
        ]

        copy = tmp_path / "copy.qcow2"
        with open(copy, "wb") as handle:
            for chunk in disk_backup.read_volume(host2, request.volume_name):
                handle.write(chunk)
        info = subprocess.run(
            ["qemu-img", "info", "--output=json", str(copy)], capture_output=True, text=True, check=True
        ).stdout
        assert '"backing-filename"' not in info and '"virtual-size": 1073741824' in info
        qemu_io(copy, "read -P 0x41 0 64k", "read -P 0x42 1M 64k", "read -P 0 2M 64k", read_only=True)

        # The source keeps its domain and disk until it is finished there; the copy needs nothing of it.
        assert driver.power_state(system, request.uuid) is PowerState.SHUTOFF
        migration.finish_source(system, request)
        assert migration.locate(system, host2, request.uuid) is Where.TARGET
        assert driver.start(host2, request.uuid) is PowerState.RUNNING
    finally:
        driver.destroy(system, request)
        driver.destroy(host2, request)
        disk_backup.delete_volume(system, base_name)
