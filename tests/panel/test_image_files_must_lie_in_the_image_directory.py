"""Image files (the qcow2 disk, and a kernel and initrd for direct kernel boot) are read only from the image
directory (IMAGE_DIR), with symlinks resolved: a path anywhere else on the panel server is refused with a
clear error on the Images page, by add_image and by the images service, and an image row that names an
outside file (made before the rule) is never copied to a host."""

from __future__ import annotations

import subprocess
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from hypervisor import images
from hypervisor.connection import HypervisorError
from hypervisor.models import BaseVolume, Image
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def image_dir(tmp_path, settings):
    directory = tmp_path / "images"
    directory.mkdir()
    settings.IMAGE_DIR = directory
    return directory


@pytest.fixture
def outside(tmp_path):
    """A directory next to the image directory, not inside it."""
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    return directory


def make_qcow2(path):
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "1G"], check=True)
    return path


def refused(**kwargs) -> str:
    with pytest.raises(ValidationError) as raised:
        images.register_image("img", name="Img", os_family="test", **kwargs)
    assert not Image.objects.filter(slug="img").exists()
    return " ".join(raised.value.messages)


def test_an_image_inside_the_directory_is_registered_and_a_relative_path_is_taken_there(image_dir):
    make_qcow2(image_dir / "debian.qcow2")
    (image_dir / "boot").mkdir()
    (image_dir / "boot" / "vmlinuz").write_bytes(b"kernel")
    (image_dir / "boot" / "initrd.img").write_bytes(b"initrd")
    image = images.register_image(
        "img", "debian.qcow2", name="Img", os_family="test", kernel="boot/vmlinuz", initrd="boot/initrd.img"
    )
    assert image.path == str(image_dir / "debian.qcow2")
    assert image.kernel_path == str(image_dir / "boot" / "vmlinuz")
    assert image.initrd_path == str(image_dir / "boot" / "initrd.img")


def test_a_disk_outside_the_directory_is_refused(image_dir, outside):
    disk = make_qcow2(outside / "disk.qcow2")
    message = refused(path=str(disk))
    assert f"Image files must be inside {image_dir}" in message


def test_a_kernel_or_initrd_naming_a_system_file_is_refused(image_dir):
    make_qcow2(image_dir / "disk.qcow2")
    (image_dir / "initrd.img").write_bytes(b"initrd")
    assert "must be inside" in refused(path="disk.qcow2", kernel="/etc/passwd", initrd="initrd.img")
    assert "must be inside" in refused(path="disk.qcow2", kernel="initrd.img", initrd="/etc/hostname")


def test_climbing_out_with_dot_dot_is_refused(image_dir, outside):
    make_qcow2(outside / "disk.qcow2")
    assert "must be inside" in refused(path="../elsewhere/disk.qcow2")
    assert "must be inside" in refused(path=str(image_dir / ".." / "elsewhere" / "disk.qcow2"))


def test_a_symlink_inside_the_directory_pointing_outside_is_refused(image_dir, outside):
    make_qcow2(outside / "disk.qcow2")
    (image_dir / "link.qcow2").symlink_to(outside / "disk.qcow2")
    (image_dir / "kernel").symlink_to("/etc/passwd")
    assert "must be inside" in refused(path="link.qcow2")
    make_qcow2(image_dir / "real.qcow2")
    (image_dir / "initrd").write_bytes(b"initrd")
    assert "must be inside" in refused(path="real.qcow2", kernel="kernel", initrd="initrd")


def test_the_directory_itself_or_a_missing_file_is_refused(image_dir):
    assert "must be inside" in refused(path=str(image_dir))
    assert "No file at" in refused(path="missing.qcow2")
    assert "No file at" in refused(path=str(image_dir / "sub"))


def test_the_images_page_shows_the_error_and_adds_nothing(client, admin_user, image_dir):
    make_qcow2(image_dir / "disk.qcow2")
    client.force_login(admin_user)
    response = client.post(
        "/staff/images/",
        {"slug": "img", "name": "Img", "os_family": "test", "path": "disk.qcow2", "kernel": "/etc/passwd",
         "initrd": "/etc/hostname"},
    )  # fmt: skip
    assert response.status_code == 200
    assert "must be inside" in response.content.decode()
    assert not Image.objects.filter(slug="img").exists()


def test_add_image_refuses_a_file_outside_the_directory(image_dir, outside):
    disk = make_qcow2(outside / "disk.qcow2")
    with pytest.raises(CommandError, match="must be inside"):
        call_command("add_image", "img", str(disk), "--name", "Img", "--os-family", "test", stdout=StringIO())
    assert not Image.objects.filter(slug="img").exists()


def test_an_old_image_row_naming_an_outside_file_is_never_copied_to_a_host(image_dir, catalog):
    image = Image.objects.create(
        slug="old", name="Old", os_family="test", path="/etc/hostname", checksum="0" * 64, size_bytes=1
    )
    with pytest.raises(HypervisorError, match="must be inside"):
        images.ensure_base_volumes(catalog["host"], image)
    assert not BaseVolume.objects.filter(image=image).exists()
    with factories.TidySimulatedHost(catalog["host"].uri) as conn:
        names = conn.storagePoolLookupByName("default").listVolumes()
    assert images.volume_name(image, "disk", image.checksum) not in names
