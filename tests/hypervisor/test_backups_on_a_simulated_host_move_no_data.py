"""On libvirt's simulated driver (test:///), which stores no data, a backup "succeeds" without a job: an
empty scratch volume, nothing to read, and a restored disk is a volume without data; a host_pool target on
a simulated host keeps an empty volume and answers with the size and sha256 of the bytes given."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from hypervisor import backup_images, backup_targets, connection, disk_backup
from hypervisor.models import BackupTarget
from hypervisor.xml.domain import Disk, Domain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def domain_uuid(catalog) -> uuid.UUID:
    host = catalog["host"]
    domain_uuid = uuid.uuid4()
    xml = Domain(
        name=f"h1-sim-{str(domain_uuid)[:8]}", uuid=domain_uuid, domain_type="test", vcpus=1, memory_mib=64,
        disks=[Disk(source_file=f"/default-pool/{domain_uuid}.qcow2")], graphics=False,
    ).to_xml()  # fmt: skip
    domain = connection.run(host, lambda conn: conn.defineXML(xml))
    yield domain_uuid
    connection.run(host, lambda conn: domain.undefine())


def test_a_backup_on_a_simulated_host_is_an_empty_full_one(catalog, domain_uuid, tmp_path):
    host = catalog["host"]
    scratch = f"{domain_uuid}-backup-1.qcow2"
    started = disk_backup.begin(host, domain_uuid, scratch, "c1", since="c0")
    assert started == disk_backup.BackupStart(incremental=False, frozen=False, offline=False)
    disk_backup.begin(host, domain_uuid, scratch, "c1")  # again: the leftover scratch is replaced
    assert disk_backup.progress(host, domain_uuid) is None
    disk_backup.wait(host, domain_uuid, lambda done, total: None, timeout=1)
    assert list(disk_backup.read_volume(host, scratch)) == []
    assert disk_backup.volume_size(host, scratch) == 0
    assert disk_backup.checkpoints(host, domain_uuid) == []
    disk_backup.delete_volume(host, scratch)
    disk_backup.delete_volume(host, scratch)

    target = BackupTarget.objects.create(
        name="sim", kind=BackupTarget.Kind.HOST_POOL, host=host, pool="default"
    )
    compressed = b"".join(backup_images.compress([]))
    stored = backup_targets.store(target, "x.qcow2.gz", [compressed])
    assert stored == backup_targets.StoredFile(
        "x.qcow2.gz", len(compressed), hashlib.sha256(compressed).hexdigest()
    )
    assert backup_targets.exists(target, "x.qcow2.gz")
    assert list(backup_targets.fetch(target, "x.qcow2.gz")) == []
    backup_targets.delete(target, "x.qcow2.gz")
    assert not backup_targets.exists(target, "x.qcow2.gz")

    empty = tmp_path / "empty.qcow2"
    empty.touch()
    name = f"{domain_uuid}-restored.qcow2"
    path = disk_backup.write_disk(host, name, Path(empty), 2 * 1024**3)
    assert path.endswith(name)
    disk_backup.delete_volume(host, name)
