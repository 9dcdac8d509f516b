"""A create that failed gave back its capacity, its address and its subscription; rebuilding the server
from error claims all three again in the action's transaction, or answers 422 and changes nothing."""

from __future__ import annotations

import pytest

from billing.models import Subscription
from hypervisor.models import Allocation, Host, IPAddress
from panel.models import Operation
from panel.servers import actions, operations

from .. import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed(customer, catalog):
    factories.make_pool(catalog["region"], cidr="198.51.100.0/29")
    server = actions.order_server(
        customer, name="web1", plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    operation = Operation.objects.get(server=server, type=Operation.Type.CREATE)
    Host.objects.filter(pk=catalog["host"].pk).update(storage_pool="missing-pool")
    operations.execute(str(operation.pk))
    Host.objects.filter(pk=catalog["host"].pk).update(storage_pool=catalog["host"].storage_pool)
    assert not Allocation.objects.filter(consumer_uuid=server.id).exists()
    assert not IPAddress.objects.filter(consumer_uuid=server.id).exists()
    return server


def rebuild(api, customer, server, catalog):
    return api(customer).post(
        f"/api/v1/servers/{server.pk}/actions/",
        {"type": "rebuild", "image": catalog["image"].slug},
        format="json",
    )


def test_a_rebuild_from_error_claims_again(api, customer, catalog, failed):
    response = rebuild(api, customer, failed, catalog)

    assert response.status_code == 202, response.json()
    assert Allocation.objects.filter(consumer_uuid=failed.id, host=catalog["host"]).exists()
    assert IPAddress.objects.filter(consumer_uuid=failed.id).count() == 1
    assert Subscription.objects.filter(reference=str(failed.id), status="active").count() == 1
    assert response.json()["params"] == {"image": catalog["image"].slug}  # the claim bookkeeping is staff's


def test_without_a_schedulable_host_the_rebuild_is_a_422_and_changes_nothing(api, customer, catalog, failed):
    Host.objects.filter(pk=catalog["host"].pk).update(enabled=False)

    response = rebuild(api, customer, failed, catalog)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "out_of_capacity"
    failed.refresh_from_db()
    assert (failed.status, failed.task) == ("error", None)
    assert not Allocation.objects.filter(consumer_uuid=failed.id).exists()
    assert not IPAddress.objects.filter(consumer_uuid=failed.id).exists()
    assert not Operation.objects.filter(server=failed, type=Operation.Type.REBUILD).exists()
