"""A heavy operation (a create, a rebuild, a backup...) takes its host's turn lock in the statement that
locks its row (panel.servers.operation_rows.lock), so that the count of the heavy operations ahead of it,
a statement later, sees what the turn's earlier holders committed; other operations take no turn lock.
Another database session cannot take the host's turn while the worker's transaction holds it."""

from __future__ import annotations

import psycopg2
import pytest
from django.db import connection, transaction

from panel.models import Operation
from panel.servers import actions, operation_rows, operations

pytestmark = pytest.mark.django_db


def _create(customer, catalog) -> Operation:
    server = actions.order_server(
        customer, name="turn", plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    return Operation.objects.get(server=server, type=Operation.Type.CREATE)


def _turn_is_free(host_id: int) -> bool:
    """Whether another session could take the host's turn now (it lets go at once)."""
    other = psycopg2.connect(**connection.get_connection_params())
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [operations.HOST_TURN_LOCK, host_id])
            return cursor.fetchone()[0]
    finally:
        other.rollback()
        other.close()


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("advisory locks are Postgres's")


def test_beginning_a_create_holds_its_hosts_turn_to_the_end_of_the_transaction(customer, catalog):
    create = _create(customer, catalog)
    host_id = catalog["host"].pk
    assert _turn_is_free(host_id)

    with transaction.atomic():  # the test's transaction goes on after it: the lock is still held
        begun = operations.begin(str(create.pk))

    assert begun is not None and begun.status == Operation.Status.RUNNING
    assert not _turn_is_free(host_id)


def test_locking_an_operation_of_another_type_takes_no_turn(customer, catalog):
    create = _create(customer, catalog)

    with transaction.atomic():
        locked, _now = operation_rows.lock(str(create.pk), turn=(operations.HOST_TURN_LOCK, ("resize",)))

    assert locked.pk == create.pk and locked.server.host_id == catalog["host"].pk
    assert _turn_is_free(catalog["host"].pk)
