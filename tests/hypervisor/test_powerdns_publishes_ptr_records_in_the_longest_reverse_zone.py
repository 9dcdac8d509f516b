"""The PowerDNS client against a real PowerDNS (tests/powerdns_server.py): a PTR record goes into the
longest reverse zone that holds the address, IPv4 and IPv6 (nibbles); publishing again replaces it,
withdrawing removes it and is a no-op where there is nothing to remove; an address no zone holds, a wrong
API key, a server that does not answer in time and one that is not there are each a PowerDNSError that
says which."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from hypervisor import powerdns as client
from tests.powerdns_server import (
    powerdns_fixture,  # noqa: F401
    random_ipv4_network,
    random_ipv6_network,
)


def test_a_ptr_record_is_published_replaced_and_withdrawn_over_real_dns(powerdns):
    network = random_ipv4_network()
    powerdns.add_reverse_zone(network)
    address = str(network.network_address + 5)

    client.publish(address, "Mail.Example.com")
    assert powerdns.resolve_ptr(address) == ["mail.example.com."]
    assert client.published(address) == ["mail.example.com."]

    client.publish(address, "smtp.example.com.")
    assert powerdns.resolve_ptr(address) == ["smtp.example.com."]
    assert powerdns.ptr_records(address) == ["smtp.example.com."]

    client.withdraw(address)
    assert powerdns.resolve_ptr(address) == []
    assert client.published(address) == []
    client.withdraw(address)  # again: nothing to remove, no error


def test_an_ipv6_record_goes_into_the_longest_of_the_zones_that_hold_it(powerdns):
    network = random_ipv6_network()  # a /48
    subnet = next(network.subnets(new_prefix=64))
    wide = powerdns.add_reverse_zone(network)
    narrow = powerdns.add_reverse_zone(subnet)
    address = str(subnet.network_address + 1)

    assert client.zone_for(address)["name"] == narrow
    client.publish(address, "v6.example.com")
    assert powerdns.resolve_ptr(address) == ["v6.example.com."]
    assert client.ptr_name(address) == ipaddress.ip_address(address).reverse_pointer + "."
    assert len(client.ptr_name(address).split(".")) == 32 + 3  # 32 nibbles, ip6, arpa, and the root

    # An address of the /48 outside the /64 belongs to the wider zone.
    other = str(network.network_address + (1 << 64) + 7)
    assert client.zone_for(other)["name"] == wide


def test_an_address_without_a_reverse_zone_is_a_clear_error(powerdns):
    address = str(random_ipv4_network().network_address + 9)
    with pytest.raises(client.NoZone, match=f"no reverse zone for {address}"):
        client.publish(address, "mail.example.com")
    client.withdraw(address)  # nothing to withdraw where no zone holds it


def test_a_wrong_api_key_is_an_error_naming_the_answer(powerdns, settings):
    settings.POWERDNS_API_KEY = "not-the-key"
    with pytest.raises(client.PowerDNSError, match="answered 401"):
        client.zones()


def test_a_server_that_does_not_answer_in_time_is_a_timeout_error(powerdns, settings):
    # A socket that listens but never answers: the connection is made (the kernel's backlog), the reply
    # never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        settings.POWERDNS_API_URL = f"http://127.0.0.1:{silent.getsockname()[1]}"
        settings.POWERDNS_TIMEOUT = 0.5
        with pytest.raises(client.PowerDNSError, match="did not answer GET /zones within 0.5 s"):
            client.zones()


def test_a_server_that_is_not_there_is_an_error_and_an_empty_url_is_not_configured(powerdns, settings):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    settings.POWERDNS_API_URL = f"http://127.0.0.1:{port}/api/v1/"
    with pytest.raises(client.PowerDNSError, match="could not be reached"):
        client.zones()
    settings.POWERDNS_API_URL = ""
    assert not client.is_configured()
    with pytest.raises(client.PowerDNSError, match="not configured"):
        client.publish("192.0.2.1", "mail.example.com")
