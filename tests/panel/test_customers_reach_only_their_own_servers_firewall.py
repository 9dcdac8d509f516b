"""A server's firewall is its owner's: other customers get 404 (API and page) and change nothing, a read
token reads it but gets 403 on a change, a deleted server's firewall is gone (404) and one being deleted
cannot change (409)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from panel.models import Firewall, Server
from panel.servers import firewall
from tests import factories

pytestmark = pytest.mark.django_db

BODY = {"inbound": [{"protocol": "tcp", "ports": "22", "sources": ["0.0.0.0/0"]}], "default_inbound": "drop"}


@pytest.fixture
def server(customer, catalog) -> Server:
    return factories.make_server(customer, catalog)


def test_another_customer_gets_404_and_changes_nothing(api, client, other_customer, server):
    path = f"/api/v1/servers/{server.pk}/firewall/"
    assert api(other_customer).get(path).status_code == 404
    response = api(other_customer).put(path, BODY, format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert not Firewall.objects.filter(pk=server.pk).exists()

    client.force_login(other_customer)
    assert client.get(f"/servers/{server.pk}/firewall/").status_code == 404
    assert client.post(f"/servers/{server.pk}/firewall/", {}).status_code == 404
    assert not Firewall.objects.filter(pk=server.pk).exists()


def test_a_read_token_reads_but_cannot_change(api, customer, server):
    raw = api(customer).post("/api/v1/tokens/", {"scope": "read"}, format="json").json()["token"]
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    path = f"/api/v1/servers/{server.pk}/firewall/"
    assert reader.get(path).status_code == 200
    response = reader.put(path, BODY, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "read_only_token"
    assert not Firewall.objects.filter(pk=server.pk).exists()
    assert APIClient().get(path).status_code == 401


def test_a_deleted_server_has_no_firewall_and_one_being_deleted_cannot_change(api, customer, catalog):
    deleted = factories.make_server(customer, catalog, name="gone", status=Server.Status.DELETED)
    path = f"/api/v1/servers/{deleted.pk}/firewall/"
    assert api(customer).get(path).status_code == 404
    assert api(customer).put(path, BODY, format="json").status_code == 404

    deleting = factories.make_server(customer, catalog, name="going", status=Server.Status.DELETING)
    response = api(customer).put(f"/api/v1/servers/{deleting.pk}/firewall/", BODY, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"
    assert not Firewall.objects.filter(pk=deleting.pk).exists()
    with pytest.raises(firewall.Conflict):
        firewall.reset_firewall(deleted, None)
