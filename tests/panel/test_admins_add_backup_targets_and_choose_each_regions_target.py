"""Backup targets: admins add a storage pool on a registered host or a directory over SSH (whose host keys
are recorded as it is added), change them, check that one answers, and choose each region's target on the
backup targets page; every change is one line on the audit log. Bad input is a form error that stores
nothing; staff only look; customers get 403."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from hypervisor import backup_targets as targets_driver
from hypervisor import credentials
from hypervisor.models import BackupTarget, Region
from panel.infrastructure import backup_targets
from panel.models import ActivityEvent
from tests import factories
from tests.sshd import Sshd

pytestmark = pytest.mark.django_db

TARGETS = "/staff/backup-targets/"


def text(response) -> str:
    return response.content.decode()


def target_events():
    return ActivityEvent.objects.filter(target__startswith="backup_target:").order_by("at", "pk")


@pytest.fixture
def region(db):
    return factories.make_region()


@pytest.fixture
def backup_host(region, tmp_path):
    """A second simulated host that holds backups (it takes no servers), with a node of its own: the shared
    test:///default keeps the pools earlier tests of this process made."""
    return factories.make_host(factories.node_uri(tmp_path), region=region, name="store1", probe=False)


@pytest.fixture
def sshd(tmp_path, settings):
    """A private SSH server on loopback that accepts the panel's key (a backup server)."""
    settings.DATA_DIR = Path(tempfile.mkdtemp(prefix="vps", dir="/tmp"))
    server = Sshd(tmp_path / "sshd")
    server.start()
    server.authorize(credentials.authorized_keys_line())
    yield server
    server.stop()
    shutil.rmtree(settings.DATA_DIR, ignore_errors=True)


def test_an_admin_adds_a_host_pool_target_and_sets_it_for_the_region(client, admin_user, region, backup_host):
    client.force_login(admin_user)
    response = client.post(
        TARGETS,
        {"name": "store1-pool", "kind": "host_pool", "host": backup_host.pk, "pool": "", "ssh_port": ""},
        follow=True,
    )
    target = BackupTarget.objects.get(name="store1-pool")
    assert (target.kind, target.host, target.pool, target.ssh_host_keys) == (
        "host_pool",
        backup_host,
        "vpspanel-backups",
        "",
    )
    assert response.redirect_chain[-1][0] == f"{TARGETS}{target.pk}/"
    assert "The backup target store1-pool was added." in text(response)
    assert "store1: vpspanel-backups" in text(response)

    response = client.post(f"{TARGETS}regions/", {"region": region.pk, "target": target.pk}, follow=True)
    assert Region.objects.get(pk=region.pk).backup_target == target
    assert "The servers of Jakarta are backed up to store1-pool now." in text(response)
    listing = text(client.get(TARGETS))
    assert "store1-pool" in listing and f'<option value="{target.pk}" selected>' in listing

    client.post(f"{TARGETS}regions/", {"region": region.pk, "target": ""})
    assert Region.objects.get(pk=region.pk).backup_target is None
    assert [event.text for event in target_events()] == [
        "Backup target store1-pool added (store1: vpspanel-backups)."
    ]
    region_lines = ActivityEvent.objects.filter(target=f"region:{region.pk}").order_by("at", "pk")
    assert [event.text for event in region_lines] == [
        "Region Jakarta backs up to store1-pool now.",
        "Region Jakarta has no backup target now.",
    ]
    assert all(event.staff_action and event.actor == admin_user for event in region_lines)


def check(client, target):
    """The Check button sends the check to a worker (a web request talks to neither libvirt nor SSH); here
    it runs as a worker runs it, then the target's page is read."""
    response = client.post(f"{TARGETS}{target.pk}/check/", follow=True)
    assert "reload this page" in text(response)
    targets_driver.record_check(target.pk)
    return client.get(f"{TARGETS}{target.pk}/")


def test_the_check_button_says_whether_the_target_takes_backups(client, admin_user, backup_host):
    target = backup_targets.create_target(admin_user, name="sim", kind="host_pool", host=backup_host)
    client.force_login(admin_user)
    response = check(client, target)
    assert "no storage pool named vpspanel-backups" in text(response) and "Failed" in text(response)

    backup_targets.update_target(target, admin_user, pool="default")  # the simulated host's pool
    response = check(client, target)
    assert "Can take backups" in text(response)


def test_a_bad_target_is_a_form_error_and_nothing_is_stored(client, admin_user, backup_host):
    client.force_login(admin_user)
    cases = [
        ({"name": "a", "kind": "host_pool"}, "Choose a registered host for the storage pool."),
        ({"name": "a", "kind": "host_pool", "host": backup_host.pk, "pool_path": "relative/dir"}, "absolute"),
        ({"name": "a", "kind": "ssh", "ssh_address": "no-at-sign", "directory": "/srv"}, "user@host"),
        ({"name": "a", "kind": "ssh", "ssh_address": "-oProxy@x", "directory": "/srv"}, "user@host"),
        ({"name": "a", "kind": "ssh", "ssh_address": "b@-x", "directory": "/srv"}, "user@host"),
        ({"name": "a", "kind": "ssh", "ssh_address": "b@192.0.2.1", "directory": "srv"}, "absolute path"),
        ({"name": "a", "kind": "ssh", "ssh_address": "b@192.0.2.1", "directory": "/s", "ssh_port": "0"}, "1"),
        ({"name": "a", "kind": "ftp"}, "Select a valid choice"),
    ]
    for data, expected in cases:
        response = client.post(TARGETS, {"ssh_port": "", **data})
        assert response.status_code == 200, data
        assert expected in text(response), data
        assert 'class="field__error"' in text(response), data
    assert not BackupTarget.objects.exists()
    assert not target_events().exists()

    backup_targets.create_target(admin_user, name="taken", kind="host_pool", host=backup_host)
    response = client.post(TARGETS, {"name": "taken", "kind": "host_pool", "host": backup_host.pk})
    assert "A backup target named taken exists already." in text(response)
    assert BackupTarget.objects.count() == 1


def test_an_ssh_target_records_the_servers_host_keys_and_checks_it_can_write(
    client, admin_user, sshd, tmp_path
):
    client.force_login(admin_user)
    directory = tmp_path / "backups"
    response = client.post(
        TARGETS,
        {"name": "vault", "kind": "ssh", "ssh_address": "root@127.0.0.1", "ssh_port": sshd.port,
         "directory": str(directory)},
        follow=True,
    )  # fmt: skip
    target = BackupTarget.objects.get(name="vault")
    assert target.ssh_host_keys.strip(), "the host keys are recorded"
    assert sshd.fingerprint() in text(response)
    response = check(client, target)
    assert "Can take backups" in text(response), text(response)
    assert directory.is_dir()

    # Another directory: saved, the keys stay; the check writes there.
    response = client.post(
        f"{TARGETS}{target.pk}/",
        {"name": "vault", "ssh_address": "root@127.0.0.1", "ssh_port": sshd.port,
         "directory": str(tmp_path / "other"), "is_active": "on"},
        follow=True,
    )  # fmt: skip
    assert "The backup target vault was saved." in text(response)
    assert BackupTarget.objects.get(pk=target.pk).directory == str(tmp_path / "other")
    assert [event.text for event in target_events()][-1] == (
        f"Backup target vault changed: directory={tmp_path / 'other'}."
    )


def test_an_ssh_server_that_does_not_answer_is_refused(admin_user, tmp_path):
    from tests.sshd import free_port

    with pytest.raises(ValidationError) as refused:
        backup_targets.create_target(
            admin_user, name="nobody", kind="ssh", ssh_address="root@127.0.0.1", ssh_port=free_port(),
            directory="/srv/backups",
        )  # fmt: skip
    assert refused.value.error_list[0].code == "no_host_keys"
    assert "No SSH host keys could be read from 127.0.0.1" in refused.value.messages[0]
    assert not BackupTarget.objects.exists()


def test_the_check_of_a_target_that_cannot_take_backups_says_why(client, admin_user, sshd, tmp_path):
    target = backup_targets.create_target(
        admin_user, name="vault", kind="ssh", ssh_address="root@127.0.0.1", ssh_port=sshd.port,
        directory=str(tmp_path / "b"),
    )  # fmt: skip
    sshd.authorize("")  # the backup server no longer accepts the panel's key
    client.force_login(admin_user)
    response = check(client, target)
    assert "Failed" in text(response)


def test_a_target_a_region_uses_stays_in_use_and_an_unused_one_cannot_be_chosen(
    client, admin_user, region, backup_host
):
    used = backup_targets.create_target(admin_user, name="used", kind="host_pool", host=backup_host)
    backup_targets.set_region_target(admin_user, region, used)
    client.force_login(admin_user)
    response = client.post(f"{TARGETS}{used.pk}/", {"name": "used", "host": backup_host.pk, "pool": "p"})
    assert "used is the backup target of Jakarta: choose another target for them first." in text(response)
    assert BackupTarget.objects.get(pk=used.pk).is_active and BackupTarget.objects.get(pk=used.pk).pool != "p"

    idle = backup_targets.create_target(admin_user, name="idle", kind="host_pool", host=backup_host)
    backup_targets.update_target(idle, admin_user, is_active=False)
    response = client.post(f"{TARGETS}regions/", {"region": region.pk, "target": idle.pk}, follow=True)
    assert "Select a valid choice" in text(response)
    assert Region.objects.get(pk=region.pk).backup_target == used


def test_staff_only_look_and_customers_are_refused(client, staff, customer, admin_user, region, backup_host):
    target = backup_targets.create_target(admin_user, name="store", kind="host_pool", host=backup_host)
    client.force_login(staff)
    assert client.get(TARGETS).status_code == 200
    page = text(client.get(f"{TARGETS}{target.pk}/"))
    assert "store" in page and "Change the target" not in page and "Check</button>" not in page
    assert "Add a backup target" not in text(client.get(TARGETS))
    assert client.post(TARGETS, {"name": "x", "kind": "host_pool", "host": backup_host.pk}).status_code == 403
    assert client.post(f"{TARGETS}{target.pk}/", {"name": "renamed"}).status_code == 403
    assert client.post(f"{TARGETS}{target.pk}/check/").status_code == 403
    assert client.post(f"{TARGETS}regions/", {"region": region.pk, "target": target.pk}).status_code == 403
    assert BackupTarget.objects.get(pk=target.pk).name == "store"
    assert Region.objects.get(pk=region.pk).backup_target is None

    client.force_login(customer)
    for url in (TARGETS, f"{TARGETS}{target.pk}/"):
        assert client.get(url).status_code == 403
    assert client.post(f"{TARGETS}{target.pk}/check/").status_code == 403


def test_the_nav_leads_admins_and_staff_to_the_backup_targets(client, staff):
    client.force_login(staff)
    assert f'href="{TARGETS}"' in text(client.get("/staff/ip-pools/"))
