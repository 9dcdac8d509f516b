"""Bad input gets the error body of api-v1.md (or a form error) and creates nothing."""

import pytest

from hypervisor.models import Allocation, Host
from panel.models import Operation, Server
from tests import factories

pytestmark = pytest.mark.django_db


def order(client, **body):
    return client.post("/api/v1/servers/", body, format="json")


@pytest.mark.parametrize(
    "name",
    ["", "-web", "web-", "web_1", "a" * 64, "ex ample", "web.123", "we$b", ("a" * 60 + ".") * 5],
)
def test_invalid_hostnames_are_400_with_the_name_field(api, customer, catalog, name):
    response = order(api(customer), name=name, plan=catalog["plan"].slug, image=catalog["image"].slug)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "name" in error["fields"]
    assert error["message"]
    assert not Server.objects.exists()
    assert not Allocation.objects.exists()


@pytest.mark.parametrize(
    "body,field",
    [
        ({"name": "ok", "plan": "no-such-plan"}, "plan"),
        ({"name": "ok", "image": "no-such-image"}, "image"),
        ({"name": "ok", "region": "mars"}, "region"),
        ({"name": "ok", "ssh_keys": [999999]}, "ssh_keys"),
        ({"name": "ok", "ssh_keys": "not-a-list"}, "ssh_keys"),
    ],
)
def test_unknown_references_are_400_with_the_field(api, customer, catalog, body, field):
    payload = {"plan": catalog["plan"].slug, "image": catalog["image"].slug, **body}
    response = order(api(customer), **payload)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not Server.objects.exists()


def test_malformed_json_is_400(api, customer, catalog):
    response = api(customer).post("/api/v1/servers/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_an_unknown_action_type_is_400(api, customer, catalog):
    server = factories.make_server(customer, catalog, name="w")
    response = api(customer).post(f"/api/v1/servers/{server.pk}/actions/", {"type": "explode"}, format="json")
    assert response.status_code == 400
    assert "type" in response.json()["error"]["fields"]
    assert not Operation.objects.exists()


def test_no_capacity_is_422_and_creates_nothing(api, customer, catalog):
    Host.objects.filter(pk=catalog["host"].pk).update(maintenance=True)
    response = order(api(customer), name="big", plan=catalog["plan"].slug, image=catalog["image"].slug)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "out_of_capacity"
    assert "capacity" in error["message"]
    assert not Server.objects.exists()
    assert not Allocation.objects.exists()


def test_requests_without_a_valid_token_are_401(client, catalog):
    response = client.get("/api/v1/servers/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    response = client.get("/api/v1/servers/", HTTP_AUTHORIZATION="Bearer vps_not-a-real-token")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_unknown_api_paths_are_404_json(api, customer):
    response = api(customer).get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert api(customer).get("/api/v1/servers/not-a-uuid/").status_code == 404


def test_the_order_form_shows_errors_and_creates_nothing(client, customer, catalog):
    client.force_login(customer)
    response = client.post(
        "/servers/new/",
        {
            "name": "bad_name!",
            "plan": catalog["plan"].pk,
            "image": catalog["image"].pk,
            "region": catalog["region"].pk,
        },
    )
    assert response.status_code == 200
    assert "not a valid hostname label" in response.content.decode()
    assert not Server.objects.exists()


def test_the_order_form_says_out_of_capacity(client, customer, catalog):
    Host.objects.filter(pk=catalog["host"].pk).update(enabled=False)
    client.force_login(customer)
    response = client.post(
        "/servers/new/",
        {
            "name": "fine",
            "plan": catalog["plan"].pk,
            "image": catalog["image"].pk,
            "region": catalog["region"].pk,
            "password": "nasi goreng 2026",
        },
    )
    assert response.status_code == 200
    assert "Out of capacity" in response.content.decode()
    assert not Server.objects.exists()
