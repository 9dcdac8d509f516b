"""A worker's create asks Postgres the same few questions however many servers and hosts there are: the
operation locked with its server, host, plan and image in one statement, the host's turn, the lease, the
server's addresses, its filter, the outcome. The hot statements are prepared once per database connection
(panel.servers.operation_rows), so a later create only executes them. The number is pinned, so that a
query added to the create is a decision, not an accident."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hypervisor import connection as libvirt_connection
from panel.models import Operation, Server
from panel.servers import actions, operations
from tests import factories

pytestmark = pytest.mark.django_db

# The lease's transaction (a savepoint here): the operation locked with its server, host, plan and image
# (and the database's clock) taking the host's turn lock in the same statement; the heavy operations ahead
# counted, the lease taken and the server to provisioning in one statement; then the addresses, the
# firewall, "defining" recorded; the outcome: the operation closed and the server running, in one statement.
CREATE_QUERIES = 8


@pytest.fixture
def host_cleaned(catalog):
    """The simulated host outlives the test: the domains and volumes made here are removed afterwards."""
    conn = libvirt_connection.connection(catalog["host"].uri)
    domains = {domain.UUIDString() for domain in conn.listAllDomains()}
    pool = conn.storagePoolLookupByName(catalog["host"].storage_pool)
    volumes = set(pool.listVolumes())
    yield
    for domain in conn.listAllDomains():
        if domain.UUIDString() not in domains:
            if domain.isActive():
                domain.destroy()
            domain.undefine()
    for name in set(pool.listVolumes()) - volumes:
        pool.storageVolLookupByName(name).delete(0)


def _create(customer, catalog, name: str) -> list[str]:
    server = actions.order_server(
        customer, name=name, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    operation = Operation.objects.get(server=server, type=Operation.Type.CREATE)
    with CaptureQueriesContext(connection) as queries:
        operations.execute(str(operation.pk))
    server.refresh_from_db()
    assert (server.status, server.task) == (Server.Status.RUNNING, None)
    return [query["sql"] for query in queries.captured_queries]


def test_a_create_asks_the_same_few_questions_however_big_the_installation(
    customer, catalog, settings, host_cleaned
):
    settings.DEFAULT_QUOTA = {"servers": 100}
    factories.make_pool(catalog["region"], cidr="198.51.100.0/24")
    _create(customer, catalog, "first.example.com")  # prepares the hot statements on this connection
    second = _create(customer, catalog, "second.example.com")

    for index in range(5):  # more servers of the customer on the host
        _create(customer, catalog, f"web{index}.example.com")
    later = _create(customer, catalog, "later.example.com")

    assert len(later) == len(second), "\n".join(later)
    assert len(later) <= CREATE_QUERIES, "\n".join(later)
    assert not [sql for sql in later if sql.startswith("PREPARE")], "prepared again on the same connection"
