"""The guest's network-config (cloud-init version 2) carries every address of the server: the primary
IPv4 address with its pool's prefix, additional IPv4 addresses, and an IPv6 address (one of an on-link
/64) or a routed /64; a default route per family through its pool's gateway, said to be on the link when
it is outside the interface's networks, and the pools' nameservers once each."""

import yaml

from hypervisor.cloudinit import AssignedAddress, GuestConfig, build_seed_iso, read_seed_iso, static_network

MAC = "52:54:00:12:34:56"


def network_of(assigned: list[AssignedAddress]) -> dict:
    config = GuestConfig(instance_id="i-1", hostname="web.example.id", network=static_network(MAC, assigned))
    files = read_seed_iso(build_seed_iso(config))
    return yaml.safe_load(files["network-config"])["ethernets"]["eth0"]


def test_ipv4_with_an_additional_address_and_a_routed_ipv6_64():
    eth0 = network_of(
        [
            AssignedAddress("192.0.2.10", "192.0.2.0/24", 32, "192.0.2.1", ("192.0.2.53",)),
            AssignedAddress("198.51.100.7", "198.51.100.0/25", 32, "198.51.100.1", ("192.0.2.53",)),
            AssignedAddress("2001:db8:0:5::1", "2001:db8::/48", 64, "fe80::1", ("2001:db8::53",)),
        ]
    )
    assert eth0["match"] == {"macaddress": MAC}
    assert eth0["addresses"] == ["192.0.2.10/24", "198.51.100.7/25", "2001:db8:0:5::1/64"]
    assert eth0["routes"] == [
        {"to": "0.0.0.0/0", "via": "192.0.2.1"},
        {"to": "::/0", "via": "fe80::1"},  # link-local: on the link by definition
    ]
    assert eth0["nameservers"] == {"addresses": ["192.0.2.53", "2001:db8::53"]}
    assert eth0["accept-ra"] is False


def test_an_on_link_ipv6_address_takes_its_pools_prefix():
    eth0 = network_of([AssignedAddress("2001:db8:1::a", "2001:db8:1::/64", 128, "2001:db8:1::1")])
    assert eth0["addresses"] == ["2001:db8:1::a/64"]
    assert eth0["routes"] == [{"to": "::/0", "via": "2001:db8:1::1"}]
    assert "nameservers" not in eth0


def test_a_gateway_outside_every_network_of_the_interface_is_on_the_link():
    eth0 = network_of([AssignedAddress("2001:db8:0:7::1", "2001:db8::/48", 64, "2001:db8::1")])
    assert eth0["routes"] == [{"to": "::/0", "via": "2001:db8::1", "on-link": True}]


def test_without_addresses_the_guest_gets_no_network_config():
    assert static_network(MAC, []) is None
    files = read_seed_iso(build_seed_iso(GuestConfig(instance_id="i-1", hostname="web")))
    assert "network-config" not in files


def test_the_seed_documents_read_back_exactly_whatever_their_text():
    """The documents are JSON read by a YAML parser: an emoji in a key's comment, accents, controls,
    separators and quotes come back as they were, with libyaml's reader and the pure-Python one cloud-init
    uses."""
    key = 'ssh-ed25519 AAAAC3Nza dewi 🚀 é \x85 \x7f \u2028 \ufeff\ttab \\ "quoted"'
    config = GuestConfig(instance_id="i-1", hostname="123", ssh_keys=[key], password_hash="$6$salt$hash")
    files = read_seed_iso(build_seed_iso(config))
    for loader in (yaml.SafeLoader, yaml.CSafeLoader):
        user_data = yaml.load(files["user-data"].decode(), Loader=loader)
        assert user_data["users"][0]["ssh_authorized_keys"] == [key]
        assert user_data["hostname"] == "123"  # a string, not a number
        assert yaml.load(files["meta-data"].decode(), Loader=loader)["local-hostname"] == "123"
