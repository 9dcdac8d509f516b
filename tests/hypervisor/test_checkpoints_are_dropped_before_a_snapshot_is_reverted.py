"""On libvirt 9.0 / QEMU 7.2 backup checkpoints (dirty bitmaps in the disk) and internal snapshots get in
each other's way: a running domain with checkpoints can take a snapshot, a shut-off one cannot, and no
domain whose disk has dirty bitmaps can be reverted to a snapshot. drop_checkpoints removes the bitmaps
(for a shut-off domain by starting it paused for the moment it takes), after which reverting works."""

from __future__ import annotations

import subprocess

import libvirt
import pytest

from hypervisor import disk_backup
from hypervisor.xml.snapshot import Snapshot
from tests.hypervisor import test_a_running_server_is_backed_up_full_then_incrementally as real_backups

Guest = real_backups.Guest
host = real_backups.host  # the fixtures: the local libvirtd as a host, the test's guests removed afterwards
guests = real_backups.guests

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]


def bitmaps(guest: Guest) -> int:
    info = subprocess.run(["qemu-img", "info", "-U", str(guest.disk)], capture_output=True, text=True)
    return info.stdout.count("granularity")


def backed_up(host, guest: Guest, checkpoint: str) -> None:
    disk_backup.begin(host, guest.uuid, guest.scratch(1), checkpoint, freeze_timeout=1)
    disk_backup.wait(host, guest.uuid, lambda done, total: None, timeout=60, poll=0.1)
    disk_backup.delete_volume(host, guest.scratch(1))


def test_a_running_domain_with_checkpoints_takes_a_snapshot_but_cannot_revert_to_it(host, guests):
    guest = Guest(host)
    guests.append(guest)
    guest.start()
    backed_up(host, guest, "c1")
    guest.domain.snapshotCreateXML(Snapshot("s1").to_xml(), 0)  # allowed
    with pytest.raises(libvirt.libvirtError, match="Device has active dirty bitmaps"):
        guest.domain.revertToSnapshot(guest.domain.snapshotLookupByName("s1"), 0)
    # ... and QEMU died with it: the domain is shut off.
    assert not guest.domain.isActive()
    guest.start()
    disk_backup.drop_checkpoints(host, guest.uuid)  # running: with their bitmaps
    assert disk_backup.checkpoints(host, guest.uuid) == [] and bitmaps(guest) == 0
    guest.domain.revertToSnapshot(guest.domain.snapshotLookupByName("s1"), 0)
    assert guest.domain.isActive()


def test_a_shut_off_domain_with_checkpoints_takes_no_snapshot_until_they_are_dropped(host, guests):
    guest = Guest(host)
    guests.append(guest)
    guest.start()
    backed_up(host, guest, "c1")
    guest.stop()
    with pytest.raises(libvirt.libvirtError, match="cannot perform block operations while checkpoint exists"):
        guest.domain.snapshotCreateXML(Snapshot("s1").to_xml(), 0)
    with pytest.raises(libvirt.libvirtError, match="cannot delete checkpoint for inactive domain"):
        guest.domain.checkpointLookupByName("c1", 0).delete(0)
    disk_backup.drop_checkpoints(host, guest.uuid)  # started paused for it, and destroyed again
    assert not guest.domain.isActive()
    assert disk_backup.checkpoints(host, guest.uuid) == [] and bitmaps(guest) == 0
    guest.domain.snapshotCreateXML(Snapshot("s1").to_xml(), 0)
    guest.domain.revertToSnapshot(guest.domain.snapshotLookupByName("s1"), 0)


def test_metadata_only_leaves_the_bitmaps_in_a_disk_about_to_be_replaced(host, guests):
    guest = Guest(host)
    guests.append(guest)
    guest.start()
    backed_up(host, guest, "c1")
    guest.stop()
    disk_backup.drop_checkpoints(host, guest.uuid, metadata_only=True)
    assert not guest.domain.isActive()
    assert disk_backup.checkpoints(host, guest.uuid) == [] and bitmaps(guest) == 1
