"""The customer's server pages: live fragments, the buttons the status allows, and web actions."""

import pytest

from panel.models import Operation, Server
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(customer, catalog) -> Server:
    return factories.make_server(customer, catalog, name="shop")


def buttons(html: str) -> set[str]:
    return {action for action in ("start", "shutdown", "power_off", "reboot") if f'value="{action}"' in html}


def test_a_running_server_offers_shutdown_power_off_and_reboot(client, customer, server):
    client.force_login(customer)
    html = client.get(f"/servers/{server.pk}/").content.decode()
    assert buttons(html) == {"shutdown", "power_off", "reboot"}
    assert 'value="delete"' in html


def test_a_stopped_server_offers_start(client, customer, server):
    Server.objects.filter(pk=server.pk).update(status=Server.Status.STOPPED)
    client.force_login(customer)
    assert buttons(client.get(f"/servers/{server.pk}/").content.decode()) == {"start"}


def test_a_busy_server_offers_no_actions(client, customer, server):
    Server.objects.filter(pk=server.pk).update(task="reboot")
    client.force_login(customer)
    html = client.get(f"/servers/{server.pk}/status/", HTTP_HX_REQUEST="true").content.decode()
    assert buttons(html) == set()
    assert 'value="delete"' not in html


def test_the_status_fragment_is_only_the_live_part(client, customer, server):
    client.force_login(customer)
    html = client.get(f"/servers/{server.pk}/status/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="server-status"' in html
    assert "<html" not in html
    rows = client.get("/servers/", HTTP_HX_REQUEST="true").content.decode()
    assert "shop" in rows and "<html" not in rows


def test_an_htmx_action_records_an_operation_and_returns_the_fragment(client, customer, server):
    client.force_login(customer)
    response = client.post(f"/servers/{server.pk}/action/", {"action": "reboot"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert 'id="server-status"' in response.content.decode()
    operation = Operation.objects.get(server=server)
    assert operation.type == "reboot" and operation.requested_by == customer
    assert Server.objects.get(pk=server.pk).task == "reboot"


def test_a_refused_web_action_says_why_and_changes_nothing(client, customer, server):
    client.force_login(customer)
    response = client.post(f"/servers/{server.pk}/action/", {"action": "start"}, follow=True)
    assert "Cannot start a server that is running" in response.content.decode()
    assert not Operation.objects.exists()


def test_delete_needs_the_hostname_typed(client, customer, server):
    client.force_login(customer)
    client.post(f"/servers/{server.pk}/action/", {"action": "delete", "confirm": "wrong"})
    assert Server.objects.get(pk=server.pk).status == Server.Status.RUNNING
    response = client.post(f"/servers/{server.pk}/action/", {"action": "delete", "confirm": "shop"})
    assert response.status_code == 302
    server.refresh_from_db()
    assert server.status == Server.Status.DELETING and server.task == "delete"


def test_ordering_in_the_browser_places_the_server(client, customer, catalog):
    client.force_login(customer)
    response = client.post(
        "/servers/new/",
        {
            "name": "Web-1.Example.com",
            "plan": catalog["plan"].pk,
            "image": catalog["image"].pk,
            "region": catalog["region"].pk,
            "password": "nasi goreng 2026",
        },
    )
    server = Server.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/servers/{server.pk}/"
    assert server.name == "web-1.example.com"
    assert server.host == catalog["host"]
    assert server.status == Server.Status.PENDING and server.task == "create"
    assert Operation.objects.get(server=server).type == "create"
