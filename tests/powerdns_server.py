"""The real PowerDNS authoritative server of the reverse DNS tests.

scripts/test-services.sh runs it (sqlite3 backend, DNS on 127.0.0.1:5354, its HTTP API on 127.0.0.1:8089
with a fixed test key). The `powerdns` fixture points the panel's settings at it and makes the reverse
zones a test asks for through the API, deleting them afterwards. Tests take their networks at random
(`random_ipv4_network`, `random_ipv6_network`) so that two runs on one machine never share a zone, and they
read back what DNS answers with `dig`, as any resolver would ask.

    from tests.powerdns_server import powerdns_fixture  # noqa: F401

    def test_x(powerdns, ...):
        network = random_ipv4_network()
        powerdns.add_reverse_zone(network)
        ...
        assert powerdns.resolve_ptr("198.18.7.5") == ["mail.example.com."]
"""

from __future__ import annotations

import ipaddress
import os
import random
import subprocess

import pytest
import requests

API_URL = "http://127.0.0.1:8089"
API_KEY = "vpspanel-test-pdns-key"  # scripts/test-services.sh
DNS_ADDRESS = "127.0.0.1"
DNS_PORT = 5354


# `make test`'s processes (gw0, gw1, ...) each take networks of their own residue modulo PROCESS_SLOTS, so
# that of up to PROCESS_SLOTS processes (3 by default) no two make, and delete, the same reverse zone at once.
PROCESS_SLOTS = 8
_PROCESS = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0) % PROCESS_SLOTS


def random_ipv4_network() -> ipaddress.IPv4Network:
    """A /24 of the benchmarking range 198.18.0.0/15 (RFC 2544), which no real zone or route uses."""
    third = random.randrange(_PROCESS, 256, PROCESS_SLOTS)
    return ipaddress.IPv4Network(f"198.{random.choice((18, 19))}.{third}.0/24")


def random_ipv6_network() -> ipaddress.IPv6Network:
    """A /48 of the documentation prefix 2001:db8::/32 (RFC 3849)."""
    return ipaddress.IPv6Network(
        f"2001:db8:{random.randrange(PROCESS_SLOTS + _PROCESS, 0x10000, PROCESS_SLOTS):x}::/48"
    )


def reverse_zone(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """The reverse zone of a network on a label boundary (/8, /16, /24 of IPv4; a multiple of 4 of IPv6)."""
    labels = network.network_address.reverse_pointer.split(".")
    step = 8 if network.version == 4 else 4
    if network.prefixlen % step:
        raise ValueError(f"{network} does not end on a label of the reverse tree")
    keep = network.prefixlen // step
    host_labels = (32 if network.version == 4 else 128) // step - keep
    return ".".join(labels[host_labels:]) + "."


class PowerDNSServer:
    def __init__(self) -> None:
        self.session = requests.Session()
        self.session.headers["X-API-Key"] = API_KEY
        self.base = f"{API_URL}/api/v1/servers/localhost"
        self.zones: list[str] = []

    def _zone_url(self, zone: str) -> str:
        return f"{self.base}/zones/{zone}"

    def add_reverse_zone(self, network) -> str:
        """Create the network's reverse zone (replacing one a crashed run left behind); it is deleted after
        the test."""
        zone = reverse_zone(ipaddress.ip_network(network))
        self.session.delete(self._zone_url(zone), timeout=10)
        answer = self.session.post(
            f"{self.base}/zones",
            json={"name": zone, "kind": "Native", "nameservers": ["ns1.example.net."]},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        self.zones.append(zone)
        return zone

    def delete_zone(self, zone: str) -> None:
        self.session.delete(self._zone_url(zone), timeout=10)
        if zone in self.zones:
            self.zones.remove(zone)

    def ptr_records(self, address: str) -> list[str]:
        """The PTR contents the API holds for the address, in any of the test's zones."""
        name = ipaddress.ip_address(address).reverse_pointer + "."
        found = []
        for zone in self.zones:
            detail = self.session.get(self._zone_url(zone), timeout=10).json()
            for rrset in detail.get("rrsets", []):
                if rrset["type"] == "PTR" and rrset["name"] == name:
                    found.extend(record["content"] for record in rrset["records"])
        return found

    def resolve_ptr(self, address: str) -> list[str]:
        """What a DNS query for the address's PTR record answers (dig against the server's DNS port)."""
        result = subprocess.run(
            [
                "dig",
                "+short",
                "+tries=1",
                "+time=3",
                "-p",
                str(DNS_PORT),
                f"@{DNS_ADDRESS}",
                "-x",
                address,
                "PTR",
            ],
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        )
        return sorted(line for line in result.stdout.split() if line)

    def close(self) -> None:
        for zone in list(self.zones):
            self.delete_zone(zone)
        self.session.close()


@pytest.fixture(name="powerdns")
def powerdns_fixture(settings):
    """The test PowerDNS server, configured as the panel's (settings POWERDNS_*). A test module imports it
    as `from tests.powerdns_server import powerdns_fixture  # noqa: F401` and asks for `powerdns`."""
    try:
        requests.get(f"{API_URL}/api/v1/servers/localhost", headers={"X-API-Key": API_KEY}, timeout=5)
    except requests.RequestException:
        pytest.fail(f"no PowerDNS API at {API_URL}: run scripts/test-services.sh (as `make test` does)")
    settings.POWERDNS_API_URL = API_URL
    settings.POWERDNS_API_KEY = API_KEY
    settings.POWERDNS_SERVER_ID = "localhost"
    settings.POWERDNS_TTL = 300
    settings.POWERDNS_TIMEOUT = 5
    server = PowerDNSServer()
    try:
        yield server
    finally:
        server.close()
