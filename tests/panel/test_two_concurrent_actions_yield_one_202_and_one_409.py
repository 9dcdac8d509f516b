"""Starting an action is a compare-and-swap: of two concurrent requests exactly one wins."""

import threading

import pytest
from django.db import connection

from panel.models import Operation, Server
from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db(transaction=True)


def running_server(owner, catalog) -> Server:
    return factories.make_server(owner, catalog, name="web1")


@pytest.mark.parametrize(
    "first,second", [("reboot", "power_off"), ("power_off", "power_off"), ("reboot", "delete")]
)
def test_two_concurrent_actions_yield_one_202_and_one_409(customer, catalog, purge_queue, first, second):
    server = running_server(customer, catalog)
    clients = [api_client_for(customer), api_client_for(customer)]
    barrier = threading.Barrier(2)
    results = {}

    def act(index: int, action: str) -> None:
        barrier.wait()
        if action == "delete":
            response = clients[index].delete(f"/api/v1/servers/{server.pk}/")
        else:
            response = clients[index].post(
                f"/api/v1/servers/{server.pk}/actions/", {"type": action}, format="json"
            )
        results[index] = response
        connection.close()

    threads = [threading.Thread(target=act, args=(i, a)) for i, a in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    codes = sorted(r.status_code for r in results.values())
    assert codes == [202, 409]
    loser = next(r for r in results.values() if r.status_code == 409).json()
    assert loser["error"]["code"] == "conflict"
    assert loser["error"]["message"]
    assert Operation.objects.filter(server=server).count() == 1
    assert Server.objects.get(pk=server.pk).task in (first, second)


def test_an_action_the_status_does_not_allow_is_409_and_changes_nothing(api, customer, catalog):
    server = running_server(customer, catalog)
    response = api(customer).post(f"/api/v1/servers/{server.pk}/actions/", {"type": "start"}, format="json")
    assert response.status_code == 409
    assert "running" in response.json()["error"]["message"]
    assert not Operation.objects.filter(server=server).exists()
    assert Server.objects.get(pk=server.pk).task is None


def test_a_server_being_created_refuses_other_actions(api, customer, catalog, purge_queue):
    client = api(customer)
    server_id = client.post(
        "/api/v1/servers/",
        {"name": "busy", "plan": catalog["plan"].slug, "image": catalog["image"].slug},
        format="json",
    ).json()["id"]
    response = client.post(f"/api/v1/servers/{server_id}/actions/", {"type": "reboot"}, format="json")
    assert response.status_code == 409
    assert client.delete(f"/api/v1/servers/{server_id}/").status_code == 409
