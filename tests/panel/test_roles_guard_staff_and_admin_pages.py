"""Customers get 403 on staff and admin pages and API paths; only admins manage hosts."""

import pytest

from hypervisor.models import Host
from panel.models import Operation
from tests import factories

pytestmark = pytest.mark.django_db

STAFF_PAGES = ["/staff/servers/", "/staff/customers/", "/staff/hosts/"]
ADMIN_API_PATHS = ["/api/v1/admin/hosts/", "/api/v1/admin/servers/", "/api/v1/admin/customers/"]


def test_customers_get_403_on_staff_pages(client, customer, catalog):
    server = factories.make_server(customer, catalog)
    client.force_login(customer)
    for path in [*STAFF_PAGES, f"/staff/hosts/{catalog['host'].pk}/", f"/staff/servers/{server.pk}/"]:
        assert client.get(path).status_code == 403, path
    assert client.post(f"/staff/hosts/{catalog['host'].pk}/action/", {"action": "disable"}).status_code == 403
    assert Host.objects.get(pk=catalog["host"].pk).enabled
    # Not even on their own server: the staff server page and its actions are for staff.
    response = client.post(f"/staff/servers/{server.pk}/action/", {"action": "reboot"})
    assert response.status_code == 403
    assert not Operation.objects.filter(server=server).exists()


def test_customers_and_staff_never_reach_the_django_admin(client, customer, staff, admin_user):
    for user in (customer, staff):
        client.force_login(user)
        response = client.get("/django-admin/")
        assert response.status_code == 302 and "/login/" in response["Location"]
    client.force_login(admin_user)
    assert client.get("/django-admin/").status_code == 200


def test_customers_get_403_on_every_admin_api_path(api, customer, catalog):
    client = api(customer)
    for path in [*ADMIN_API_PATHS, f"/api/v1/admin/hosts/{catalog['host'].pk}/"]:
        response = client.get(path)
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "forbidden"
    assert (
        client.post(
            "/api/v1/admin/hosts/",
            {"name": "h", "uri": "test:///default", "region": "jakarta"},
            format="json",
        ).status_code
        == 403
    )


def test_staff_see_all_servers_and_hosts_but_cannot_change_hosts(api, client, staff, catalog):
    api_client = api(staff)
    for path in ADMIN_API_PATHS:
        assert api_client.get(path).status_code == 200, path
    host = catalog["host"]
    assert (
        api_client.patch(f"/api/v1/admin/hosts/{host.pk}/", {"enabled": False}, format="json").status_code
        == 403
    )
    assert (
        api_client.post(
            "/api/v1/admin/hosts/",
            {"name": "h2", "uri": "test:///default", "region": "jakarta"},
            format="json",
        ).status_code
        == 403
    )
    client.force_login(staff)
    server = factories.make_server(factories.make_user(), catalog)
    for path in [*STAFF_PAGES, f"/staff/servers/{server.pk}/"]:
        assert client.get(path).status_code == 200, path
    assert client.post(f"/staff/hosts/{host.pk}/action/", {"action": "disable"}).status_code == 403
    assert Host.objects.get(pk=host.pk).enabled
    assert not Host.objects.filter(name="h2").exists()


def test_admins_add_and_change_hosts_through_the_api(api, admin_user, catalog, purge_queue):
    client = api(admin_user)
    response = client.post(
        "/api/v1/admin/hosts/", {"name": "kvm2", "uri": "test:///default", "region": "jakarta"}, format="json"
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["state"] == "new"
    assert set(body) >= {
        "id",
        "name",
        "uri",
        "region",
        "state",
        "enabled",
        "maintenance",
        "capacity",
        "allocated",
        "status_reason",
        "cpu_allocation_ratio",
        "ram_allocation_ratio",
        "disk_allocation_ratio",
    }
    host = catalog["host"]
    response = client.patch(
        f"/api/v1/admin/hosts/{host.pk}/", {"maintenance": True, "cpu_allocation_ratio": "8.0"}, format="json"
    )
    assert response.status_code == 200, response.content
    host.refresh_from_db()
    assert host.maintenance and str(host.cpu_allocation_ratio) == "8.00"
    bad = client.post(
        "/api/v1/admin/hosts/",
        {"name": "kvm3", "uri": "http://example.com", "region": "jakarta"},
        format="json",
    )
    assert bad.status_code == 400
    assert "uri" in bad.json()["error"]["fields"]
    assert not Host.objects.filter(name="kvm3").exists()


def test_customers_never_see_host_names_or_uris(api, customer, catalog):
    client = api(customer)
    response = client.post(
        "/api/v1/servers/",
        {"name": "w", "plan": catalog["plan"].slug, "image": catalog["image"].slug},
        format="json",
    )
    assert response.status_code == 202
    text = response.content.decode() + client.get("/api/v1/servers/").content.decode()
    assert catalog["host"].name not in text
    assert catalog["host"].uri not in text
