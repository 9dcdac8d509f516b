"""The operator command add_backup_target: it adds a storage pool target on a registered host or an SSH
target (recording the server's host keys), makes it the backup target of the regions named with --region,
says "exists" (and changes nothing of the target) when run again, and stops with a clear error for bad
input, adding nothing."""

from __future__ import annotations

import shutil
import tempfile
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from hypervisor import credentials
from hypervisor.models import BackupTarget, Region
from panel.models import ActivityEvent
from tests import factories
from tests.sshd import Sshd

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("add_backup_target", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def region():
    return factories.make_region()


@pytest.fixture
def store(region):
    return factories.make_host(region=region, name="store1", probe=False)


def test_a_host_pool_target_is_added_once_and_set_for_regions(region, store):
    other = factories.make_region("bandung", "Bandung")
    out = run("store1-pool", "--host", "store1", "--pool", "backups", "--pool-path", "/srv/backups",
              "--region", "jakarta", "--region", "bandung")  # fmt: skip
    target = BackupTarget.objects.get()
    assert (target.name, target.kind, target.host, target.pool, target.pool_path) == (
        "store1-pool",
        "host_pool",
        store,
        "backups",
        "/srv/backups",
    )
    assert "Backup target store1-pool added (store1: backups)." in out
    assert (
        "Region jakarta backs up to store1-pool." in out and "Region bandung backs up to store1-pool." in out
    )
    assert {r.backup_target for r in Region.objects.filter(pk__in=[region.pk, other.pk])} == {target}
    assert ActivityEvent.objects.filter(target=f"backup_target:{target.pk}").count() == 1

    out = run("store1-pool", "--host", "store1", "--pool", "elsewhere")
    assert "Backup target store1-pool exists (store1: backups); nothing of it changed." in out
    assert BackupTarget.objects.get().pool == "backups"
    assert ActivityEvent.objects.filter(target=f"backup_target:{target.pk}").count() == 1


def test_an_ssh_target_records_the_host_keys(region, tmp_path, settings):
    settings.DATA_DIR = Path(tempfile.mkdtemp(prefix="vps", dir="/tmp"))
    sshd = Sshd(tmp_path / "sshd")
    sshd.start()
    sshd.authorize(credentials.authorized_keys_line())
    try:
        out = run("vault", "--ssh", f"root@127.0.0.1:{sshd.port}", "--directory", "/srv/backups",
                  "--region", "jakarta")  # fmt: skip
    finally:
        sshd.stop()
        shutil.rmtree(settings.DATA_DIR, ignore_errors=True)
    target = BackupTarget.objects.get()
    assert (target.ssh_address, target.ssh_port, target.directory) == (
        "root@127.0.0.1",
        sshd.port,
        "/srv/backups",
    )
    assert target.ssh_host_keys.strip()
    assert f"Backup target vault added (root@127.0.0.1:/srv/backups (port {sshd.port}))." in out
    assert Region.objects.get(pk=region.pk).backup_target == target


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["t", "--host", "nope"], "No host 'nope' (hosts: store1)."),
        (["t", "--host", "store1", "--region", "mars"], "No region 'mars' (regions: jakarta)."),
        (["t", "--ssh", "no-at-sign", "--directory", "/srv"], "Give the SSH address as user@host"),
        (["t", "--ssh", "b@192.0.2.1:port", "--directory", "/srv"], "Not a port: 'port'."),
        (["t", "--ssh", "b@192.0.2.1", "--directory", "srv"], "absolute path"),
        (
            ["t", "--ssh", "b@192.0.2.1", "--directory", "/srv", "--pool", "p"],
            "--pool and --pool-path are for",
        ),
        (["t", "--host", "store1", "--pool-path", "relative"], "The storage pool path must be absolute."),
    ],
)
def test_bad_input_stops_with_a_clear_error_and_adds_nothing(store, args, message):
    with pytest.raises(CommandError) as error:
        run(*args)
    assert message in str(error.value)
    assert not BackupTarget.objects.exists()
    assert Region.objects.get().backup_target is None
