"""Fixtures of the panel tests that run real Celery worker processes against the real libvirtd
(qemu:///system); what they use is in tests/real_workers.py."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from hypervisor import connection, credentials, hosts
from hypervisor.models import BackupTarget, Host
from tests import factories, real_workers
from tests.sshd import SSHD, Sshd


@pytest.fixture
def workers(libvirtd, settings, tmp_path) -> Iterator[real_workers.Workers]:
    """Worker processes for the test (killed before the test's domains are cleaned up and its database
    flushed), on a queue of its own that this process sends operations to."""
    with real_workers.worker_processes(settings, tmp_path) as pool:
        yield pool


@pytest.fixture
def libvirtd(transactional_db) -> Iterator[libvirt.virConnect]:
    """A connection to the real libvirtd with its `default` pool; at the end every domain and volume of the
    test's servers is removed (and the pool, if the test made it and it is empty)."""
    with real_workers.real_libvirtd() as conn:
        yield conn


@pytest.fixture
def kvm_host(libvirtd) -> Host:
    """The local libvirtd as a host (QEMU emulation, as guests boot here) in a region with an IPv4 pool."""
    return real_workers.kvm_host()


@pytest.fixture
def ssh_host(tmp_path, settings, libvirtd) -> Iterator[Host]:
    """This machine's libvirtd as a remote host: `qemu+ssh://` through a private sshd with the panel's key
    (QEMU emulation, as guests boot here), in a region of its own without an IP pool."""
    if not Path(SSHD).exists():
        pytest.fail("openssh-server is missing: apt-get install -y openssh-server")
    # A short PANEL_DATA_DIR: the key files and ssh's paths live under it.
    settings.DATA_DIR = Path(tempfile.mkdtemp(prefix="vps", dir="/tmp"))
    sshd = Sshd(tmp_path / "sshd")
    sshd.start()
    host = hosts.register_host("kvm-remote", sshd.uri, factories.make_region())
    hosts.probe_host(host.pk)  # records the host's SSH key (trust on first use)
    sshd.authorize(credentials.authorized_keys_line())
    Host.objects.filter(pk=host.pk).update(force_emulation=True)
    host = hosts.probe_host(host.pk)
    assert host.state == Host.State.READY, host.status_reason
    yield host
    connection.forget(host.uri)
    sshd.stop()
    shutil.rmtree(settings.DATA_DIR, ignore_errors=True)


@pytest.fixture
def conn(catalog) -> Iterator[libvirt.virConnect]:
    """The `catalog` fixture's simulated host connection (the one the driver uses); the domains and volumes
    the test leaves are removed afterwards, since the simulated host outlives it. Modules with a catalogue
    of their own define their own `conn`."""
    conn = connection.connection(catalog["host"].uri)
    before = {domain.UUIDString() for domain in conn.listAllDomains()}
    pool = conn.storagePoolLookupByName(catalog["host"].storage_pool)
    volumes_before = set(pool.listVolumes())
    yield conn
    for domain in conn.listAllDomains():
        if domain.UUIDString() not in before:
            if domain.isActive():
                domain.destroy()
            domain.undefine()
    for name in set(pool.listVolumes()) - volumes_before:
        pool.storageVolLookupByName(name).delete(0)


@pytest.fixture
def ssh_backup_target(tmp_path, settings) -> Iterator[tuple[BackupTarget, Path]]:
    """A backup server: a private sshd on 127.0.0.1 that accepts the panel's key, and a directory on it as a
    backup target (not yet any region's). Yields the target and the directory."""
    from hypervisor import backup_targets

    settings.DATA_DIR = Path(tempfile.mkdtemp(prefix="vps", dir="/tmp"))  # short paths for ssh's files
    settings.BACKUP_SPOOL_DIR = tmp_path / "spool"
    sshd = Sshd(tmp_path / "backup-sshd")
    sshd.start()
    sshd.authorize(credentials.authorized_keys_line())
    directory = tmp_path / "backups"
    directory.mkdir()
    target = BackupTarget.objects.create(
        name="backup-server", kind=BackupTarget.Kind.SSH, ssh_address="root@127.0.0.1", ssh_port=sshd.port,
        directory=str(directory), ssh_host_keys=backup_targets.scan_host_keys("127.0.0.1", sshd.port),
    )  # fmt: skip
    yield target, directory
    sshd.stop()
    shutil.rmtree(settings.DATA_DIR, ignore_errors=True)
