"""Domain snapshot XML (internal qcow2 snapshots)."""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree


@dataclass
class Snapshot:
    name: str
    description: str = ""

    def to_xml(self) -> str:
        root = etree.Element("domainsnapshot")
        etree.SubElement(root, "name").text = self.name
        if self.description:
            etree.SubElement(root, "description").text = self.description
        return etree.tostring(root, encoding="unicode")
