"""Customer B gets 404 on every URL and API path of customer A's server."""

import pytest

from panel.models import Operation, Server
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def a_server(customer, catalog) -> Server:
    server = factories.make_server(customer, catalog, name="private")
    Operation.objects.create(server=server, type="create", status="succeeded", requested_by=customer)
    return server


def test_api_paths_of_another_customers_server_are_404(api, a_server, other_customer):
    client = api(other_customer)
    operation = a_server.operations.get()
    base = f"/api/v1/servers/{a_server.pk}/"
    assert client.get(base).status_code == 404
    assert client.delete(base).status_code == 404
    assert client.get(base + "actions/").status_code == 404
    assert client.post(base + "actions/", {"type": "reboot"}, format="json").status_code == 404
    assert client.get(f"{base}actions/{operation.pk}/").status_code == 404
    body = client.get(base).json()
    assert body["error"]["code"] == "not_found"
    assert client.get("/api/v1/servers/").json()["count"] == 0
    assert Server.objects.get(pk=a_server.pk).task is None


def test_web_pages_of_another_customers_server_are_404(client, a_server, other_customer):
    client.force_login(other_customer)
    assert client.get(f"/servers/{a_server.pk}/").status_code == 404
    assert client.get(f"/servers/{a_server.pk}/status/").status_code == 404
    assert client.post(f"/servers/{a_server.pk}/action/", {"action": "reboot"}).status_code == 404
    assert (
        client.post(f"/servers/{a_server.pk}/action/", {"action": "delete", "confirm": "private"}).status_code
        == 404
    )
    assert "private" not in client.get("/servers/").content.decode()
    assert Server.objects.get(pk=a_server.pk).task is None


def test_ssh_keys_of_another_customer_are_404(api, client, customer, other_customer):
    key = factories.make_ssh_key(customer)
    assert api(other_customer).delete(f"/api/v1/ssh-keys/{key.pk}/").status_code == 404
    assert api(other_customer).get(f"/api/v1/ssh-keys/{key.pk}/").status_code == 404
    client.force_login(other_customer)
    assert client.post(f"/ssh-keys/{key.pk}/delete/").status_code == 404
    key.refresh_from_db()


def test_an_order_cannot_use_another_customers_ssh_key(api, customer, other_customer, catalog):
    key = factories.make_ssh_key(customer)
    response = api(other_customer).post(
        "/api/v1/servers/",
        {"name": "x1", "plan": catalog["plan"].slug, "image": catalog["image"].slug, "ssh_keys": [key.pk]},
        format="json",
    )
    assert response.status_code == 400
    assert "ssh_keys" in response.json()["error"]["fields"]
    assert not Server.objects.exists()
