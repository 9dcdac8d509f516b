"""Admins add OS images on the Images page (as with manage.py add_image); staff look; customers can't."""

import subprocess

import pytest

from hypervisor.models import Image

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def image_dir(tmp_path, settings):
    """The test's directory is the image directory (IMAGE_DIR): the panel reads image files only there."""
    settings.IMAGE_DIR = tmp_path


@pytest.fixture
def qcow2(tmp_path):
    path = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "2G"], check=True)
    return path


def test_an_admin_adds_an_image_with_its_checksum_and_size(client, admin_user, qcow2):
    client.force_login(admin_user)
    response = client.post("/staff/images/", {"slug": "alma-9", "name": "AlmaLinux 9", "os_family": "rhel",
                                              "path": str(qcow2)})  # fmt: skip
    assert response.status_code == 302
    image = Image.objects.get(slug="alma-9")
    assert image.virtual_size_bytes == 2 * 1024**3
    assert len(image.checksum) == 64
    assert "AlmaLinux 9" in client.get("/staff/images/").content.decode()


def test_a_file_that_is_not_an_image_is_refused(client, admin_user, tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    client.force_login(admin_user)
    response = client.post("/staff/images/", {"slug": "x", "name": "X", "os_family": "y", "path": str(bogus)})
    assert response.status_code == 200
    assert "qcow2" in response.content.decode()
    missing = client.post(
        "/staff/images/", {"slug": "x", "name": "X", "os_family": "y", "path": str(tmp_path / "nope.qcow2")}
    )
    assert "No file at" in missing.content.decode()
    assert not Image.objects.filter(slug="x").exists()


def test_staff_see_images_but_cannot_add_and_customers_are_refused(client, staff, customer, qcow2):
    client.force_login(staff)
    assert client.get("/staff/images/").status_code == 200
    body = {"slug": "s", "name": "S", "os_family": "y", "path": str(qcow2)}
    assert client.post("/staff/images/", body).status_code == 403
    client.force_login(customer)
    assert client.get("/staff/images/").status_code == 403
    assert not Image.objects.filter(slug="s").exists()


def test_a_retired_image_is_no_longer_offered(client, api, admin_user, customer, catalog):
    image = catalog["image"]
    client.force_login(admin_user)
    client.post(f"/staff/images/{image.pk}/toggle/")
    image.refresh_from_db()
    assert not image.is_active
    slugs = [i["slug"] for i in api(customer).get("/api/v1/images/").json()["results"]]
    assert image.slug not in slugs
    response = api(customer).post("/api/v1/servers/", {"name": "x1", "plan": catalog["plan"].slug,
                                                       "image": image.slug}, format="json")  # fmt: skip
    assert response.status_code == 400
