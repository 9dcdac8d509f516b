"""Storage pool and volume XML."""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

GIB = 1024**3


@dataclass
class DirPool:
    name: str
    path: str

    def to_xml(self) -> str:
        root = etree.Element("pool", type="dir")
        etree.SubElement(root, "name").text = self.name
        target = etree.SubElement(root, "target")
        etree.SubElement(target, "path").text = self.path
        return etree.tostring(root, encoding="unicode")


@dataclass
class Volume:
    """A volume; with `backing_path` a copy-on-write qcow2 overlay on that (base) volume."""

    name: str
    capacity_bytes: int
    format: str = "qcow2"
    backing_path: str = ""
    backing_format: str = "qcow2"
    # qcow2 version 3 ("1.1"): unlike version 2 (libvirt's default, "0.10"), its disk can grow while it has
    # internal snapshots, so a resize works on a server with snapshots.
    compat: str = "1.1"

    def to_xml(self) -> str:
        root = etree.Element("volume")
        etree.SubElement(root, "name").text = self.name
        etree.SubElement(root, "allocation").text = "0"
        etree.SubElement(root, "capacity", unit="bytes").text = str(self.capacity_bytes)
        target = etree.SubElement(root, "target")
        etree.SubElement(target, "format", type=self.format)
        if self.format == "qcow2" and self.compat:
            etree.SubElement(target, "compat").text = self.compat
        if self.backing_path:
            backing = etree.SubElement(root, "backingStore")
            etree.SubElement(backing, "path").text = self.backing_path
            etree.SubElement(backing, "format", type=self.backing_format)
        return etree.tostring(root, encoding="unicode")


def pool_target_path(xml: str) -> str | None:
    element = etree.fromstring(xml.encode()).find("target/path")
    return element.text if element is not None else None
