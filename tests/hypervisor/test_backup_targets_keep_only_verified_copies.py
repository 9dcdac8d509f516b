"""Backup targets keep a file only once its sha256 was checked on the target itself: a storage pool on a
real host (through libvirt streams) and a directory on an SSH server (a private sshd here) reached with the
panel's key and the recorded host keys. A copy cut short leaves nothing under the file's name."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from hypervisor import backup_targets, connection, credentials
from hypervisor.connection import HypervisorError
from hypervisor.models import BackupTarget
from tests import real_workers
from tests.sshd import SSHD, Sshd

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]

DATA = os.urandom(3 * 1024 * 1024 + 17)


def chunks(data: bytes = DATA, size: int = 1 << 20) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
def sshd(tmp_path, settings) -> Iterator[Sshd]:
    if not Path(SSHD).exists():
        pytest.fail("openssh-server is missing: apt-get install -y openssh-server")
    settings.DATA_DIR = Path(tempfile.mkdtemp(prefix="vps", dir="/tmp"))  # short: ssh's paths live here
    server = Sshd(tmp_path / "sshd")
    server.start()
    server.authorize(credentials.authorized_keys_line())
    yield server
    server.stop()
    shutil.rmtree(settings.DATA_DIR, ignore_errors=True)


@pytest.fixture
def ssh_target(sshd, tmp_path) -> BackupTarget:
    keys = backup_targets.scan_host_keys("127.0.0.1", sshd.port)
    assert "ssh-ed25519" in keys
    return BackupTarget.objects.create(
        name="backup server", kind=BackupTarget.Kind.SSH, ssh_address="root@127.0.0.1", ssh_port=sshd.port,
        directory=str(tmp_path / "backups" / "eu"), ssh_host_keys=keys,
    )  # fmt: skip


@pytest.fixture
def pool_target(transactional_db, tmp_path) -> Iterator[BackupTarget]:
    """A storage pool of the test's own (made by the target on first use) on the real libvirtd."""
    with real_workers.real_libvirtd() as conn:
        host = real_workers.kvm_host()
        name = f"h1-backups-{uuid.uuid4().hex[:8]}"
        directory = tmp_path / "pool"
        yield BackupTarget.objects.create(
            name="pool", kind=BackupTarget.Kind.HOST_POOL, host=host, pool=name, pool_path=str(directory)
        )
        try:
            pool = conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            return
        for volume in pool.listAllVolumes(0):
            volume.delete(0)
        connection.when_pool_idle(pool.destroy)
        connection.when_pool_idle(pool.undefine)


def test_an_ssh_target_stores_verifies_fetches_and_deletes(ssh_target, tmp_path):
    assert backup_targets.check(ssh_target) == backup_targets.CheckResult(ok=True)
    stored = backup_targets.store(ssh_target, "srv-1.qcow2.gz", chunks())
    assert stored == backup_targets.StoredFile("srv-1.qcow2.gz", len(DATA), hashlib.sha256(DATA).hexdigest())
    directory = Path(ssh_target.directory)
    assert sorted(path.name for path in directory.iterdir()) == ["srv-1.qcow2.gz"]  # no .partial left
    assert (directory / "srv-1.qcow2.gz").read_bytes() == DATA
    assert backup_targets.exists(ssh_target, "srv-1.qcow2.gz")
    assert b"".join(backup_targets.fetch(ssh_target, "srv-1.qcow2.gz")) == DATA
    backup_targets.verify(ssh_target, stored)

    with open(directory / "srv-1.qcow2.gz", "r+b") as handle:  # the file rots on the backup server
        handle.seek(1000)
        handle.write(b"\0" if DATA[1000] else b"\1")
    with pytest.raises(HypervisorError, match="does not match"):
        backup_targets.verify(ssh_target, stored)

    backup_targets.delete(ssh_target, "srv-1.qcow2.gz")
    backup_targets.delete(ssh_target, "srv-1.qcow2.gz")  # idempotent
    assert not backup_targets.exists(ssh_target, "srv-1.qcow2.gz")
    with pytest.raises(HypervisorError, match="reading srv-1.qcow2.gz from the backup server failed"):
        b"".join(backup_targets.fetch(ssh_target, "srv-1.qcow2.gz"))


def test_a_copy_cut_short_leaves_nothing_on_the_ssh_target(ssh_target):
    def broken() -> Iterator[bytes]:
        yield DATA[: 1 << 20]
        raise OSError("the host's stream broke")

    with pytest.raises(OSError, match="stream broke"):
        backup_targets.store(ssh_target, "srv-2.qcow2.gz", broken())
    assert not backup_targets.exists(ssh_target, "srv-2.qcow2.gz")
    assert list(Path(ssh_target.directory).iterdir()) == []


def test_names_and_paths_that_could_escape_are_refused(ssh_target, tmp_path):
    for name in ("../etc/passwd", "-rf", ".hidden", "a/b", ""):
        with pytest.raises(HypervisorError, match="not a backup file name"):
            backup_targets.store(ssh_target, name, chunks())
    ssh_target.directory = "backups; touch /tmp/pwned"
    with pytest.raises(HypervisorError, match="absolute path"):
        backup_targets.store(ssh_target, "x.gz", chunks())
    # A path with spaces and quotes is quoted, not interpreted.
    ssh_target.directory = str(tmp_path / "it's $HOME `id`")
    backup_targets.store(ssh_target, "x.gz", chunks(b"abc"))
    assert (Path(ssh_target.directory) / "x.gz").read_bytes() == b"abc"


def test_an_unwritable_directory_or_a_changed_host_key_fails_the_check(ssh_target, sshd):
    ssh_target.directory = "/proc/h1-cannot-be-made"
    result = backup_targets.check(ssh_target)
    assert not result.ok and "writing to the backup directory failed" in result.reason
    sshd.stop()
    sshd.new_host_key()
    sshd.start()
    result = backup_targets.check(ssh_target)
    assert result == backup_targets.CheckResult(
        ok=False, reason="the host's SSH key does not match the key recorded at onboarding"
    )


def test_a_host_pool_target_stores_verifies_fetches_and_deletes(pool_target):
    assert backup_targets.check(pool_target).ok  # makes the pool
    stored = backup_targets.store(pool_target, "srv-3.qcow2.gz", chunks())
    assert stored.size == len(DATA) and stored.sha256 == hashlib.sha256(DATA).hexdigest()
    assert backup_targets.exists(pool_target, "srv-3.qcow2.gz")
    assert b"".join(backup_targets.fetch(pool_target, "srv-3.qcow2.gz")) == DATA
    backup_targets.verify(pool_target, stored)

    with open(Path(pool_target.pool_path) / "srv-3.qcow2.gz", "r+b") as handle:
        handle.seek(len(DATA) - 1)
        handle.write(b"\0" if DATA[-1] else b"\1")
    with pytest.raises(HypervisorError, match="does not match"):
        backup_targets.verify(pool_target, stored)

    backup_targets.delete(pool_target, "srv-3.qcow2.gz")
    backup_targets.delete(pool_target, "srv-3.qcow2.gz")
    assert not backup_targets.exists(pool_target, "srv-3.qcow2.gz")


def test_a_pool_that_cannot_be_made_fails_the_check(pool_target):
    pool_target.pool_path = ""
    pool_target.pool = f"h1-missing-{uuid.uuid4().hex[:6]}"
    result = backup_targets.check(pool_target)
    assert result == backup_targets.CheckResult(ok=False, reason=f"no storage pool named {pool_target.pool}")
