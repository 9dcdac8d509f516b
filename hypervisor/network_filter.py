"""A server's network filter on its host: libvirt network filters (nwfilter) that the server's interface is
bound to, made of anti-spoofing for both address families and the customer's inbound firewall.

Every server has its own root filter, `vps-<uuid>`, composed like libvirt's `clean-traffic` from the stock
filters (the guest sends only from its own MAC and IPv4 addresses, answers ARP only for them, sends no
other layer-2 protocol) plus, where it has IPv6 networks, a filter of its own, `vps-<uuid>-ipv6`, that
lets it send IPv6 only from them, from link-local addresses and from `::` (duplicate address detection),
never as a router or a DHCPv6 server, and lets IPv6 in. A server without IPv6 networks sends no IPv6 at
all. The addresses are written into the filters as literal values (parameters of the stock filters'
references, or rules), not passed by the interface, so that a change of the server's addresses or rules is
one redefinition of its filters: libvirt instantiates a redefined filter again on every running interface
bound to it, without restarting anything. A server without IPv4 addresses of its own (a region with no
pool) lets libvirt learn its address from the DHCP server's answer only (CTRL_IP_LEARNING=dhcp on the
interface), as before.

The firewall is at libvirt's iptables layer, on traffic to the guest only: with the default `accept`
there is nothing to add; with `drop`, replies to the guest's own connections (ESTABLISHED, RELATED), DHCP
and DHCPv6 answers, IPv6 neighbour discovery (ICMPv6 133-137), and what the customer's rules allow come
in, and everything else is dropped. Outbound traffic is never filtered there (only spoofing is, above).

Rules carry an explicit `state`: libvirt then writes a rule for traffic to the guest only (without it,
libvirt adds rules for the opposite direction too, and a drop rule would drop the guest's own outbound
traffic). `NONE` means no connection-state match: neighbour discovery is not tracked by the kernel's
connection tracking (it is "untracked", which no state but none matches).

This module writes the filters and works on an open connection (`define`, `bind`, `undefine`);
hypervisor.driver applies them on a host (`apply_network_filter`, `remove_network_filters`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import uuid as uuid_module
from dataclasses import dataclass

import libvirt

from .xml import domain as domain_xml
from .xml.domain import FilterRef
from .xml.nwfilter import Match, NetworkFilter, Rule
from .xml.nwfilter import parse as parse_filter

log = logging.getLogger(__name__)

PROTOCOLS = ("tcp", "udp", "icmp", "any")
POLICIES = ("accept", "drop")

# The stock filters (libvirt-daemon-config-nwfilter) a server's filter is made of. A host must have them.
STOCK_FILTERS = (
    "clean-traffic",
    "no-mac-spoofing",
    "no-ip-spoofing",
    "allow-incoming-ipv4",
    "allow-incoming-ipv6",
    "no-arp-spoofing",
    "no-other-l2-traffic",
    "qemu-announce-self",
)

# Filter UUIDs are made from the filter's name in this namespace (libvirt refuses a filter defined again
# under its name with another UUID; an existing filter keeps the UUID it has).
UUID_NAMESPACE = uuid_module.UUID("5d3c7f0e-8f4e-4c55-9a3e-6f1d2b7a9c10")

# Priorities at the iptables layer (rules in the root chain are ordered by them).
ESTABLISHED_PRIORITY = 100
DHCP_PRIORITY = 110
NEIGHBOUR_DISCOVERY_PRIORITY = 120
ALLOW_PRIORITY = 200
DROP_PRIORITY = 900
# router and neighbour solicitation, advertisement, redirect
NEIGHBOUR_DISCOVERY_TYPES = (133, 134, 135, 136, 137)

# IPv6 a guest never sends (it is neither the link's router nor its DHCPv6 server): router advertisements,
# redirects, DHCPv6 answers (and relayed messages, from the same port). Dropped first in its IPv6 filter.
ROUTER_ONLY_PRIORITY = 10
ROUTER_ONLY = (
    {"protocol": "icmpv6", "type": "134"},
    {"protocol": "icmpv6", "type": "137"},
    {"protocol": "udp", "srcportstart": "547"},
)


@dataclass(frozen=True)
class FirewallRule:
    """One allow rule for inbound traffic: a protocol (`tcp`, `udp`, `icmp` or `any`), for tcp and udp
    a port ("22") or a range ("8000-8100") or None (every port), and the sources (IPv4 or IPv6 networks or
    addresses) it comes from. The panel validates what customers give with messages of its own; this checks
    again, so that nothing else reaches a host."""

    protocol: str
    ports: str | None
    sources: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}")
        if self.ports and self.protocol not in ("tcp", "udp"):
            raise ValueError("ports are only for tcp and udp")
        object.__setattr__(self, "sources", tuple(self.sources))
        if self.port_range is None and self.ports:
            raise ValueError(f"bad ports {self.ports!r}")
        if not self.networks:
            raise ValueError("a rule needs at least one source")

    @property
    def port_range(self) -> tuple[int, int] | None:
        if not self.ports:
            return None
        low, _, high = str(self.ports).partition("-")
        first, last = int(low), int(high or low)
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"bad port range {self.ports!r}")
        return first, last

    @property
    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(source, strict=False) for source in self.sources]


@dataclass(frozen=True)
class FilterSpec:
    """What a server's filter says: its UUID (the domain's), MAC, the IPv4 addresses it may send from, its
    IPv6 networks ("2001:db8:1::/64" for a routed /64, "2001:db8::5/128" for one address), and its inbound
    firewall."""

    uuid: uuid_module.UUID
    mac: str = ""
    ipv4: tuple[str, ...] = ()
    ipv6_networks: tuple[str, ...] = ()
    inbound: tuple[FirewallRule, ...] = ()
    default_inbound: str = "accept"

    def __post_init__(self) -> None:
        object.__setattr__(self, "uuid", uuid_module.UUID(str(self.uuid)))
        object.__setattr__(self, "ipv4", tuple(str(ipaddress.IPv4Address(a)) for a in self.ipv4))
        networks = tuple(str(ipaddress.IPv6Network(n, strict=False)) for n in self.ipv6_networks)
        object.__setattr__(self, "ipv6_networks", networks)
        object.__setattr__(self, "inbound", tuple(self.inbound))
        if self.default_inbound not in POLICIES:
            raise ValueError(f"unknown default policy {self.default_inbound!r}")


def filter_name(uuid) -> str:
    """The server's root filter, the one its interface references."""
    return f"vps-{uuid_module.UUID(str(uuid))}"


def ipv6_filter_name(uuid) -> str:
    return f"{filter_name(uuid)}-ipv6"


def filter_names(uuid) -> tuple[str, ...]:
    """Every filter a server may have, the root filter first (it references the others)."""
    return (filter_name(uuid), ipv6_filter_name(uuid))


def interface_filterref(spec: FilterSpec) -> FilterRef:
    """What the server's interface carries: its root filter; without IPv4 addresses of its own, libvirt
    learns the guest's address from the DHCP server's answer only (never from what the guest sends)."""
    return FilterRef(filter_name(spec.uuid), [] if spec.ipv4 else [("CTRL_IP_LEARNING", "dhcp")])


def _addresses(spec: FilterSpec) -> list[tuple[str, str]]:
    return [("IP", address) for address in spec.ipv4]


def _source(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> dict[str, str]:
    if network.prefixlen == 0:
        return {}
    return {"srcipaddr": str(network.network_address), "srcipmask": str(network.prefixlen)}


def ipv6_filter(spec: FilterSpec) -> NetworkFilter:
    """IPv6 anti-spoofing: from the guest only link-local sources (neighbour discovery, DHCPv6), `::`
    (duplicate address detection) and the server's own networks; everything else it sends is dropped.

    What only a router or a DHCPv6 server sends is dropped first, whatever its source (link-local too):
    router advertisements and redirects (ICMPv6 134, 137) and DHCPv6 answers (from udp port 547). A guest
    that sent them could make the other guests on the bridge route through it, or give them addresses.

    Left open (a known risk): a neighbour advertisement (ICMPv6 136) names the address it answers for in its
    body, which ebtables cannot match. A guest can therefore claim in one another address of its link and
    poison its neighbours' caches: another server's address where servers share an on-link network (a pool
    of `address` assignment), or the gateway's, to the other guests. A routed /64 (a `prefix64` pool) is
    not on the shared link, so only the gateway's address can be claimed there."""
    rules = [
        *[Rule("drop", "out", ROUTER_ONLY_PRIORITY, Match("ipv6", dict(match))) for match in ROUTER_ONLY],
        Rule("return", "out", 100, Match("ipv6", {"srcipaddr": "fe80::", "srcipmask": "10"})),
        Rule("return", "out", 110, Match("ipv6", {"srcipaddr": "::", "srcipmask": "128"})),
    ]
    for network in spec.ipv6_networks:
        rules.append(Rule("return", "out", 500, Match("ipv6", _source(ipaddress.IPv6Network(network)))))
    rules.append(Rule("drop", "out", 1000))
    return NetworkFilter(ipv6_filter_name(spec.uuid), chain="ipv6-ip", priority=-610, entries=rules)


def _inbound(protocol: str, attributes: dict[str, str], priority: int, action: str = "accept") -> Rule:
    return Rule(action, "in", priority, Match(protocol, {**attributes, "state": "NONE"}))


def firewall_rules(spec: FilterSpec) -> list[Rule]:
    """The inbound firewall at the iptables layer (nothing with the default `accept`)."""
    if spec.default_inbound == "accept":
        return []
    ipv6 = bool(spec.ipv6_networks)
    families = ("", "-ipv6") if ipv6 else ("",)
    rules = [Rule("accept", "in", ESTABLISHED_PRIORITY, Match("all", {"state": "ESTABLISHED,RELATED"}))]
    if ipv6:
        rules.append(
            Rule("accept", "in", ESTABLISHED_PRIORITY, Match("all-ipv6", {"state": "ESTABLISHED,RELATED"}))
        )
    rules.append(_inbound("udp", {"srcportstart": "67", "dstportstart": "68"}, DHCP_PRIORITY))
    if ipv6:
        rules.append(_inbound("udp-ipv6", {"srcportstart": "547", "dstportstart": "546"}, DHCP_PRIORITY))
        for kind in NEIGHBOUR_DISCOVERY_TYPES:
            rules.append(_inbound("icmpv6", {"type": str(kind)}, NEIGHBOUR_DISCOVERY_PRIORITY))
    for rule in spec.inbound:
        ports = rule.port_range
        for network in rule.networks:
            if network.version == 6 and not ipv6:
                continue  # the guest has no IPv6: all of it is dropped before
            protocol = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "any": "all"}[rule.protocol]
            if network.version == 6:
                protocol = "icmpv6" if protocol == "icmp" else f"{protocol}-ipv6"
            attributes = _source(network)
            if ports is not None:
                attributes["dstportstart"] = str(ports[0])
                if ports[1] != ports[0]:
                    attributes["dstportend"] = str(ports[1])
            rules.append(_inbound(protocol, attributes, ALLOW_PRIORITY))
    for family in families:
        rules.append(_inbound(f"all{family}", {}, DROP_PRIORITY, action="drop"))
    return rules


def root_filter(spec: FilterSpec) -> NetworkFilter:
    """The server's root filter: clean-traffic's parts with its addresses, IPv6 where it has networks, and
    its firewall."""
    entries: list = [
        FilterRef("no-mac-spoofing"),
        FilterRef("no-ip-spoofing", _addresses(spec)),
        Rule("accept", "out", -650, Match("mac", {"protocolid": "ipv4"})),
        FilterRef("allow-incoming-ipv4"),
    ]
    if spec.ipv6_networks:
        entries += [
            FilterRef(ipv6_filter_name(spec.uuid)),
            Rule("accept", "out", -590, Match("mac", {"protocolid": "ipv6"})),
            FilterRef("allow-incoming-ipv6"),
        ]
    entries += [
        FilterRef("no-arp-spoofing", _addresses(spec)),
        Rule("accept", "inout", -500, Match("mac", {"protocolid": "arp"})),
        FilterRef("no-other-l2-traffic"),
        FilterRef("qemu-announce-self"),
        *firewall_rules(spec),
    ]
    return NetworkFilter(filter_name(spec.uuid), chain="root", entries=entries)


def filters(spec: FilterSpec) -> list[NetworkFilter]:
    """The server's filters, each one after those it references."""
    return [*([ipv6_filter(spec)] if spec.ipv6_networks else []), root_filter(spec)]


# -- On a host


def _lookup(conn: libvirt.virConnect, name: str) -> libvirt.virNWFilter | None:
    try:
        return conn.nwfilterLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_NWFILTER:
            return None
        raise


def define(conn: libvirt.virConnect, spec: FilterSpec, only_missing: bool = False) -> None:
    """Define the server's filters as the spec says (each that says otherwise now, or is missing; with
    `only_missing`, only those that are missing). libvirt applies a redefined filter at once to the
    running interfaces bound to it."""
    for wanted in filters(spec):
        existing = _lookup(conn, wanted.name)
        if existing is None:
            wanted = dataclasses.replace(wanted, uuid=uuid_module.uuid5(UUID_NAMESPACE, wanted.name))
        elif only_missing:
            continue
        else:
            current = parse_filter(existing.XMLDesc(0))
            if current.same_rules(wanted):
                continue
            wanted = dataclasses.replace(wanted, uuid=current.uuid)
        conn.nwfilterDefineXML(wanted.to_xml())
    if not spec.ipv6_networks and not only_missing:
        _undefine(conn, ipv6_filter_name(spec.uuid))  # no longer referenced by the root filter


def _undefine(conn: libvirt.virConnect, name: str) -> None:
    found = _lookup(conn, name)
    if found is None:
        return
    try:
        found.undefine()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_NWFILTER:
            return  # undefined meanwhile
        raise


def undefine(conn: libvirt.virConnect, uuid) -> None:
    """Undefine the server's filters (its domain must be gone, or no longer bound to them)."""
    for name in filter_names(uuid):
        _undefine(conn, name)


def bind(domain: libvirt.virDomain, spec: FilterSpec) -> None:
    """Bind the domain's interfaces to the server's filter, in the running domain (without a restart) and in
    its persistent definition, unless they are already. A domain defined before it had a filter of its own
    references clean-traffic: this switches it."""
    wanted = interface_filterref(spec)
    if domain.isActive():
        for interface in domain_xml.refiltered_interfaces(domain.XMLDesc(0), wanted):
            try:
                domain.updateDeviceFlags(interface, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID or domain.isActive():
                    raise
                break  # it stopped meanwhile: its next start takes the persistent definition
    if domain.isPersistent():
        inactive = domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        for interface in domain_xml.refiltered_interfaces(inactive, wanted):
            domain.updateDeviceFlags(interface, libvirt.VIR_DOMAIN_AFFECT_CONFIG)


def missing_stock_filters(conn: libvirt.virConnect) -> list[str]:
    """The stock filters a server's filter is made of that the host lacks."""
    return [name for name in STOCK_FILTERS if _lookup(conn, name) is None]
