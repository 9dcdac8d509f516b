"""The backup job and checkpoint XML the panel writes is valid for libvirt (its own schemas, through
virt-xml-validate) and reads back into the same objects."""

from __future__ import annotations

from lxml import etree

from hypervisor.xml.backup import BackupDisk, DomainBackup, DomainCheckpoint, vda_only
from tests.hypervisor.test_domain_xml_passes_virt_xml_validate import assert_valid, validate

SCRATCH = "/var/lib/libvirt/images/0b6a7c1e-backup-7.qcow2"


def test_a_full_backup_of_vda_only_validates_and_reads_back(tmp_path):
    backup = vda_only(SCRATCH, ["vdb", "sda"])
    xml = backup.to_xml()
    assert_valid(tmp_path, xml, "domainbackup")
    root = etree.fromstring(xml.encode())
    assert root.find("incremental") is None
    vda = root.find("disks/disk[@name='vda']")
    assert (vda.get("backup"), vda.get("type")) == ("yes", "file")
    assert vda.find("target").get("file") == SCRATCH
    assert vda.find("driver").get("type") == "qcow2"
    assert [d.get("backup") for d in root.findall("disks/disk") if d.get("name") != "vda"] == ["no", "no"]
    assert DomainBackup.parse(xml) == backup
    assert DomainBackup.parse(xml).to_xml() == xml


def test_an_incremental_backup_names_its_checkpoint_and_reads_back(tmp_path):
    backup = vda_only(SCRATCH, ["vdb"], incremental="vpspanel-backup-6")
    xml = backup.to_xml()
    assert_valid(tmp_path, xml, "domainbackup")
    assert etree.fromstring(xml.encode()).findtext("incremental") == "vpspanel-backup-6"
    again = DomainBackup.parse(xml)
    assert again == backup
    assert [disk.backed_up for disk in again.disks] == [True, False]


def test_a_checkpoint_with_a_bitmap_on_vda_only_validates_and_reads_back(tmp_path):
    checkpoint = DomainCheckpoint("vpspanel-backup-7", ["vda"], ["vdb", "sda"])
    xml = checkpoint.to_xml()
    assert_valid(tmp_path, xml, "domaincheckpoint")
    root = etree.fromstring(xml.encode())
    assert root.findtext("name") == "vpspanel-backup-7"
    assert [(d.get("name"), d.get("checkpoint")) for d in root.findall("disks/disk")] == [
        ("vda", "bitmap"),
        ("vdb", "no"),
        ("sda", "no"),
    ]
    assert DomainCheckpoint.parse(xml) == checkpoint


def test_libvirts_own_checkpoint_description_reads_into_the_model():
    xml = """<domaincheckpoint><name>c1</name><parent><name>c0</name></parent>
      <creationTime>1700000000</creationTime><disks><disk name='vda' checkpoint='bitmap' bitmap='c1'/>
      <disk name='vdb' checkpoint='no'/></disks></domaincheckpoint>"""
    assert DomainCheckpoint.parse(xml) == DomainCheckpoint("c1", ["vda"], ["vdb"])


def test_the_validator_does_reject_an_invalid_backup(tmp_path):
    """Guards the tests above: a validator that accepted everything would prove nothing."""
    root = etree.fromstring(DomainBackup([BackupDisk("vda", SCRATCH)]).to_xml().encode())
    root.find("disks/disk").set("backup", "maybe")
    assert validate(tmp_path, etree.tostring(root, encoding="unicode"), "domainbackup").returncode != 0
