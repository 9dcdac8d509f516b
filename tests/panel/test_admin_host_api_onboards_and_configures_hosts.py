"""Admins onboard and configure hosts through the API (POST, GET, PATCH admin/hosts/); staff may only look."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hypervisor import hosts, placement
from hypervisor.models import Host
from panel.servers import actions
from tests import factories

pytestmark = pytest.mark.django_db

HOSTS = "/api/v1/admin/hosts/"


@pytest.fixture
def region():
    return factories.make_region()


@pytest.fixture
def admin_api(api, admin_user):
    return api(admin_user)


def onboard(admin_api, tmp_path, **body) -> dict:
    """POST a simulated host of its own (4 CPUs, 8 GiB) whose VPS disks go to a new `vps` dir pool."""
    data = {
        "name": "kvm1",
        "uri": factories.node_uri(tmp_path, cores=4, memory_mib=8192),
        "region": "jakarta",
        "storage_pool": "vps",
        "storage_pool_path": str(tmp_path / "vps-disks"),
        **body,
    }
    response = admin_api.post(HOSTS, data, format="json")
    assert response.status_code == 202, response.json()
    return response.json()


def test_an_admin_onboards_a_host_and_probing_makes_it_ready(admin_api, region, tmp_path, purge_queue):
    created = onboard(admin_api, tmp_path)
    assert created["state"] == "new"
    assert created["region"] == "jakarta"
    assert created["storage_pool"] == "vps"
    assert created["authorized_keys_line"] is None  # not an ssh host

    hosts.probe_host(created["id"])  # what the Celery task probe_host runs

    host = admin_api.get(f"{HOSTS}{created['id']}/").json()
    assert host["state"] == "ready", host["status_reason"]
    assert host["status_reason"] == ""
    assert host["physical"] == {
        "vcpus": 4,
        "memory_mib": 8192,
        "memory_mib_free": host["physical"]["memory_mib_free"],
        "disk_gib": host["physical"]["disk_gib"],
    }
    assert 0 <= host["physical"]["memory_mib_free"] <= 8192
    assert host["capacity"] == {
        "vcpus": 4 * 4,  # the region's default vCPU allocation ratio 4.0
        "memory_mib": 8192 - 512,  # the region's default reserved memory
        "disk_gib": host["physical"]["disk_gib"],
    }
    assert host["allocated"] == {"vcpus": 0, "memory_mib": 0, "disk_gib": 0}
    assert host["domain_type"] == "test" and host["libvirt_version"] and host["last_probed_at"]
    pools = {pool["name"]: pool for pool in host["inventory"]["pools"]}
    assert pools["vps"]["active"] is True
    assert "default" in pools
    assert [n["name"] for n in host["inventory"]["networks"]] == ["default"]


def test_an_ssh_host_comes_with_the_line_for_authorized_keys(admin_api, region, purge_queue):
    response = admin_api.post(
        HOSTS,
        {"name": "kvm2", "uri": "qemu+ssh://root@kvm2.example.com/system", "region": "jakarta"},
        format="json",
    )
    assert response.status_code == 202
    line = response.json()["authorized_keys_line"]
    assert line.startswith("ssh-ed25519 ") and line.endswith(" vpspanel")
    assert admin_api.get(f"{HOSTS}{response.json()['id']}/").json()["authorized_keys_line"] == line


@pytest.mark.parametrize(
    "body,field",
    [
        ({"uri": "http://kvm1/"}, "uri"),
        ({"region": "atlantis"}, "region"),
        ({"name": ""}, "name"),
    ],
)
def test_a_bad_host_is_refused_with_the_field_and_nothing_is_stored(admin_api, region, body, field):
    data = {"name": "kvm1", "uri": "test:///default", "region": "jakarta", **body}
    response = admin_api.post(HOSTS, data, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert field in response.json()["error"]["fields"]
    assert not Host.objects.exists()


def test_a_duplicate_name_is_refused(admin_api, region):
    factories.make_host(name="kvm1", region=region)
    response = admin_api.post(
        HOSTS, {"name": "kvm1", "uri": "test:///default", "region": "jakarta"}, format="json"
    )
    assert response.status_code == 400
    assert "name" in response.json()["error"]["fields"]
    assert Host.objects.count() == 1


def test_an_admin_disables_and_enables_a_host(admin_api, region):
    host = factories.make_host(region=region)
    response = admin_api.patch(
        f"{HOSTS}{host.pk}/", {"enabled": False, "disabled_reason": "disk replacement"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["enabled"], body["disabled_by"], body["disabled_reason"]) == (
        False,
        "admin",
        "disk replacement",
    )
    assert not placement.schedulable_hosts(region).exists()

    body = admin_api.patch(f"{HOSTS}{host.pk}/", {"enabled": True}, format="json").json()
    assert (body["enabled"], body["disabled_by"], body["disabled_reason"]) == (True, "", "")


def test_maintenance_stops_new_placements(admin_api, region):
    host = factories.make_host(region=region)
    body = admin_api.patch(f"{HOSTS}{host.pk}/", {"maintenance": True}, format="json").json()
    assert body["maintenance"] is True and body["enabled"] is True
    assert not placement.schedulable_hosts(region).exists()


def test_a_relative_storage_pool_path_is_refused_with_the_field(admin_api, region):
    host = factories.make_host(region=region)
    response = admin_api.patch(f"{HOSTS}{host.pk}/", {"storage_pool_path": "relative/path"}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["fields"] == {"storage_pool_path": ["The storage pool path must be absolute."]}
    assert Host.objects.get(pk=host.pk).storage_pool_path == ""


@pytest.mark.parametrize(
    "body,field",
    [
        ({"storage_pool": "no spaces"}, "storage_pool"),
        ({"bridge": "br0; rm -rf /"}, "bridge"),
        ({"cpu_allocation_ratio": "0.05"}, "cpu_allocation_ratio"),
        ({"reserved_memory_mib": -1}, "reserved_memory_mib"),
    ],
)
def test_bad_settings_are_refused_with_the_field_and_change_nothing(admin_api, region, body, field):
    host = factories.make_host(region=region)
    before = admin_api.get(f"{HOSTS}{host.pk}/").json()
    response = admin_api.patch(f"{HOSTS}{host.pk}/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert admin_api.get(f"{HOSTS}{host.pk}/").json() == before


def test_reserved_memory_and_allocation_ratios_change_the_capacity(admin_api, region):
    host = factories.make_host(region=region)  # test:///default: 16 CPUs, 3072 MiB
    response = admin_api.patch(
        f"{HOSTS}{host.pk}/",
        {"reserved_memory_mib": 1024, "ram_allocation_ratio": "1.5", "cpu_allocation_ratio": "2"},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["capacity"]["memory_mib"] == int((3072 - 1024) * 1.5)
    assert body["capacity"]["vcpus"] == 16 * 2
    assert (body["reserved_memory_mib"], body["ram_allocation_ratio"]) == (1024, "1.50")
    assert Host.objects.get(pk=host.pk).ram_allocation_ratio == Decimal("1.5")


def test_staff_may_look_but_not_add_or_change_hosts(api, staff, region):
    host = factories.make_host(region=region)
    client = api(staff)
    assert client.get(HOSTS).status_code == 200
    assert client.get(f"{HOSTS}{host.pk}/").status_code == 200
    response = client.patch(f"{HOSTS}{host.pk}/", {"enabled": False}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    created = client.post(HOSTS, {"name": "x", "uri": "test:///default", "region": "jakarta"}, format="json")
    assert created.status_code == 403
    assert Host.objects.get(pk=host.pk).enabled
    assert Host.objects.count() == 1


def test_customers_get_403_on_the_hosts_api(api, customer, region):
    host = factories.make_host(region=region)
    client = api(customer)
    assert client.get(HOSTS).status_code == 403
    assert client.get(f"{HOSTS}{host.pk}/").status_code == 403
    assert client.patch(f"{HOSTS}{host.pk}/", {"enabled": False}, format="json").status_code == 403


def test_the_host_list_shows_what_each_host_has_allocated(admin_api, region, customer):
    _region, small, image = factories.make_catalog()  # small: 1 vCPU, 256 MiB, 1 GiB
    big = factories.make_plan("big", vcpus=2, memory_mib=1024, disk_gib=20)
    first = factories.set_host_size(factories.make_host(name="kvm-a", region=region), memory_mib=4096)
    second = factories.set_host_size(factories.make_host(name="kvm-b", region=region), memory_mib=4096)
    # The spread weigher: the most free memory first, the older host on a tie.
    assert actions.order_server(customer, name="web1", plan=big, image=image, region=region).host == first
    assert actions.order_server(customer, name="web2", plan=small, image=image, region=region).host == second
    assert actions.order_server(customer, name="web3", plan=big, image=image, region=region).host == second

    listing = admin_api.get(HOSTS).json()
    assert listing["count"] == 2
    allocated = {host["name"]: host["allocated"] for host in listing["results"]}
    assert allocated == {
        "kvm-a": {"vcpus": 2, "memory_mib": 1024, "disk_gib": 20},
        "kvm-b": {"vcpus": 3, "memory_mib": 1280, "disk_gib": 21},
    }
    assert admin_api.get(f"{HOSTS}{second.pk}/").json()["allocated"] == allocated["kvm-b"]
