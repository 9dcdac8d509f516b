"""Backups of a domain's disk on the real libvirtd (qemu:///system, QEMU emulation, a guest without an OS):
libvirt's push-mode backup job with checkpoints, full then incremental; a shut-off domain's offline copy;
an aborted job; the images assembled back into the disk, bit for bit, and written back to the host."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from hypervisor import backup_images, connection, disk_backup
from hypervisor.connection import HypervisorError
from hypervisor.models import Host
from hypervisor.xml.domain import Disk, Domain
from hypervisor.xml.storage import pool_target_path
from tests import real_workers

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]
MIB = 1024**2


@pytest.fixture
def host(transactional_db) -> Iterator[Host]:
    """The local libvirtd as a host, its `default` pool ready."""
    with real_workers.real_libvirtd():
        yield real_workers.kvm_host()


def qemu_io(path: Path, *commands: str) -> None:
    args = [arg for command in commands for arg in ("-c", command)]
    subprocess.run(["qemu-io", "-f", "qcow2", *args, str(path)], check=True, capture_output=True, timeout=60)


def identical(first: Path, second: Path) -> bool:
    """qemu-img compare (contents as the guest sees them; -U: the disk may be in use)."""
    result = subprocess.run(
        ["qemu-img", "compare", "-U", str(first), str(second)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode == 0


class Guest:
    """A domain without an OS on the host: disk vda (a qcow2 in the host's pool, `data_mib` of it written)
    and a read-only raw seed vdb, as a server has; removed with everything it left afterwards."""

    def __init__(self, host: Host, size_mib: int = 64, data_mib: int = 8, backing: Path | None = None):
        self.host = host
        self.uuid = uuid.uuid4()
        self.conn = connection.connection(host)
        self.pool = self.conn.storagePoolLookupByName(host.storage_pool)
        self.directory = Path(pool_target_path(self.pool.XMLDesc(0)))
        self.disk = self.directory / f"{self.uuid}.qcow2"
        self.seed = self.directory / f"{self.uuid}-seed.iso"
        command = ["qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=1.1"]
        if backing is not None:
            command += ["-b", str(backing), "-F", "qcow2"]
        subprocess.run([*command, str(self.disk), f"{size_mib}M"], check=True, timeout=60)
        if data_mib:
            qemu_io(self.disk, f"write -P 0xab 0 {data_mib}M", f"write -P 0xcd {size_mib // 2}M 1M")
        self.seed.write_bytes(b"seed" * 1024)
        connection.when_pool_idle(lambda: self.pool.refresh(0))
        domain = Domain(
            name=f"h1-backup-{str(self.uuid)[:8]}", uuid=self.uuid, domain_type="qemu", vcpus=1,
            memory_mib=64,
            disks=[Disk(source_file=str(self.disk)),
                   Disk(source_file=str(self.seed), target_dev="vdb", driver_type="raw", read_only=True)],
            graphics=False,
        )  # fmt: skip
        self.domain = self.conn.defineXML(domain.to_xml())

    def scratch(self, number: int) -> str:
        return f"{self.uuid}-backup-{number}.qcow2"

    def start(self) -> None:
        self.domain.create()

    def stop(self) -> None:
        if self.domain.isActive():
            self.domain.destroy()

    def remove(self) -> None:
        self.stop()
        self.domain.undefineFlags(
            libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        )
        for path in self.directory.glob(f"{self.uuid}*"):
            path.unlink()
        connection.when_pool_idle(lambda: self.pool.refresh(0))


@pytest.fixture
def guests(host) -> Iterator[list[Guest]]:
    made: list[Guest] = []
    yield made
    for guest in made:
        guest.remove()


def save(host: Host, name: str, path: Path) -> Path:
    with open(path, "wb") as handle:
        for chunk in disk_backup.read_volume(host, name):
            handle.write(chunk)
    return path


def test_a_full_then_an_incremental_backup_assemble_into_the_disk(host, guests, tmp_path):
    guest = Guest(host)
    guests.append(guest)
    guest.start()

    started = disk_backup.begin(host, guest.uuid, guest.scratch(1), "c1", freeze_timeout=2)
    assert started == disk_backup.BackupStart(incremental=False, frozen=False, offline=False)
    seen: list[tuple[int, int]] = []
    disk_backup.wait(host, guest.uuid, lambda done, total: seen.append((done, total)), timeout=60, poll=0.1)
    assert seen[-1] == (64 * MIB, 64 * MIB)  # the whole disk was gone through
    full_bytes = disk_backup.volume_size(host, guest.scratch(1))
    full = save(host, guest.scratch(1), tmp_path / "full.qcow2")
    assert full.stat().st_size == full_bytes
    disk_backup.delete_volume(host, guest.scratch(1))
    disk_backup.delete_volume(host, guest.scratch(1))  # idempotent
    assert identical(full, guest.disk)

    # The guest writes 1 MiB (here with the domain shut off: qemu-io marks the disk's persistent dirty
    # bitmap as QEMU would), and runs again.
    guest.stop()
    qemu_io(guest.disk, "write -P 0x5a 16M 1M")
    guest.start()
    started = disk_backup.begin(host, guest.uuid, guest.scratch(2), "c2", since="c1", freeze_timeout=2)
    assert started.incremental and not started.offline
    disk_backup.wait(host, guest.uuid, lambda done, total: None, timeout=60, poll=0.1)
    incremental_bytes = disk_backup.volume_size(host, guest.scratch(2))
    incremental = save(host, guest.scratch(2), tmp_path / "incremental.qcow2")
    disk_backup.delete_volume(host, guest.scratch(2))
    print(f"full backup {full_bytes} bytes, incremental after 1 MiB written {incremental_bytes} bytes")
    assert incremental_bytes < 2 * MIB < 9 * MIB < full_bytes
    assert disk_backup.checkpoints(host, guest.uuid) == ["c1", "c2"]
    assert not identical(full, guest.disk)

    restored = tmp_path / "restored.qcow2"
    backup_images.assemble([full, incremental], restored)
    assert identical(restored, guest.disk)
    info = backup_images.info(restored)
    assert "backing-filename" not in info and info["format"] == "qcow2"
    assert backup_images.virtual_size(restored) == 64 * MIB

    # Through gzip and back, as the files travel to and from a target.
    gz = tmp_path / "incremental.qcow2.gz"
    gz.write_bytes(b"".join(backup_images.compress([incremental.read_bytes()])))
    back = tmp_path / "back.qcow2"
    backup_images.decompress_to([gz.read_bytes()], back)
    assert back.read_bytes() == incremental.read_bytes()


def test_a_backup_since_a_checkpoint_the_domain_lacks_is_full(host, guests):
    guest = Guest(host)
    guests.append(guest)
    guest.start()
    started = disk_backup.begin(host, guest.uuid, guest.scratch(1), "c1", since="gone", freeze_timeout=2)
    assert not started.incremental
    disk_backup.wait(host, guest.uuid, lambda done, total: None, timeout=60, poll=0.1)
    # Begun again under the same names (a redelivered task): the leftover scratch and checkpoint are replaced.
    again = disk_backup.begin(host, guest.uuid, guest.scratch(1), "c1", since="c1", freeze_timeout=2)
    assert not again.incremental
    disk_backup.wait(host, guest.uuid, lambda done, total: None, timeout=60, poll=0.1)
    assert disk_backup.checkpoints(host, guest.uuid) == ["c1"]
    assert disk_backup.volume_size(host, guest.scratch(1)) > 8 * MIB
    assert disk_backup.progress(host, guest.uuid) is None


def test_a_shut_off_server_gets_a_standalone_offline_copy(host, guests, tmp_path):
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "64M"], check=True)
    qemu_io(base, "write -P 0x11 4M 2M")
    guest = Guest(host, backing=base, data_mib=1)  # an overlay on a base image, as servers' disks are
    guests.append(guest)
    started = disk_backup.begin(host, guest.uuid, guest.scratch(1), "c1")
    assert started == disk_backup.BackupStart(incremental=False, frozen=False, offline=True)
    copy = save(host, guest.scratch(1), tmp_path / "copy.qcow2")
    disk_backup.delete_volume(host, guest.scratch(1))
    assert "backing-filename" not in backup_images.info(copy)
    assert identical(copy, guest.disk)
    assert disk_backup.checkpoints(host, guest.uuid) == []

    # Written back as another server's disk, grown to its plan's size.
    name = f"{guest.uuid}-restored.qcow2"
    path = disk_backup.write_disk(host, name, copy, 128 * MIB)
    assert backup_images.virtual_size(Path(path)) == 128 * MIB
    assert identical(Path(path), guest.disk)  # the added space reads as zeros
    assert "backing-filename" not in backup_images.info(Path(path))


def test_an_aborted_backup_leaves_no_scratch_file_and_fails_its_wait(host, guests):
    guest = Guest(host, size_mib=1024, data_mib=1000)
    guests.append(guest)
    guest.start()
    disk_backup.begin(host, guest.uuid, guest.scratch(1), "c1", freeze_timeout=2)
    with pytest.raises(HypervisorError, match="did not finish within 0 seconds"):
        disk_backup.wait(host, guest.uuid, lambda done, total: None, timeout=0, poll=0.05)
    assert disk_backup.progress(host, guest.uuid) is None
    disk_backup.abort(host, guest.uuid)  # idempotent
    connection.when_pool_idle(lambda: guest.pool.refresh(0))
    assert guest.scratch(1) not in guest.pool.listVolumes()  # libvirt removed the job's target file
    # The checkpoint the job began with stays (the next backup since it would still be complete).
    assert disk_backup.checkpoints(host, guest.uuid) == ["c1"]
    with pytest.raises(HypervisorError, match="Operation canceled"):
        disk_backup.wait(host, guest.uuid, lambda done, total: None, timeout=10)
