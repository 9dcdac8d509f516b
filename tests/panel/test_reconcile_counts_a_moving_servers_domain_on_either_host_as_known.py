"""While a server migrates or is evacuated, its domain shows up on the host it is moving to before the
panel records the switch-over (a live migration's incoming domain, a cold copy defined there). Reconcile
of that host does not report it as a domain the panel does not know; once the server is idle again, a
domain of it on a host it is not on is unknown, as before."""

from __future__ import annotations

import pytest

from hypervisor import connection
from hypervisor.xml.domain import Domain
from panel.models import Notice, Operation, Server
from panel.servers import actions, operations
from panel.servers.reconcile import reconcile_host
from panel.servers.states import Task
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("task", [Task.MIGRATE, Task.EVACUATE])
def test_a_moving_servers_domain_on_the_other_host_is_not_unknown(customer, catalog, task, tmp_path):
    server = actions.order_server(
        customer, name="mover", plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    operations.execute(str(Operation.objects.get(server=server, type=Operation.Type.CREATE).pk))
    other = factories.make_host(uri=factories.node_uri(tmp_path), region=catalog["region"])
    conn = connection.connection(other.uri)
    incoming = conn.defineXML(
        Domain(
            name="mover",
            uuid=server.id,
            domain_type="test",
            arch="i686",
            vcpus=1,
            memory_mib=64,
            graphics=False,
        ).to_xml()
    )
    incoming.create()
    key = f"unknown-domain:{other.pk}:{server.id}"

    Server.objects.filter(pk=server.pk).update(task=task)
    assert reconcile_host(other)["unknown"] == 0
    assert not Notice.objects.filter(key=key, resolved_at__isnull=True).exists()

    Server.objects.filter(pk=server.pk).update(task=None)
    assert reconcile_host(other)["unknown"] == 1
    assert Notice.objects.filter(key=key, resolved_at__isnull=True).exists()
