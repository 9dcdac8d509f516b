"""GET /api/v1/servers/{id}/, what clients poll while a server is made, reads the server with its plan, image,
region and addresses in two prepared statements and answers exactly what the model serializer says of the
server as the ORM reads it; another customer's (or no) server is 404, a deleted one is still shown."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hypervisor import ipam
from panel.api.serializers import ServerSerializer
from panel.models import Server
from panel.servers.queries import own_server
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(api, customer, catalog):
    region = catalog["region"]
    factories.make_pool(region, cidr="198.51.100.0/28")
    ipam.create_pool(region, "v6", "2001:db8:10::/60", "fe80::1", nameservers=["2001:db8::53"])
    response = api(customer).post(
        "/api/v1/servers/",
        {"name": "polled", "plan": catalog["plan"].slug, "image": catalog["image"].slug},
        format="json",
    )
    assert response.status_code == 202, response.content
    server = Server.objects.get(pk=response.json()["id"])
    Server.objects.filter(pk=server.pk).update(status_reason="The guest did not shut down in time.")
    return server


def orm_representation(server: Server) -> dict:
    return ServerSerializer(Server.objects.select_related("plan", "image", "region").get(pk=server.pk)).data


def test_the_answer_is_the_serializers_of_the_server_as_the_orm_reads_it(api, customer, server):
    body = api(customer).get(f"/api/v1/servers/{server.pk}/").json()
    assert body == orm_representation(server)
    assert body["plan"] and body["image"] and body["region"]
    assert len(body["ipv4"]) == 1 and len(body["ipv6"]) == 1 and body["ipv6_networks"][0].endswith("/64")
    assert body["status_reason"] == "The guest did not shut down in time."


def test_the_server_and_its_addresses_are_two_statements(customer, server):
    own_server(customer.pk, server.pk)  # prepares the statements on this session (once per session)
    with CaptureQueriesContext(connection) as queries:
        found = own_server(customer.pk, server.pk)
        assert found.plan.slug and found.image.slug and found.region.slug and len(found.ipv4) == 1
    assert len(queries) == 2
    if connection.vendor == "postgresql":  # (the demo's SQLite runs the statements as they are)
        assert all(query["sql"].startswith("EXECUTE ") for query in queries.captured_queries)


def test_another_customers_server_or_none_is_404_and_a_deleted_one_is_shown(
    api, customer, other_customer, server
):
    assert api(other_customer).get(f"/api/v1/servers/{server.pk}/").status_code == 404
    assert api(customer).get(f"/api/v1/servers/{uuid.uuid4()}/").status_code == 404
    assert own_server(other_customer.pk, server.pk) is None
    Server.objects.filter(pk=server.pk).update(status=Server.Status.DELETED)
    response = api(customer).get(f"/api/v1/servers/{server.pk}/")
    assert response.status_code == 200 and response.json()["status"] == "deleted"
