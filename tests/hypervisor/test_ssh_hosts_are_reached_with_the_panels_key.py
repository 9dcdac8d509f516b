"""qemu+ssh hosts: the panel connects with its own key pair (the private half stored encrypted), records
the host's SSH keys at onboarding and accepts no other key afterwards.

A private sshd on a free local port plays the remote host; behind it the real libvirtd answers, reached
through libvirt's own ssh transport and the panel's ssh wrapper.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import uuid
from io import StringIO
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import libvirt
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection as db_connection

from hypervisor import connection, credentials, hosts
from hypervisor.models import Host, PanelKeyPair
from tests import factories
from tests.sshd import SSHD, Sshd, free_port

# transaction=True: libvirt calls run in worker threads with their own database connections, which must see
# the panel's key pair committed (as they do in production).
pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]

REFUSED = "the host refused the panel's SSH key: add it to the host's authorized_keys"
CHANGED = "the host's SSH key does not match the key recorded at onboarding"


@pytest.fixture
def sshd(tmp_path):
    if not os.path.exists(SSHD):
        pytest.fail("openssh-server is missing: apt-get install -y openssh-server")
    server = Sshd(tmp_path / "sshd")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def data_dir(settings) -> Path:
    """A short PANEL_DATA_DIR, like /var/lib/vpspanel (see the test of a long one below)."""
    directory = Path(tempfile.mkdtemp(prefix="vps", dir="/tmp"))
    settings.DATA_DIR = directory
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def private_pool(tmp_path):
    """A storage pool of the test's own on the real libvirtd (probing touches no pool other tests use)."""
    name = f"ssh-test-{uuid.uuid4().hex[:8]}"
    yield name, str(tmp_path / "pool")
    conn = libvirt.open("qemu:///system")
    try:
        pool = conn.storagePoolLookupByName(name)
        if pool.isActive():
            pool.destroy()
        pool.undefine()
    except libvirt.libvirtError:
        pass
    finally:
        conn.close()


@pytest.fixture
def ssh_host(sshd, data_dir, private_pool):
    pool_name, pool_path = private_pool
    host = hosts.register_host(
        "kvm-ssh", sshd.uri, factories.make_region(), storage_pool=pool_name, storage_pool_path=pool_path
    )
    yield host
    connection.forget(host.uri)


def test_until_the_admin_adds_the_panels_key_probing_fails_with_a_readable_reason(sshd, ssh_host):
    host = hosts.probe_host(ssh_host.pk)
    assert host.state == Host.State.ERROR
    assert host.status_reason == REFUSED
    # The host's key was recorded on this first contact (trust on first use).
    assert host.ssh_host_keys.startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")
    assert credentials.host_key_fingerprints(host.ssh_host_keys) == [f"ssh-ed25519 {sshd.fingerprint()}"]


def test_with_the_panels_key_authorised_the_host_is_probed_over_ssh(sshd, ssh_host):
    assert hosts.probe_host(ssh_host.pk).status_reason == REFUSED
    sshd.authorize(credentials.authorized_keys_line())
    host = hosts.probe_host(ssh_host.pk)
    assert host.state == Host.State.READY, host.status_reason
    assert host.libvirt_version and host.hypervisor_version.startswith("QEMU")
    assert host.vcpus_total > 0 and host.memory_mib_total > 0
    assert host.domain_type in ("kvm", "qemu")
    assert ssh_host.storage_pool in [pool["name"] for pool in host.inventory["pools"]]
    # The health check reaches it the same way.
    assert hosts.check_host(host) == Host.State.READY


def reinstall(sshd: Sshd) -> None:
    """The host is reinstalled (or someone sits in the middle): same address, another host key."""
    sshd.stop()
    sshd.new_host_key()
    sshd.start()


def test_a_changed_host_key_is_refused_until_an_admin_forgets_the_recorded_one(sshd, ssh_host):
    sshd.authorize(credentials.authorized_keys_line())
    host = hosts.probe_host(ssh_host.pk)
    assert host.state == Host.State.READY, host.status_reason
    recorded = host.ssh_host_keys

    reinstall(sshd)
    connection.forget(host.uri)
    host = hosts.probe_host(host.pk)
    assert host.state == Host.State.ERROR
    assert host.status_reason == CHANGED
    assert host.ssh_host_keys == recorded  # never replaced silently

    hosts.forget_host_keys(host.pk)
    host = hosts.probe_host(host.pk)
    assert host.state == Host.State.READY, host.status_reason
    assert host.ssh_host_keys != recorded
    assert credentials.host_key_fingerprints(host.ssh_host_keys) == [f"ssh-ed25519 {sshd.fingerprint()}"]


def test_a_changed_host_key_is_named_as_such_with_a_long_data_directory(
    sshd, settings, tmp_path, private_pool
):
    settings.DATA_DIR = tmp_path / "srv" / "hosting" / "vpspanel-production" / "var"
    assert len(str(settings.DATA_DIR)) > 60
    sshd.authorize(credentials.authorized_keys_line())
    pool_name, pool_path = private_pool
    host = hosts.register_host(
        "kvm-ssh", sshd.uri, factories.make_region(), storage_pool=pool_name, storage_pool_path=pool_path
    )
    try:
        assert hosts.probe_host(host.pk).state == Host.State.READY
        reinstall(sshd)
        connection.forget(host.uri)
        host = hosts.probe_host(host.pk)
    finally:
        connection.forget(host.uri)
    assert (host.state, host.status_reason) == (Host.State.ERROR, CHANGED)


def test_the_panels_private_key_is_stored_encrypted_and_written_only_to_private_files(ssh_host, data_dir):
    pair = PanelKeyPair.objects.get()
    assert pair.private_key.startswith("fernet:")
    assert "PRIVATE KEY" not in pair.private_key
    assert pair.public_key.startswith("ssh-ed25519 ") and pair.public_key.endswith(" vpspanel")
    assert credentials.authorized_keys_line() == pair.public_key

    hosts.probe_host(ssh_host.pk)
    host = Host.objects.get(pk=ssh_host.pk)
    uri = credentials.connect_uri(host)
    query = parse_qs(urlsplit(uri).query)
    directory = data_dir / "run" / "hosts" / str(host.pk)
    assert Path(query["keyfile"][0]) == directory / "id_ed25519"
    assert Path(query["command"][0]) == directory / "ssh"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "id_ed25519").stat().st_mode) == 0o600
    assert stat.S_IMODE((directory / "known_hosts").stat().st_mode) == 0o600
    assert stat.S_IMODE((directory / "ssh").stat().st_mode) == 0o700  # the wrapper libvirt runs
    assert "OPENSSH PRIVATE KEY" in (directory / "id_ed25519").read_text()
    assert (directory / "known_hosts").read_text() == host.ssh_host_keys
    wrapper = (directory / "ssh").read_text()
    assert "StrictHostKeyChecking=yes" in wrapper and f"UserKnownHostsFile={directory}/known_hosts" in wrapper


def test_add_host_prints_the_authorized_keys_line_and_the_recorded_host_key(sshd, data_dir, private_pool):
    factories.make_region()
    sshd.authorize(credentials.authorized_keys_line())
    pool_name, pool_path = private_pool
    out = StringIO()
    uri = sshd.uri
    try:
        call_command(
            "add_host", "kvm-ssh", uri, "--storage-pool", pool_name, "--pool-path", pool_path, stdout=out
        )
    finally:
        connection.forget(uri)
    printed = out.getvalue()
    assert f"echo '{credentials.authorized_keys_line()}' >> ~root/.ssh/authorized_keys" in printed
    assert f"Recorded SSH host key: ssh-ed25519 {sshd.fingerprint()}" in printed
    assert f"Host kvm-ssh ({uri}) in jakarta: ready" in printed


def test_add_host_for_a_host_that_refuses_the_key_prints_the_line_and_fails(sshd, data_dir):
    factories.make_region()
    out = StringIO()
    with pytest.raises(CommandError, match="refused the panel's SSH key"):
        call_command("add_host", "kvm-ssh", sshd.uri, stdout=out)
    connection.forget(sshd.uri)
    printed = out.getvalue()
    assert credentials.authorized_keys_line() in printed
    assert f"Recorded SSH host key: ssh-ed25519 {sshd.fingerprint()}" in printed
    assert Host.objects.get(name="kvm-ssh").state == Host.State.ERROR


def test_no_ssh_server_at_the_address_is_a_readable_error(data_dir):
    host = hosts.register_host(
        "kvm-gone", f"qemu+ssh://root@127.0.0.1:{free_port()}/system", factories.make_region()
    )
    host = hosts.probe_host(host.pk)
    assert host.state == Host.State.ERROR
    assert host.status_reason == f"no SSH server answered at 127.0.0.1:{urlsplit(host.uri).port}"
    assert host.ssh_host_keys == ""


def test_connecting_leaves_no_database_connection_open_in_libvirts_threads(sshd, ssh_host):
    sshd.authorize(credentials.authorized_keys_line())
    host = hosts.probe_host(ssh_host.pk)
    assert host.state == Host.State.READY, host.status_reason
    connection.forget(host.uri)
    # The next call opens a new libvirt connection; afterwards the thread should hold no database connection.
    holds_a_database_connection = connection.run(host, lambda conn: db_connection.connection is not None)
    assert holds_a_database_connection is False
