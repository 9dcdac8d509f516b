"""Network filter XML (libvirt's nwfilter): dataclasses that write themselves with lxml (to_element) and read
themselves back (from_element), as hypervisor/xml/domain.py does, so that
`parse(nwfilter.to_xml()).to_xml() == nwfilter.to_xml()`.

A filter is a list of entries in order: references to other filters (`FilterRef`, the same element a
domain's interface carries, with parameters) and rules. A rule has an action, a direction (`in` is traffic
to the guest, `out` traffic from it), a priority and at most one match: a protocol element (`mac`, `ipv6`,
`tcp`, `all-ipv6`...) with its attributes. Filters libvirt ships (`clean-traffic` and what it is made of)
parse too; libvirt writes a match's attributes in an order of its own, so matches compare as mappings.
"""

from __future__ import annotations

import uuid as uuid_module
from dataclasses import dataclass, field

from lxml import etree

from .domain import FilterRef

# What a rule does with a packet it matches.
ACTIONS = ("drop", "reject", "accept", "return", "continue")
DIRECTIONS = ("in", "out", "inout")


def _sub(parent: etree._Element, tag: str, attributes: dict[str, str | None]) -> etree._Element:
    return etree.SubElement(
        parent, tag, {name: value for name, value in attributes.items() if value is not None}
    )


@dataclass
class Match:
    """A rule's protocol element, e.g. `<tcp srcipaddr='203.0.113.0' srcipmask='24' dstportstart='22'/>`."""

    protocol: str
    attributes: dict[str, str] = field(default_factory=dict)

    def to_element(self, parent: etree._Element) -> etree._Element:
        return _sub(parent, self.protocol, self.attributes)

    @classmethod
    def from_element(cls, element: etree._Element) -> Match:
        return cls(protocol=element.tag, attributes=dict(element.attrib))


@dataclass
class Rule:
    """One filtering rule. `statematch=False` turns libvirt's connection-state matching off (it is on
    when the attribute is left out)."""

    action: str
    direction: str
    priority: int | None = None
    match: Match | None = None
    statematch: bool | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown nwfilter action {self.action!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"unknown nwfilter direction {self.direction!r}")

    def to_element(self, parent: etree._Element) -> etree._Element:
        rule = _sub(
            parent,
            "rule",
            {
                "action": self.action,
                "direction": self.direction,
                "priority": None if self.priority is None else str(self.priority),
                "statematch": None if self.statematch is None else ("true" if self.statematch else "false"),
            },
        )
        if self.match is not None:
            self.match.to_element(rule)
        return rule

    @classmethod
    def from_element(cls, element: etree._Element) -> Rule:
        matches = [child for child in element if isinstance(child.tag, str)]
        priority, statematch = element.get("priority"), element.get("statematch")
        return cls(
            action=element.get("action", ""),
            direction=element.get("direction", ""),
            priority=None if priority is None else int(priority),
            match=Match.from_element(matches[0]) if matches else None,
            statematch=None if statematch is None else statematch.lower() in ("1", "true", "yes"),
        )


Entry = Rule | FilterRef


@dataclass
class NetworkFilter:
    """A named filter. `chain` is where its rules go (`root`, or a protocol chain such as `ipv6` or
    `ipv4-ip`, a prefix naming the protocol); `priority` orders a protocol chain among the others in the
    root chain (libvirt's default for its protocol when left out). The `uuid` is libvirt's identity of the
    filter: a filter defined again under its name must carry the same one."""

    name: str
    chain: str = "root"
    priority: int | None = None
    uuid: uuid_module.UUID | None = None
    entries: list[Entry] = field(default_factory=list)

    def to_element(self) -> etree._Element:
        root = etree.Element("filter", name=self.name, chain=self.chain)
        if self.priority is not None:
            root.set("priority", str(self.priority))
        if self.uuid is not None:
            _sub(root, "uuid", {}).text = str(self.uuid)
        for entry in self.entries:
            entry.to_element(root)
        return root

    def to_xml(self) -> str:
        return etree.tostring(self.to_element(), pretty_print=True, encoding="unicode")

    @classmethod
    def from_element(cls, root: etree._Element) -> NetworkFilter:
        entries: list[Entry] = []
        for child in root:
            if child.tag == "rule":
                entries.append(Rule.from_element(child))
            elif child.tag == "filterref":
                entries.append(FilterRef.from_element(child))
        priority, text = root.get("priority"), root.findtext("uuid")
        return cls(
            name=root.get("name", ""),
            chain=root.get("chain", "root"),
            priority=None if priority is None else int(priority),
            uuid=uuid_module.UUID(text.strip()) if text and text.strip() else None,
            entries=entries,
        )

    def same_rules(self, other: NetworkFilter) -> bool:
        """Whether both say the same (name, chain, priority and entries), whatever their UUIDs."""
        return (self.name, self.chain, self.priority, self.entries) == (
            other.name,
            other.chain,
            other.priority,
            other.entries,
        )

    @property
    def references(self) -> list[str]:
        """The names of the filters this one references, in order."""
        return [entry.filter for entry in self.entries if isinstance(entry, FilterRef)]


def parse(xml: str) -> NetworkFilter:
    """The filter an XML definition describes (the panel's own, or libvirt's nwfilter-dumpxml)."""
    return NetworkFilter.from_element(etree.fromstring(xml.encode()))
