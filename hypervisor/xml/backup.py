"""libvirt's backup job and checkpoint XML (push mode): <domainbackup> and <domaincheckpoint>.

A push-mode backup writes the disks that say backup='yes' into files of their own (qcow2); with
`incremental` it writes only the blocks changed since that checkpoint. A checkpoint is a named point the
next incremental backup starts from (a dirty bitmap in each disk that says checkpoint='bitmap').
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree


@dataclass
class BackupDisk:
    """One disk of a backup job: `target_file` empty means the disk is not backed up."""

    name: str
    target_file: str = ""
    driver_type: str = "qcow2"

    @property
    def backed_up(self) -> bool:
        return bool(self.target_file)


@dataclass
class DomainBackup:
    """A push-mode backup job; `incremental`: the checkpoint it copies the changes since (empty: full)."""

    disks: list[BackupDisk] = field(default_factory=list)
    incremental: str = ""

    def to_xml(self) -> str:
        root = etree.Element("domainbackup")
        if self.incremental:
            etree.SubElement(root, "incremental").text = self.incremental
        disks = etree.SubElement(root, "disks")
        for disk in self.disks:
            if not disk.backed_up:
                etree.SubElement(disks, "disk", name=disk.name, backup="no")
                continue
            element = etree.SubElement(disks, "disk", name=disk.name, backup="yes", type="file")
            etree.SubElement(element, "target", file=disk.target_file)
            etree.SubElement(element, "driver", type=disk.driver_type)
        return etree.tostring(root, encoding="unicode")

    @classmethod
    def parse(cls, xml: str) -> DomainBackup:
        root = etree.fromstring(xml.encode())
        disks = []
        for element in root.findall("disks/disk"):
            disk = BackupDisk(name=element.get("name", ""))
            if element.get("backup", "yes") == "yes":
                target, driver = element.find("target"), element.find("driver")
                disk.target_file = target.get("file", "") if target is not None else ""
                if driver is not None and driver.get("type"):
                    disk.driver_type = driver.get("type")
            disks.append(disk)
        return cls(disks=disks, incremental=(root.findtext("incremental") or "").strip())


@dataclass
class DomainCheckpoint:
    """A checkpoint: the disks in `bitmap_disks` get a dirty bitmap of its name, the others none."""

    name: str
    bitmap_disks: list[str] = field(default_factory=list)
    other_disks: list[str] = field(default_factory=list)

    def to_xml(self) -> str:
        root = etree.Element("domaincheckpoint")
        etree.SubElement(root, "name").text = self.name
        disks = etree.SubElement(root, "disks")
        for name in self.bitmap_disks:
            etree.SubElement(disks, "disk", name=name, checkpoint="bitmap")
        for name in self.other_disks:
            etree.SubElement(disks, "disk", name=name, checkpoint="no")
        return etree.tostring(root, encoding="unicode")

    @classmethod
    def parse(cls, xml: str) -> DomainCheckpoint:
        """Reads what to_xml writes, and libvirt's own description of a checkpoint (getXMLDesc)."""
        root = etree.fromstring(xml.encode())
        bitmap, other = [], []
        for element in root.findall("disks/disk"):
            (bitmap if element.get("checkpoint") == "bitmap" else other).append(element.get("name", ""))
        return cls(name=(root.findtext("name") or "").strip(), bitmap_disks=bitmap, other_disks=other)


def vda_only(target_file: str, other_disks: list[str], incremental: str = "") -> DomainBackup:
    """A backup of the disk vda into `target_file` (qcow2); every other disk left out."""
    return DomainBackup(
        disks=[BackupDisk("vda", target_file), *(BackupDisk(name) for name in other_disks)],
        incremental=incremental,
    )
