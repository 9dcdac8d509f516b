"""Per-customer quotas: staff set them, customers see them, orders and resizes never exceed them."""

import threading

import pytest
from django.db import connection

from hypervisor.models import Allocation, Host
from panel.accounts import quotas
from panel.models import Operation, Server, Snapshot
from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def order(client, catalog, name="q1", plan=None):
    return client.post(
        "/api/v1/servers/",
        {"name": name, "plan": (plan or catalog["plan"]).slug, "image": catalog["image"].slug},
        format="json",
    )


def test_new_customers_get_the_default_quota(api, customer, settings):
    settings.DEFAULT_QUOTA = {
        "servers": 2,
        "vcpus": None,
        "memory_mib": 4096,
        "disk_gib": None,
        "snapshots": 5,
    }
    body = api(customer).get("/api/v1/account/").json()
    assert body["quota"]["servers"] == {"limit": 2, "used": 0}
    assert body["quota"]["vcpus"] == {"limit": None, "used": 0}
    assert body["quota"]["memory_mib"] == {"limit": 4096, "used": 0}
    assert set(body["quota"]) >= {"servers", "vcpus", "memory_mib", "disk_gib"}


def test_staff_read_and_set_a_quota_through_the_api(api, staff, customer, catalog):
    client = api(staff)
    url = f"/api/v1/admin/customers/{customer.pk}/quota/"
    response = client.put(
        url, {"servers": 1, "vcpus": None, "memory_mib": 512, "disk_gib": 20}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["servers"] == {"limit": 1, "used": 0}
    assert response.json()["vcpus"]["limit"] is None
    bad = client.put(url, {"servers": -1, "vcpus": 1, "memory_mib": 1, "disk_gib": 1}, format="json")
    assert bad.status_code == 400 and "servers" in bad.json()["error"]["fields"]
    assert client.get(url).json()["servers"]["limit"] == 1
    assert api(customer).get(url).status_code == 403
    assert client.get("/api/v1/admin/customers/999999/quota/").status_code == 404


def test_an_order_over_quota_is_422_naming_the_quota_and_creates_nothing(api, customer, catalog):
    quotas.set_limits(customer, {"servers": 1})
    client = api(customer)
    assert order(client, catalog, "first").status_code == 202
    response = order(client, catalog, "second")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "over_quota"
    assert "servers" in error["message"]
    assert Server.objects.filter(owner=customer).count() == 1
    assert Allocation.objects.count() == 1


def test_memory_quota_counts_what_the_plan_needs(api, customer, catalog):
    quotas.set_limits(customer, {"memory_mib": catalog["plan"].memory_mib * 2 - 1})
    client = api(customer)
    assert order(client, catalog, "a").status_code == 202
    response = order(client, catalog, "b")
    assert response.status_code == 422 and "memory" in response.json()["error"]["message"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_orders_never_exceed_a_quota(customer, catalog, purge_queue):
    quotas.set_limits(customer, {"servers": 3})
    clients = [api_client_for(customer) for _ in range(8)]
    barrier = threading.Barrier(len(clients))
    codes = []

    def place(index: int) -> None:
        barrier.wait()
        codes.append(order(clients[index], catalog, f"c{index}").status_code)
        connection.close()

    threads = [threading.Thread(target=place, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [202] * 3 + [422] * 5
    assert Server.objects.filter(owner=customer).count() == 3


def test_a_resize_over_the_vcpu_quota_is_refused_and_keeps_the_claim(api, customer, catalog):
    client = api(customer)
    server_id = order(client, catalog, "r1").json()["id"]
    Server.objects.filter(pk=server_id).update(status="running", task=None)
    big = factories.make_plan(slug="big", vcpus=8, memory_mib=256, disk_gib=1)
    quotas.set_limits(customer, {"vcpus": 4})
    response = client.post(
        f"/api/v1/servers/{server_id}/actions/", {"type": "resize", "plan": "big"}, format="json"
    )
    assert response.status_code == 422 and "vCPU" in response.json()["error"]["message"]
    assert Allocation.objects.get(consumer_uuid=server_id).vcpus == catalog["plan"].vcpus
    assert Server.objects.get(pk=server_id).task is None
    assert not Operation.objects.filter(server_id=server_id, type="resize").exists()
    assert big.vcpus == 8


def test_a_snapshot_over_the_quota_is_refused(api, customer, catalog):
    server = factories.make_server(customer, catalog, "s1")
    Snapshot.objects.create(server=server, name="one", libvirt_name="snap-1")
    quotas.set_limits(customer, {"snapshots": 1})
    response = api(customer).post(
        f"/api/v1/servers/{server.pk}/actions/", {"type": "snapshot", "name": "two"}, format="json"
    )
    assert response.status_code == 422 and "snapshots" in response.json()["error"]["message"]


def test_staff_edit_a_quota_on_the_customer_page_and_the_customer_sees_it(client, staff, customer, catalog):
    factories.make_server(customer, catalog, "visible")
    client.force_login(staff)
    page = client.get(f"/staff/customers/{customer.pk}/")
    assert page.status_code == 200 and "visible" in page.content.decode()
    response = client.post(
        f"/staff/customers/{customer.pk}/",
        {"servers": "5", "vcpus": "", "memory_mib": "8192", "disk_gib": "100"},
    )
    assert response.status_code == 302
    assert quotas.quota_for(customer).limits()["servers"] == 5
    assert quotas.quota_for(customer).limits()["vcpus"] is None
    client.force_login(customer)
    assert client.get(f"/staff/customers/{customer.pk}/").status_code == 403
    account = client.get("/account/").content.decode()
    assert "8192" in account and "No limit" in account
    assert Host.objects.exists()
