"""Admins add and tune hosts and IPv4 pools in the browser, staff may only look, and customers set the
reverse DNS names of their own addresses."""

import datetime
import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from hypervisor import credentials, hosts, ipam
from hypervisor.models import Host, IPAddress, IPPool
from panel.infrastructure.ip_pool_views import ADDRESSES_PER_PAGE
from panel.models import Notice, Server
from tests import factories

pytestmark = pytest.mark.django_db


def add_host_form(region, **overrides) -> dict:
    data = {
        "name": "kvm-web",
        "uri": "test:///default",
        "region": region.pk,
        "storage_pool": "default",
        "storage_pool_path": "",
        "network": "default",
        "bridge": "",
    }
    data.update(overrides)
    return data


def text(response) -> str:
    return response.content.decode()


def settings_form(host: Host, **overrides) -> dict:
    data = {
        "cpu_allocation_ratio": host.cpu_allocation_ratio,
        "ram_allocation_ratio": host.ram_allocation_ratio,
        "disk_allocation_ratio": host.disk_allocation_ratio,
        "reserved_vcpus": host.reserved_vcpus,
        "reserved_memory_mib": host.reserved_memory_mib,
        "reserved_disk_gib": host.reserved_disk_gib,
        "storage_pool": host.storage_pool,
        "storage_pool_path": host.storage_pool_path,
        "network": host.network,
        "bridge": host.bridge,
    }
    if host.force_emulation:
        data["force_emulation"] = "on"
    data.update(overrides)
    return data


def pem_pair() -> tuple[str, str]:
    """A self-signed certificate and its unencrypted private key, as PEM text."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vpspanel test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem


@pytest.fixture
def server(customer, catalog) -> Server:
    return Server.objects.create(
        name="mail",
        owner=customer,
        plan=catalog["plan"],
        image=catalog["image"],
        region=catalog["region"],
        host=catalog["host"],
        vcpus=1,
        memory_mib=256,
        disk_gib=1,
        status=Server.Status.RUNNING,
    )


@pytest.fixture
def address(server, catalog) -> IPAddress:
    ipam.create_pool(catalog["region"], "public", "198.51.100.0/29", "198.51.100.1")
    return ipam.allocate(catalog["region"], server.id)


# ---------- Hosts ----------


def test_an_admin_adds_a_simulated_host_and_its_page_shows_it_ready_with_its_inventory(
    client, admin_user, catalog
):
    client.force_login(admin_user)
    page = client.get("/staff/hosts/")
    assert 'enctype="multipart/form-data"' in text(page)

    response = client.post("/staff/hosts/", add_host_form(catalog["region"]))
    host = Host.objects.get(name="kvm-web")
    assert response.status_code == 302 and response["Location"] == f"/staff/hosts/{host.pk}/"
    assert host.state == Host.State.NEW and host.uri == "test:///default"
    assert host.cpu_allocation_ratio == catalog["region"].default_cpu_allocation_ratio

    hosts.probe_host(host.pk)  # what the Celery task does
    html = text(client.get(f"/staff/hosts/{host.pk}/"))
    assert "badge--host-ready" in html and "Ready" in html
    host.refresh_from_db()
    assert host.inventory["pools"] and host.inventory["networks"]
    for pool in host.inventory["pools"]:
        assert pool["name"] in html
    for network in host.inventory["networks"]:
        assert network["name"] in html
    assert "Storage pools" in html and "Networks" in html


def test_the_page_of_a_host_being_probed_reloads_itself_when_the_probe_ends(client, staff, catalog):
    host = factories.make_host(region=catalog["region"], name="kvm-new", probe=False)
    client.force_login(staff)
    assert 'id="host-probing"' in text(client.get(f"/staff/hosts/{host.pk}/"))
    poll = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TRIGGER": "host-probing"}
    assert client.get(f"/staff/hosts/{host.pk}/", **poll).status_code == 204
    hosts.probe_host(host.pk)
    response = client.get(f"/staff/hosts/{host.pk}/", **poll)
    assert response.status_code == 200 and response["HX-Refresh"] == "true"
    assert 'id="host-probing"' not in text(client.get(f"/staff/hosts/{host.pk}/"))


def test_a_qemu_ssh_host_shows_the_line_to_add_to_authorized_keys(client, admin_user, catalog):
    client.force_login(admin_user)
    response = client.post(
        "/staff/hosts/",
        add_host_form(catalog["region"], name="kvm-ssh", uri="qemu+ssh://root@192.0.2.10/system"),
    )
    host = Host.objects.get(name="kvm-ssh")
    assert response.status_code == 302
    line = credentials.authorized_keys_line()
    assert line.startswith("ssh-ed25519 ")
    detail = text(client.get(f"/staff/hosts/{host.pk}/"))
    assert line in detail and "authorized_keys" in detail
    hosts_page = text(client.get("/staff/hosts/"))
    assert line in hosts_page
    assert f"echo '{line}' &gt;&gt; /root/.ssh/authorized_keys" in hosts_page


def test_a_bad_uri_is_a_form_error_and_adds_no_host(client, admin_user, catalog):
    client.force_login(admin_user)
    response = client.post("/staff/hosts/", add_host_form(catalog["region"], uri="http://example.com/"))
    assert response.status_code == 200
    assert "Unsupported libvirt URI" in text(response)
    assert not Host.objects.filter(name="kvm-web").exists()

    response = client.post("/staff/hosts/", add_host_form(catalog["region"], name=catalog["host"].name))
    assert "exists already" in text(response)
    assert Host.objects.filter(name=catalog["host"].name).count() == 1


def test_a_qemu_tls_host_needs_its_three_pem_files_and_stores_the_key_encrypted(client, admin_user, catalog):
    client.force_login(admin_user)
    form = add_host_form(catalog["region"], name="kvm-tls", uri="qemu+tls://192.0.2.20/system")
    response = client.post("/staff/hosts/", form)
    assert text(response).count("A qemu+tls:// host needs this file.") == 3
    assert not Host.objects.filter(name="kvm-tls").exists()

    ca_cert, _ca_key = pem_pair()
    client_cert, client_key = pem_pair()
    files = {
        "tls_ca_cert": SimpleUploadedFile("cacert.pem", ca_cert.encode()),
        "tls_client_cert": SimpleUploadedFile("clientcert.pem", client_cert.encode()),
        "tls_client_key": SimpleUploadedFile("clientkey.pem", b"not a key"),
    }
    response = client.post("/staff/hosts/", {**form, **files})
    assert "not an unencrypted PEM private key" in text(response)
    assert not Host.objects.filter(name="kvm-tls").exists()

    files = {
        "tls_ca_cert": SimpleUploadedFile("cacert.pem", ca_cert.encode()),
        "tls_client_cert": SimpleUploadedFile("clientcert.pem", client_cert.encode()),
        "tls_client_key": SimpleUploadedFile("clientkey.pem", client_key.encode()),
    }
    response = client.post("/staff/hosts/", {**form, **files})
    assert response.status_code == 302
    host = Host.objects.get(name="kvm-tls")
    assert host.tls_ca_cert == ca_cert and host.tls_client_cert == client_cert
    assert host.tls_client_key and "PRIVATE KEY" not in host.tls_client_key


def test_staff_see_hosts_and_pools_but_cannot_add_or_change_them(client, staff, catalog):
    host = catalog["host"]
    client.force_login(staff)
    page = text(client.get("/staff/hosts/"))
    assert host.name in page and "Add a host" not in page and "ssh-ed25519" not in page
    detail = text(client.get(f"/staff/hosts/{host.pk}/"))
    assert host.name in detail and "Save settings" not in detail
    assert client.post("/staff/hosts/", add_host_form(catalog["region"])).status_code == 403
    assert not Host.objects.filter(name="kvm-web").exists()
    before = Host.objects.get(pk=host.pk).cpu_allocation_ratio
    response = client.post(
        f"/staff/hosts/{host.pk}/settings/", settings_form(host, cpu_allocation_ratio="16")
    )
    assert response.status_code == 403
    assert Host.objects.get(pk=host.pk).cpu_allocation_ratio == before
    assert client.post(f"/staff/hosts/{host.pk}/action/", {"action": "forget_host_keys"}).status_code == 403

    assert client.get("/staff/ip-pools/").status_code == 200
    response = client.post(
        "/staff/ip-pools/",
        {"region": catalog["region"].pk, "name": "x", "cidr": "192.0.2.0/28", "gateway": "192.0.2.1"},
    )
    assert response.status_code == 403
    assert not IPPool.objects.exists()


def test_customers_get_403_on_the_ip_pool_pages(client, customer, catalog):
    pool = ipam.create_pool(catalog["region"], "p", "192.0.2.0/28", "192.0.2.1")
    client.force_login(customer)
    assert client.get("/staff/ip-pools/").status_code == 403
    assert client.get(f"/staff/ip-pools/{pool.pk}/").status_code == 403
    assert client.post(f"/staff/hosts/{catalog['host'].pk}/settings/", {}).status_code == 403


def test_an_admin_edits_ratios_and_reserves_and_the_capacity_shown_follows(client, admin_user, catalog):
    host = catalog["host"]
    client.force_login(admin_user)
    before = text(client.get(f"/staff/hosts/{host.pk}/"))
    assert f"/ {host.capacity['vcpus']}</span>" in before.replace("\n", "")

    response = client.post(
        f"/staff/hosts/{host.pk}/settings/",
        settings_form(host, cpu_allocation_ratio="2", reserved_vcpus="2"),
        follow=True,
    )
    host.refresh_from_db()
    assert host.cpu_allocation_ratio == Decimal("2.00") and host.reserved_vcpus == 2
    expected = (host.vcpus_total - 2) * 2
    assert host.capacity["vcpus"] == expected
    assert response.context["capacity"]["vcpus"] == expected
    html = text(response)
    assert "were saved" in html
    assert "probe the host" not in html  # nothing the probe checks changed
    assert re.search(rf"/\s*{expected}\s*</span>", html)


def test_settings_errors_change_nothing_and_placement_changes_suggest_a_probe(client, admin_user, catalog):
    host = catalog["host"]
    client.force_login(admin_user)
    response = client.post(
        f"/staff/hosts/{host.pk}/settings/",
        settings_form(host, cpu_allocation_ratio="0", storage_pool_path="relative/dir", bridge="br 0"),
    )
    assert response.status_code == 200
    html = text(response)
    assert "Ensure this value is greater than or equal to 0.1" in html
    assert "Give an absolute path" in html
    assert "bridge name" in html
    assert Host.objects.get(pk=host.pk).cpu_allocation_ratio == host.cpu_allocation_ratio

    response = client.post(
        f"/staff/hosts/{host.pk}/settings/",
        settings_form(host, bridge="br0", force_emulation="on"),
        follow=True,
    )
    host.refresh_from_db()
    assert host.bridge == "br0" and host.force_emulation
    assert "probe the host" in text(response)


def test_disabling_on_the_page_records_that_an_admin_did_it(client, admin_user, catalog):
    host = catalog["host"]
    client.force_login(admin_user)
    response = client.post(
        f"/staff/hosts/{host.pk}/action/", {"action": "disable", "reason": "RAID rebuild"}, follow=True
    )
    host.refresh_from_db()
    assert not host.enabled
    assert host.disabled_by == Host.DisabledBy.ADMIN and host.disabled_reason == "RAID rebuild"
    html = text(response)
    assert "Disabled by an admin." in html and "RAID rebuild" in html

    client.post(f"/staff/hosts/{host.pk}/action/", {"action": "enable"})
    host.refresh_from_db()
    assert host.enabled and host.disabled_by == "" and host.disabled_reason == ""

    client.post(f"/staff/hosts/{host.pk}/action/", {"action": "maintenance_on"})
    assert Host.objects.get(pk=host.pk).maintenance
    client.post(f"/staff/hosts/{host.pk}/action/", {"action": "maintenance_off"})
    assert not Host.objects.get(pk=host.pk).maintenance

    Host.objects.filter(pk=host.pk).update(
        state=Host.State.DOWN,
        enabled=False,
        disabled_by=Host.DisabledBy.HEALTH,
        disabled_reason="Disabled automatically: the host stopped answering.",
    )
    html = text(client.get(f"/staff/hosts/{host.pk}/"))
    assert "Disabled automatically by the health check." in html and "badge--host-down" in html


def test_recorded_host_keys_are_shown_and_an_admin_can_forget_them(client, admin_user, catalog):
    host = catalog["host"]
    known_hosts = "192.0.2.10 " + " ".join(factories.ED25519_KEY.split()[:2]) + "\n"
    Host.objects.filter(pk=host.pk).update(ssh_host_keys=known_hosts)
    client.force_login(admin_user)
    html = text(client.get(f"/staff/hosts/{host.pk}/"))
    assert f"ssh-ed25519 {factories.ED25519_FINGERPRINT}" in html
    assert 'value="forget_host_keys"' in html

    response = client.post(f"/staff/hosts/{host.pk}/action/", {"action": "forget_host_keys"}, follow=True)
    assert Host.objects.get(pk=host.pk).ssh_host_keys == ""
    assert "next probe records" in text(response)


def test_open_notices_appear_on_the_hosts_page(client, staff, admin_user, catalog):
    Notice.report("domain:host1:vps-x", "Host host1 runs a domain the panel does not know: <b>x</b>")
    Notice.report("drift:host1", "Allocations on host1 drifted", level=Notice.Level.ERROR)
    Notice.objects.create(key="old", message="An old resolved problem", resolved_at=timezone.now())
    for user in (staff, admin_user):
        client.force_login(user)
        html = text(client.get("/staff/hosts/"))
        assert "Needs attention" in html
        assert "runs a domain the panel does not know: &lt;b&gt;x&lt;/b&gt;" in html
        assert "Allocations on host1 drifted" in html
        assert "An old resolved problem" not in html


def test_no_needs_attention_card_without_open_notices(client, staff, catalog):
    client.force_login(staff)
    assert "Needs attention" not in text(client.get("/staff/hosts/"))


# ---------- IPv4 pools ----------


def test_an_admin_creates_a_pool_through_the_page(client, admin_user, catalog):
    client.force_login(admin_user)
    response = client.post(
        "/staff/ip-pools/",
        {
            "region": catalog["region"].pk,
            "name": "doc-net",
            "cidr": "192.0.2.0/28",
            "gateway": "192.0.2.1",
            "nameservers": "192.0.2.53, 9.9.9.9",
            "excluded": "192.0.2.2-192.0.2.4",
        },
    )
    pool = IPPool.objects.get(name="doc-net")
    assert response.status_code == 302 and response["Location"] == f"/staff/ip-pools/{pool.pk}/"
    # 16 addresses - network - broadcast - gateway - 3 excluded
    assert IPAddress.objects.filter(pool=pool).count() == 10
    assert pool.nameservers == ["192.0.2.53", "9.9.9.9"]
    assert not IPAddress.objects.filter(address__in=["192.0.2.1", "192.0.2.2", "192.0.2.4"]).exists()

    listing = text(client.get("/staff/ip-pools/"))
    assert "doc-net" in listing and "192.0.2.0/28" in listing and "9.9.9.9" in listing
    detail = text(client.get(f"/staff/ip-pools/{pool.pk}/"))
    assert "192.0.2.5" in detail and "192.0.2.14" in detail
    assert detail.count("badge--ip-free") == 10


def test_an_invalid_pool_is_a_form_error_and_creates_nothing(client, admin_user, catalog):
    client.force_login(admin_user)
    form = {"region": catalog["region"].pk, "name": "bad", "cidr": "192.0.2.0/33", "gateway": "192.0.2.1"}
    response = client.post("/staff/ip-pools/", form)
    assert response.status_code == 200
    assert "is not an IPv4 network in CIDR form" in text(response)
    response = client.post("/staff/ip-pools/", {**form, "cidr": "192.0.2.0/28", "excluded": "192.0.2.99"})
    assert "outside the network" in text(response)
    assert not IPPool.objects.exists() and not IPAddress.objects.exists()


def test_the_pool_page_tells_free_used_and_cooling_addresses_apart(client, staff, server, address):
    pool = address.pool
    cooling = IPAddress.objects.filter(pool=pool, consumer_uuid__isnull=True).order_by("value").first()
    IPAddress.objects.filter(pk=cooling.pk).update(released_at=timezone.now())
    IPAddress.objects.filter(pk=address.pk).update(ptr="mail.example.com")
    client.force_login(staff)
    html = text(client.get(f"/staff/ip-pools/{pool.pk}/"))
    assert html.count("badge--ip-used") == 1
    assert html.count("badge--ip-cooling") == 1
    assert "/staff/servers/?q=mail" in html and "mail.example.com" in html
    assert "until" in html


def test_pool_addresses_are_paginated(client, staff, catalog):
    pool = ipam.create_pool(catalog["region"], "big", "10.20.0.0/23", "10.20.0.1")
    client.force_login(staff)
    first = client.get(f"/staff/ip-pools/{pool.pk}/")
    assert len(first.context["rows"]) == ADDRESSES_PER_PAGE == 100
    assert "1–100 of 509" in text(first) and "Page 1 of 6" in text(first)
    last = client.get(f"/staff/ip-pools/{pool.pk}/?page=6")
    assert len(last.context["rows"]) == 509 - 5 * ADDRESSES_PER_PAGE
    assert "10.20.1.254" in text(last) and "10.20.1.254" not in text(first)


# ---------- Reverse DNS ----------


def test_a_customer_sets_and_clears_the_ptr_of_their_address(client, customer, server, address):
    client.force_login(customer)
    page = text(client.get(f"/servers/{server.pk}/"))
    assert address.address in page and "198.51.100.1" in page  # the address and its gateway
    assert f'action="/servers/{server.pk}/ptr/"' in page

    response = client.post(
        f"/servers/{server.pk}/ptr/", {"address": address.address, "ptr": "Mail.Example.com."}, follow=True
    )
    assert IPAddress.objects.get(pk=address.pk).ptr == "mail.example.com"
    assert 'value="mail.example.com"' in text(response)

    client.post(f"/servers/{server.pk}/ptr/", {"address": address.address, "ptr": ""})
    assert IPAddress.objects.get(pk=address.pk).ptr == ""


def test_an_invalid_ptr_is_refused_and_changes_nothing(client, customer, server, address):
    IPAddress.objects.filter(pk=address.pk).update(ptr="mail.example.com")
    client.force_login(customer)
    response = client.post(
        f"/servers/{server.pk}/ptr/", {"address": address.address, "ptr": "bad_name!.example"}, follow=True
    )
    assert "is not a valid hostname label" in text(response)
    assert IPAddress.objects.get(pk=address.pk).ptr == "mail.example.com"


def test_nobody_sets_the_ptr_of_someone_elses_address(client, customer, other_customer, server, address):
    client.force_login(other_customer)
    response = client.post(f"/servers/{server.pk}/ptr/", {"address": address.address, "ptr": "evil.example"})
    assert response.status_code == 404
    # The owner cannot name an address of the pool that is not their server's either.
    client.force_login(customer)
    response = client.post(f"/servers/{server.pk}/ptr/", {"address": "198.51.100.6", "ptr": "x.example"})
    assert response.status_code == 404
    assert not IPAddress.objects.exclude(ptr="").exists()


def test_the_server_list_shows_the_address(client, customer, server, address):
    client.force_login(customer)
    assert address.address in text(client.get("/servers/"))


# ---------- Order page ----------


def test_the_order_page_knows_which_plans_each_region_can_take(client, customer, catalog):
    empty_region = factories.make_region("bali", "Bali")
    client.force_login(customer)
    response = client.get("/servers/new/")
    html = text(response)
    match = re.search(r'<script id="plan-availability" type="application/json">(.*?)</script>', html)
    availability = json.loads(match.group(1))
    assert availability == {str(catalog["region"].pk): [catalog["plan"].pk], str(empty_region.pk): []}
    # The select shows Bali first (regions are ordered by name), so its plans render unavailable.
    assert response.context["available_plans"] == set()
    assert "option-card--disabled" in html

    response = client.get(f"/servers/new/?region={catalog['region'].pk}")
    assert response.context["available_plans"] == {catalog["plan"].pk}
    assert "option-card--disabled" not in text(response)
