"""An evacuation never restores a backup kept on the host the server was lost on (a storage pool there is
gone with it), on its first attempt nor on any retry: each retry carries the lost host of the first
evacuation (`lost_host`), although from the second retry on the failed one's source is the target. On
simulated hosts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from hypervisor.models import BackupTarget, Host
from panel.infrastructure import host_moves
from panel.models import Backup, Operation, Server
from panel.servers import evacuation, operations
from tests import factories
from tests.panel.backup_policy_support import give_backup_target, make_backup, now

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(customer, tmp_path):
    region, plan, image = factories.make_catalog()
    factories.make_pool(region)
    uri = factories.node_uri(tmp_path, name="retry-lost.xml")
    with factories.TidySimulatedHost(uri):
        lost = factories.make_host(uri, region=region, name="retry-lost")
        server = factories.make_real_server(
            customer, plan=plan, image=image, region=region, name="web.example"
        )
        spare = factories.make_host(factories.node_uri(tmp_path, name="retry-spare.xml"), region=region)
        give_backup_target(region)
        on_lost = BackupTarget.objects.create(
            name="pool-on-the-lost-host",
            kind=BackupTarget.Kind.HOST_POOL,
            host=lost,
            pool="vpspanel-backups",
            pool_path="/var/lib/libvirt/vpspanel-backups",
        )
        elsewhere = make_backup(server, now() - timedelta(hours=2))
        newest = make_backup(server, now() - timedelta(hours=1), target=on_lost)
        Host.objects.filter(pk=lost.pk).update(state=Host.State.DOWN)
        yield {"lost": lost, "spare": spare, "server": server, "elsewhere": elsewhere, "newest": newest}


def reap(operation: Operation) -> None:
    """The operation fails as the reaper fails it past its deadline (the server stays where it is)."""
    Operation.objects.filter(pk=operation.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    assert operations.reap_stuck_operations() == 1


def test_each_retry_names_the_first_lost_host_and_never_restores_a_backup_kept_there(admin_user, world):
    server, lost, spare = world["server"], world["lost"], world["spare"]

    first = evacuation.evacuate_server(server, admin_user)
    assert first.params["lost_host"] == lost.pk and first.params["backup"] == world["elsewhere"].pk
    Backup.objects.filter(pk=world["elsewhere"].pk).update(status=Backup.Status.FAILED)  # its file is bad
    assert factories.run_operation(first).status == Operation.Status.FAILED  # after it moved to the spare
    server.refresh_from_db()
    assert (server.status, server.host_id) == (Server.Status.ERROR, spare.pk)

    retries = []
    for _attempt in range(2):
        retry = evacuation.evacuate_server(server, admin_user)
        retries.append(retry)
        assert retry.params["retry"] is True and retry.params["target_host"] == spare.pk
        assert retry.params["lost_host"] == lost.pk
        assert "backup" not in retry.params  # the newest backup is on the lost host; the other is bad
        reap(retry)
    assert retries[1].params["source_host"] == spare.pk  # what the lost host cannot be read from

    # Evacuating the lost host again still finds the server its retries left in error on the spare.
    move = host_moves.start_evacuation(lost, admin_user)
    assert [item.server_id for item in move.items.all()] == [server.pk]
