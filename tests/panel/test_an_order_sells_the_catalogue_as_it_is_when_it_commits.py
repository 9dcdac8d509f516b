"""The API checks an order's plan, image and region against a copy of the catalogue each web process keeps
for a few seconds (panel.servers.order_catalogue), so that validating an order asks Postgres nothing. The
copy never decides what is sold: the order reads the rows again in its transaction. Changes made elsewhere
(another web process, an admin's bulk update: no signal reaches this process's copy) are simulated with
queryset updates, which send no signals."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import InvoiceLine, Plan, Subscription
from hypervisor.models import Allocation, Image, IPAddress, Region
from panel.api.serializers import ServerSerializer, server_representation
from panel.models import Server
from panel.servers import order_catalogue
from tests import factories

pytestmark = pytest.mark.django_db


def _order(client, catalog, name: str = "web1.example.com", **fields):
    body = {"name": name, "plan": catalog["plan"].slug, "image": catalog["image"].slug}
    body.update(fields)
    return client.post("/api/v1/servers/", body, format="json")


def _nothing_was_made() -> None:
    assert not Server.objects.exists()
    assert not Allocation.objects.exists()
    assert not IPAddress.objects.filter(consumer_uuid__isnull=False).exists()
    assert not Subscription.objects.exists()


@pytest.fixture
def copied(catalog):
    """The catalogue as this process's copy holds it (made now)."""
    order_catalogue.forget()
    assert order_catalogue.plan(catalog["plan"].slug) is not None
    return catalog


def test_a_plan_taken_off_sale_elsewhere_a_moment_ago_is_refused(api, customer, copied):
    factories.make_pool(copied["region"], cidr="198.51.100.0/28")
    Plan.objects.filter(pk=copied["plan"].pk).update(is_active=False)
    assert order_catalogue.plan(copied["plan"].slug) is not None  # the copy does not know yet

    response = _order(api(customer), copied)

    assert response.status_code == 422, response.content
    assert "not on sale" in response.json()["error"]["message"]
    _nothing_was_made()


def test_an_image_withdrawn_or_a_region_closed_elsewhere_is_refused(api, customer, copied):
    client = api(customer)
    Image.objects.filter(pk=copied["image"].pk).update(is_active=False)
    response = _order(client, copied, region=copied["region"].slug)
    assert response.status_code == 422, response.content
    assert "not available" in response.json()["error"]["message"]

    Image.objects.filter(pk=copied["image"].pk).update(is_active=True)
    Region.objects.filter(pk=copied["region"].pk).update(is_active=False)
    response = _order(client, copied, region=copied["region"].slug)
    assert response.status_code == 422, response.content
    assert "not open for orders" in response.json()["error"]["message"]
    _nothing_was_made()


def test_a_plan_changed_elsewhere_is_sold_as_it_is_now(api, customer, copied):
    Plan.objects.filter(pk=copied["plan"].pk).update(memory_mib=512, price_monthly=Decimal("70000"))

    response = _order(api(customer), copied)

    assert response.status_code == 202, response.content
    assert response.json()["memory_mib"] == 512
    server = Server.objects.get(pk=response.json()["id"])
    assert server.memory_mib == 512
    assert Allocation.objects.get(consumer_uuid=server.pk).memory_mib == 512
    assert Subscription.objects.get(reference=str(server.pk)).price == Decimal("70000")
    assert InvoiceLine.objects.get(subscription__reference=str(server.pk)).unit_price == Decimal("70000")


def test_a_plan_put_on_sale_after_the_copy_was_made_can_be_ordered_at_once(api, customer, copied):
    # bulk_create sends no signal: only the lookup of a slug the copy does not know finds it.
    (new,) = Plan.objects.bulk_create(
        [Plan(slug="fresh", name="Fresh", vcpus=1, memory_mib=256, disk_gib=1, transfer_gib=100,
              price_monthly=Decimal("60000"), price_hourly=Decimal("90"))]
    )  # fmt: skip

    response = _order(api(customer), copied, plan="fresh")

    assert response.status_code == 202, response.content
    assert response.json()["plan"] == "fresh"
    assert Server.objects.get(pk=response.json()["id"]).plan_id == new.pk


def test_a_change_saved_in_this_process_reaches_the_copy_at_once(api, customer, copied):
    plan = copied["plan"]
    plan.is_active = False
    plan.save()

    response = _order(api(customer), copied)

    assert response.status_code == 400, response.content  # as an unknown plan, before any transaction
    assert "plan" in response.json()["error"]["fields"]
    _nothing_was_made()


def test_unknown_and_malformed_slugs_are_refused_as_before(api, customer, copied):
    client = api(customer)
    for plan in ("no-such-plan", 42, ["small"], {"slug": "small"}, True, "sm\x00all"):
        response = _order(client, copied, plan=plan)
        assert response.status_code == 400, (plan, response.content)
        assert "plan" in response.json()["error"]["fields"]
    _nothing_was_made()


def test_the_answer_to_an_order_is_the_servers_representation(api, customer, copied):
    factories.make_pool(copied["region"], cidr="198.51.100.0/28")
    response = _order(api(customer), copied)
    assert response.status_code == 202, response.content
    server = Server.objects.select_related("plan", "image", "region").get(pk=response.json()["id"])

    assert response.json() == ServerSerializer(server).data
    assert server_representation(server) == ServerSerializer(server).data
    assert response.json()["ipv4"] == server.ipv4 != []
