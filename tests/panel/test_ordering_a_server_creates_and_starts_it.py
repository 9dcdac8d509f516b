"""The vertical slice: an API order becomes a running libvirt domain through a real Celery worker."""

import pytest

from hypervisor import connection
from hypervisor.models import Allocation
from hypervisor.xml.domain import server_id_from_xml
from panel.models import Operation, Server
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_api_order_becomes_a_running_domain(api, customer, catalog, celery_worker):
    client = api(customer)
    response = client.post(
        "/api/v1/servers/",
        {"name": "web1.example.com", "plan": catalog["plan"].slug, "image": catalog["image"].slug},
        format="json",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "pending"
    assert body["task"] == "create"
    assert body["region"] == catalog["region"].slug
    server_id = body["id"]

    server = wait_for(
        lambda: Server.objects.filter(pk=server_id, status="running", task__isnull=True).first(),
        message="the server never reached running",
    )
    assert server.power_state == "running"
    detail = client.get(f"/api/v1/servers/{server_id}/").json()
    assert detail["status"] == "running"
    assert detail["task"] is None

    domain = connection.connection(catalog["host"].uri).lookupByUUIDString(server_id)
    assert domain.isActive()
    assert server_id_from_xml(domain.XMLDesc()) == server_id
    assert Allocation.objects.get(consumer_uuid=server_id).memory_mib == catalog["plan"].memory_mib
    create = Operation.objects.get(server_id=server_id, type="create")
    assert create.status == "succeeded"
    assert create.requested_by == customer


def test_power_actions_and_delete_go_through_the_worker(api, customer, catalog, celery_worker):
    client = api(customer)
    server_id = client.post(
        "/api/v1/servers/",
        {"name": "db1", "plan": catalog["plan"].slug, "image": catalog["image"].slug},
        format="json",
    ).json()["id"]
    wait_for(lambda: Server.objects.filter(pk=server_id, status="running", task__isnull=True).exists())
    conn = connection.connection(catalog["host"].uri)

    def act(action_type: str, expected_status: str) -> dict:
        response = client.post(f"/api/v1/servers/{server_id}/actions/", {"type": action_type}, format="json")
        assert response.status_code == 202, response.content
        action = response.json()
        assert action["type"] == action_type
        wait_for(
            lambda: (
                client.get(f"/api/v1/servers/{server_id}/actions/{action['id']}/").json()["status"]
                == "succeeded"
            ),
            message=f"{action_type} did not succeed",
        )
        assert Server.objects.get(pk=server_id).status == expected_status
        return action

    act("power_off", "stopped")
    assert not conn.lookupByUUIDString(server_id).isActive()
    act("start", "running")
    assert conn.lookupByUUIDString(server_id).isActive()
    act("reboot", "running")
    act("shutdown", "stopped")
    assert not conn.lookupByUUIDString(server_id).isActive()

    listing = client.get(f"/api/v1/servers/{server_id}/actions/").json()
    assert [a["type"] for a in listing["results"]][:4] == ["shutdown", "reboot", "start", "power_off"]

    response = client.delete(f"/api/v1/servers/{server_id}/")
    assert response.status_code == 202
    assert response.json()["status"] == "deleting"
    wait_for(lambda: Server.objects.get(pk=server_id).status == "deleted", message="delete did not finish")
    assert server_id not in [d.UUIDString() for d in conn.listAllDomains()]
    volumes = conn.storagePoolLookupByName(catalog["host"].storage_pool).listVolumes()
    assert f"{server_id}.qcow2" not in volumes
    assert not Allocation.objects.filter(consumer_uuid=server_id).exists()
    assert client.get("/api/v1/servers/").json()["count"] == 0
