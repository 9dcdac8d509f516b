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


def set_resources(domain_xml: str, vcpus: int, memory_mib: int) -> str:
    """The same domain definition with other vCPU and memory sizes."""
    root = etree.fromstring(domain_xml.encode())
    for tag in ("memory", "currentMemory"):
        element = root.find(tag)
        if element is None:
            element = etree.SubElement(root, tag)
        element.set("unit", "MiB")
        element.text = str(memory_mib)
    maximum = root.find("maxMemory")
    if maximum is not None:
        root.remove(maximum)
    vcpu = root.find("vcpu")
    if vcpu is None:
        vcpu = etree.SubElement(root, "vcpu")
    vcpu.text = str(vcpus)
    vcpu.attrib.pop("current", None)
    return etree.tostring(root, encoding="unicode")
