"""Admins set how other hosts' libvirtd reach a host to migrate servers to it (its migration URI) and where
the migration's data goes (its migration address), through the API and on the host page; what cannot
work is refused with the field and changes nothing."""

from __future__ import annotations

import pytest
from django.urls import reverse

from hypervisor.models import Host
from tests import factories

pytestmark = pytest.mark.django_db

HOSTS = "/api/v1/admin/hosts/"


def test_the_api_sets_and_clears_the_migration_uri_and_address(api, admin_user):
    host = factories.make_host()
    client = api(admin_user)
    response = client.patch(
        f"{HOSTS}{host.pk}/",
        {"migration_uri": " QEMU+TCP://127.0.0.2:16510/system ", "migration_address": "tcp://127.0.0.2"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["migration_uri"], body["migration_address"]) == (
        "qemu+tcp://127.0.0.2:16510/system",
        "tcp://127.0.0.2",
    )
    response = client.patch(
        f"{HOSTS}{host.pk}/", {"migration_uri": "", "migration_address": ""}, format="json"
    )
    assert response.status_code == 200
    assert Host.objects.filter(pk=host.pk, migration_uri="", migration_address="").exists()


@pytest.mark.parametrize(
    "body,field",
    [
        (
            {"migration_uri": "qemu:///system"},
            "migration_uri",
        ),  # names no host: the source would reach itself
        ({"migration_uri": "http://example.com/"}, "migration_uri"),
        ({"migration_address": "10.0.0.2"}, "migration_address"),
        ({"migration_address": "tcp://10.0.0.2; reboot"}, "migration_address"),
        ({"migration_address": "tcp://10.0.0.2:99999"}, "migration_address"),
    ],
)
def test_a_migration_setting_that_cannot_work_is_refused_with_its_field(api, admin_user, body, field):
    host = factories.make_host()
    client = api(admin_user)
    before = client.get(f"{HOSTS}{host.pk}/").json()
    response = client.patch(f"{HOSTS}{host.pk}/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert client.get(f"{HOSTS}{host.pk}/").json() == before


def test_the_host_page_sets_the_migration_uri_or_shows_the_error(client, admin_user):
    host = factories.make_host()
    client.force_login(admin_user)
    page = client.get(reverse("host-detail", args=[host.pk]))
    assert b'name="migration_uri"' in page.content and b'name="migration_address"' in page.content
    form = {
        "cpu_allocation_ratio": "4",
        "ram_allocation_ratio": "1",
        "disk_allocation_ratio": "1",
        "reserved_vcpus": 0,
        "reserved_memory_mib": 0,
        "reserved_disk_gib": 0,
        "storage_pool": host.storage_pool,
        "storage_pool_path": host.storage_pool_path,
        "network": host.network,
        "bridge": host.bridge,
        "migration_uri": "qemu:///system",
        "migration_address": "",
    }
    response = client.post(reverse("host-settings", args=[host.pk]), form)
    assert response.status_code == 200
    assert "The migration URI must name the host" in response.content.decode()
    assert Host.objects.get(pk=host.pk).migration_uri == ""

    form["migration_uri"] = "qemu+tls://10.0.0.2/system"
    response = client.post(reverse("host-settings", args=[host.pk]), form)
    assert response.status_code == 302
    assert Host.objects.get(pk=host.pk).migration_uri == "qemu+tls://10.0.0.2/system"
