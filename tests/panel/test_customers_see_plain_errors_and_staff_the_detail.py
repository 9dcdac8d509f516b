"""Customers see no action params (suspension reasons, billing undo data) and no hypervisor errors naming
hosts and paths; staff see the detail."""

from __future__ import annotations

import pytest

from hypervisor.models import Host
from panel.models import Operation
from panel.servers import actions, operations

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed(customer, catalog):
    server = actions.order_server(
        customer, name="web1", plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )
    Host.objects.filter(pk=catalog["host"].pk).update(storage_pool="secret-pool-on-host7")
    operations.execute(str(Operation.objects.get(server=server).pk))
    return server


def test_the_api_gives_customers_plain_words(api, customer, failed):
    server = api(customer).get(f"/api/v1/servers/{failed.pk}/").json()
    actions_list = api(customer).get(f"/api/v1/servers/{failed.pk}/actions/").json()["results"]

    assert server["status"] == "error"
    assert "secret-pool" not in server["status_reason"]
    assert "secret-pool" not in str(actions_list)
    assert actions_list[0]["error"] and actions_list[0]["detail"] is None


def test_staff_see_the_detail(api, staff, failed):
    servers = api(staff).get("/api/v1/admin/servers/").json()["results"]
    assert "secret-pool-on-host7" in next(s for s in servers if s["id"] == str(failed.pk))["status_detail"]


def test_the_server_page_shows_no_detail(client, customer, failed):
    client.force_login(customer)
    page = client.get(f"/servers/{failed.pk}/").content.decode()
    assert "secret-pool" not in page


def test_a_staff_suspension_reason_stays_with_staff(api, customer, staff, catalog):
    from .. import factories

    server = factories.make_server(customer, catalog)
    operation = actions.suspend_server(server, "fraud check: card flagged", staff)

    body = api(customer).get(f"/api/v1/servers/{server.pk}/actions/{operation.pk}/").json()

    assert body["params"] == {}
    assert "fraud" not in str(body)
