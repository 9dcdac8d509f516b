"""Images are copied to a host's pool through libvirt's upload stream, verified, cached, and servers get
a copy-on-write overlay plus a cloud-init seed (a real libvirtd)."""

import json
import os
import subprocess

import libvirt
import pytest
import yaml

from hypervisor import connection as libvirt_connection
from hypervisor import images
from hypervisor.cloudinit import read_seed_iso
from hypervisor.models import BaseVolume
from panel.models import Operation
from panel.servers import actions, operations
from tests import factories

pytestmark = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]
URI = "qemu:///system"


@pytest.fixture(autouse=True)
def image_dir(tmp_path, settings):
    """Image files are registered from the test's own directory (the panel reads no other)."""
    settings.IMAGE_DIR = tmp_path


@pytest.fixture
def qcow2_image(tmp_path):
    """A small qcow2 file with real (random) content."""
    raw = tmp_path / "image.raw"
    raw.write_bytes(os.urandom(3 * 1024 * 1024))
    path = tmp_path / "image.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)], check=True)
    return path


@pytest.fixture
def conn():
    connection = libvirt.open(URI)
    yield connection
    connection.close()


def cleanup(conn, server_id=None, names=()):
    if server_id:
        try:
            domain = conn.lookupByUUIDString(str(server_id))
            if domain.isActive():
                domain.destroy()
            domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        except libvirt.libvirtError:
            pass
    pool = conn.storagePoolLookupByName("default")
    libvirt_connection.when_pool_idle(lambda: pool.refresh(0))  # other tests' volume jobs
    for name in names:
        try:
            pool.storageVolLookupByName(name).delete(0)
        except libvirt.libvirtError:
            pass


def test_a_server_gets_an_overlay_on_the_verified_base_and_a_seed(conn, qcow2_image, customer):
    region = factories.make_region()
    host = factories.make_host(uri=URI, region=region, force_emulation=True)
    image = images.register_image("tiny", str(qcow2_image), name="Tiny", os_family="test")
    plan = factories.make_plan(memory_mib=128, disk_gib=1)
    base_name = images.volume_name(image, "disk", image.checksum)
    server = None
    try:
        server = actions.order_server(
            customer, name="img1.example.com", plan=plan, image=image, region=region
        )
        operation = Operation.objects.get(server=server, type="create")
        operations.execute(str(operation.pk))
        server.refresh_from_db()
        assert server.status == "running", server.status_reason

        base = BaseVolume.objects.get(host=host, volume_name=base_name)
        assert base.state == "ready"
        assert images.sha256_of(base.path) == image.checksum

        pool = conn.storagePoolLookupByName("default")
        overlay = pool.storageVolLookupByName(f"{server.id}.qcow2").path()
        info = json.loads(
            subprocess.run(
                ["qemu-img", "info", "-U", "--output=json", overlay],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        assert info["backing-filename"] == base.path
        assert info["virtual-size"] == 1024**3

        seed = pool.storageVolLookupByName(f"{server.id}-seed.iso").path()
        with open(seed, "rb") as handle:
            files = read_seed_iso(handle.read())
        assert files["__label__"] == b"cidata"
        assert yaml.safe_load(files["meta-data"])["local-hostname"] == "img1"
        assert yaml.safe_load(files["user-data"])["hostname"] == "img1"

        xml = conn.lookupByUUIDString(str(server.id)).XMLDesc()
        assert seed in xml and overlay in xml

        # A second server on the same host reuses the base volume: nothing is copied again.
        updated_at = base.updated_at
        assert images.ensure_base_volumes(host, image)["disk"] == base.path
        base.refresh_from_db()
        assert base.updated_at == updated_at
    finally:
        names = [base_name]
        if server is not None:
            names += [f"{server.id}.qcow2", f"{server.id}-seed.iso"]
        cleanup(conn, server.id if server else None, names)


def test_an_image_that_is_not_qcow2_is_refused(tmp_path):
    path = tmp_path / "disk.raw"
    path.write_bytes(b"\0" * 1024)
    with pytest.raises(images.ValidationError, match="qcow2"):
        images.register_image("raw", str(path), name="Raw", os_family="test")
