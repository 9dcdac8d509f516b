"""libvirt reads a URI's scheme case-insensitively, so the panel does too: QEMU+TLS:// needs the TLS
material and QEMU+SSH:// gets the recorded host keys, on the Hosts page, through the admin API and with
add_host. Host names that ssh or ssh-keyscan would take for an option, local URIs that name a remote host,
and URI parameters that change how the panel connects are refused."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from hypervisor import credentials, hosts
from hypervisor.models import Host
from tests import factories

pytestmark = pytest.mark.django_db

UPPER_TLS = "QEMU+TLS://kvm9.example.net/system"


@pytest.mark.parametrize(
    "given,stored",
    [
        ("QEMU+TLS://kvm9.example.net/system", "qemu+tls://kvm9.example.net/system"),
        ("Qemu+Ssh://root@192.0.2.9:2222/system", "qemu+ssh://root@192.0.2.9:2222/system"),
        (" QEMU:///system ", "qemu:///system"),
        ("TEST:///default", "test:///default"),
    ],
)
def test_the_scheme_is_stored_in_lower_case(given, stored):
    assert hosts.validate_uri(given) == stored


def test_an_upper_case_tls_host_needs_its_tls_material(db):
    region = factories.make_region()
    with pytest.raises(ValidationError, match="needs the CA certificate"):
        hosts.register_host("kvm9", UPPER_TLS, region)
    assert not Host.objects.exists()


def test_the_hosts_page_asks_for_the_tls_files_of_an_upper_case_tls_uri(client, admin_user):
    region = factories.make_region()
    client.force_login(admin_user)
    form = {"name": "kvm9", "uri": UPPER_TLS, "region": region.pk, "storage_pool": "default",
            "network": "default"}  # fmt: skip
    response = client.post("/staff/hosts/", form)
    assert response.status_code == 200
    assert response.content.decode().count("A qemu+tls:// host needs this file.") == 3
    assert not Host.objects.exists()


def test_the_admin_api_refuses_an_upper_case_tls_host_without_material(api, admin_user):
    region = factories.make_region()
    response = api(admin_user).post(
        "/api/v1/admin/hosts/", {"name": "kvm9", "uri": UPPER_TLS, "region": region.slug}, format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"]
    assert not Host.objects.exists()


def test_add_host_refuses_an_upper_case_tls_host_without_material(db):
    factories.make_region()
    with pytest.raises(CommandError, match="needs the CA certificate"):
        call_command("add_host", "kvm9", UPPER_TLS)
    assert not Host.objects.exists()


def test_an_upper_case_ssh_host_is_reached_only_with_recorded_host_keys(db):
    """Nothing listens on port 1: the host-key scan finds no keys, so the host is not connected to."""
    host = hosts.register_host("kvm8", "QEMU+SSH://root@127.0.0.1:1/system", factories.make_region())
    assert host.uri == "qemu+ssh://root@127.0.0.1:1/system"
    assert host.transport == "qemu+ssh"
    probed = hosts.probe_host(host.pk)
    assert probed.state == Host.State.ERROR
    assert "no SSH server answered at 127.0.0.1:1" in probed.status_reason
    Host.objects.filter(pk=host.pk).update(ssh_host_keys="127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\n")
    uri = credentials.connect_uri(Host.objects.get(pk=host.pk))
    assert "command=" in uri and "keyfile=" in uri  # the wrapper that pins the recorded host keys


def test_a_host_row_with_an_upper_case_scheme_still_counts_as_its_transport(db):
    host = factories.make_host(probe=False)
    Host.objects.filter(pk=host.pk).update(uri="QEMU+TLS://kvm9.example.net/system")
    assert Host.objects.get(pk=host.pk).transport == "qemu+tls"


@pytest.mark.parametrize(
    "uri,message",
    [
        ("qemu+ssh://-oProxyCommand=touch%20x/system", "is not valid"),
        ("qemu+ssh://root@-oProxyCommand=id/system", "is not valid"),
        ("qemu+ssh://-lroot@kvm1.example.net/system", "user name"),
        ("qemu+tls://-kvm1.example.net/system", "is not valid"),
        ("qemu+ssh://kvm1..example.net/system", "is not valid"),
        ("qemu://kvm1.example.net/system", "must name no host"),
        ("test://kvm1.example.net/default", "must name no host"),
        ("qemu+tls://kvm1.example.net/system?no_verify=1", "no_verify"),
        ("qemu+ssh://root@kvm1.example.net/system?command=/tmp/evil", "command"),
        ("qemu+ssh://root@kvm1.example.net/system?keyfile=/etc/shadow", "keyfile"),
        ("qemu+ssh://root@kvm1.example.net:99999/system", "Unsupported libvirt URI"),
        ("qemu+ssh://root@kvm1.example.net/sys tem", "Unsupported libvirt URI"),
        ("http://example.com/", "Unsupported libvirt URI"),
    ],
)
def test_unsafe_uris_are_refused(uri, message):
    with pytest.raises(ValidationError) as raised:
        hosts.validate_uri(uri)
    assert message in " ".join(raised.value.messages)
    with pytest.raises(ValidationError):
        hosts.register_host("bad", uri, factories.make_region())
    assert not Host.objects.exists()


@pytest.mark.parametrize(
    "uri",
    [
        "qemu+ssh://root@kvm1.example.net/system",
        "qemu+ssh://deploy@192.0.2.7:2222/system?socket=/var/run/libvirt/libvirt-sock",
        "qemu+ssh://root@[2001:db8::7]/system",
        "qemu+tls://kvm-2.dc1.example.net/system",
        "qemu+unix:///system?socket=/run/libvirt/libvirt-sock",
        "qemu:///system",
        "test:///default",
    ],
)
def test_ordinary_uris_are_accepted(uri):
    assert hosts.validate_uri(uri) == uri


def test_ssh_keyscan_never_gets_a_host_name_it_could_read_as_an_option():
    with pytest.raises(ValueError):
        credentials.scan_host_keys("qemu+ssh://-oProxyCommand=id/system")
