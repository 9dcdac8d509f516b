"""The ISO library on a simulated host: admins register installer ISOs; customers list them, attach one to
their server (copied once to the host, in a read-only CD-ROM drive booted before the disk, the running
server power-cycled into it) and detach it (booting from the disk again). Rebuild, resize and restore keep
the drive while the ISO is attached; delete works with one attached. ISOs are never offered as OS images.
Wrong states answer 409, unknown ISOs 422, other customers' servers 404."""

from __future__ import annotations

import subprocess

import libvirt
import pytest
from django.core.management import call_command

from hypervisor import driver, images
from hypervisor.connection import HypervisorError
from hypervisor.models import BaseVolume, Image
from hypervisor.xml.domain import parse
from panel.models import Operation, Server, Snapshot
from panel.servers import actions, guest, operation_records, operations
from panel.servers.forms import OrderForm
from tests import factories

pytestmark = pytest.mark.django_db

INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE


@pytest.fixture(autouse=True)
def image_dir(tmp_path, settings):
    settings.IMAGE_DIR = tmp_path
    return tmp_path


def make_iso(image_dir, slug: str, name: str, size: int = 64 * 1024) -> Image:
    path = image_dir / f"{slug}.iso"
    path.write_bytes(b"\0" * 32768 + b"\x01CD001\x01" + b"\0" * (size - 32775))
    return images.register_image(slug, str(path), name=name, os_family="debian", purpose=Image.Purpose.ISO)


@pytest.fixture
def iso(image_dir) -> Image:
    return make_iso(image_dir, "debian-installer", "Debian 12 installer")


@pytest.fixture
def retired_iso(image_dir) -> Image:
    image = make_iso(image_dir, "old-installer", "Old installer")
    Image.objects.filter(pk=image.pk).update(is_active=False)
    return image


@pytest.fixture
def server(customer, catalog, conn) -> Server:
    return factories.make_real_server(
        customer, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )


def post_action(api, user, server, **body):
    return api(user).post(f"/api/v1/servers/{server.pk}/actions/", body, format="json")


def act(api, user, server, **body) -> Operation:
    response = post_action(api, user, server, **body)
    assert response.status_code == 202, response.content
    operation = factories.run_operation(Operation.objects.get(pk=response.json()["id"]))
    assert operation.status == "succeeded", (operation.error, operation.detail)
    server.refresh_from_db()
    return operation


def definition(conn, server, flags: int = INACTIVE):
    return parse(conn.lookupByUUIDString(str(server.id)).XMLDesc(flags))


def iso_volume(server, iso) -> BaseVolume:
    return BaseVolume.objects.get(host=server.host, image=iso, kind="iso", state=BaseVolume.State.READY)


def test_customers_list_the_available_isos_which_are_no_os_images(api, customer, iso, retired_iso, catalog):
    response = api(customer).get("/api/v1/isos/")
    assert response.status_code == 200
    assert response.json()["results"] == [
        {"slug": "debian-installer", "name": "Debian 12 installer", "size_bytes": 64 * 1024}
    ]
    slugs = [image["slug"] for image in api(customer).get("/api/v1/images/").json()["results"]]
    assert slugs == [catalog["image"].slug]
    assert api(None).get("/api/v1/isos/").status_code == 401


def test_an_iso_is_never_ordered_or_rebuilt_with(api, client, customer, iso, server, catalog):
    form = OrderForm(user=customer)
    assert list(form.fields["image"].queryset) == [catalog["image"]]
    order = {"name": "x1", "plan": catalog["plan"].slug, "image": iso.slug}
    assert api(customer).post("/api/v1/servers/", order, format="json").status_code == 400
    with pytest.raises(actions.Unprocessable):
        actions.order_server(customer, name="x2", plan=catalog["plan"], image=iso, region=catalog["region"])
    response = post_action(api, customer, server, type="rebuild", image=iso.slug)
    assert response.status_code == 422, response.content
    with pytest.raises(actions.Unprocessable):
        actions.rebuild_server(server, iso, customer)
    client.force_login(customer)
    page = client.get(f"/servers/{server.pk}/")
    assert [choice.image for choice in page.context["rebuild_choices"]] == [catalog["image"]]
    assert [choice.slug for choice in page.context["isos"]] == [iso.slug]
    assert not Operation.objects.filter(server=server, type="rebuild").exists()


def test_attaching_boots_the_iso_first_and_detaching_boots_the_disk(api, customer, server, iso, conn):
    def run_id() -> int:  # a new one each time the domain starts (looked up anew: libvirt keeps it)
        return conn.lookupByUUIDString(str(server.id)).ID()

    first_run = run_id()

    operation = act(api, customer, server, type="attach_iso", iso=iso.slug)

    assert operation.params["iso"] == iso.slug
    assert (server.iso, server.status, server.task, server.power_state) == (iso, "running", None, "running")
    path = iso_volume(server, iso).path
    assert path.endswith(".iso") and path in [
        pool_volume.path() for pool_volume in conn.storagePoolLookupByName("default").listAllVolumes()
    ]
    for flags in (INACTIVE, 0):  # defined so, and running so
        parsed = definition(conn, server, flags)
        assert parsed.iso_path == path
        assert parsed.boot_devices == ("cdrom", "hd")
        cdrom = next(disk for disk in parsed.disks if disk.device == "cdrom")
        assert cdrom.read_only  # (the simulated host drops snapshot="no": the real one keeps it)
    assert run_id() not in (-1, first_run)  # powered off and started again

    response = api(customer).get(f"/api/v1/servers/{server.pk}/actions/{operation.pk}/")
    assert response.json()["params"] == {"iso": iso.slug, "name": iso.name}

    attached_run = run_id()
    act(api, customer, server, type="detach_iso")

    assert (server.iso, server.status, server.power_state) == (None, "running", "running")
    for flags in (INACTIVE, 0):
        parsed = definition(conn, server, flags)
        assert parsed.iso_path == "" and parsed.boot_devices == ("hd",)
        assert not [disk for disk in parsed.disks if disk.device == "cdrom"]
    assert run_id() not in (-1, attached_run)
    # The ISO stays on the host for the next server that attaches it.
    assert iso_volume(server, iso).path == path


def test_a_stopped_server_stays_stopped_and_boots_the_iso_when_started(api, customer, server, iso, conn):
    act(api, customer, server, type="power_off")
    act(api, customer, server, type="attach_iso", iso=iso.slug)
    assert (server.iso, server.status, server.power_state) == (iso, "stopped", "shutoff")
    domain = conn.lookupByUUIDString(str(server.id))
    assert not domain.isActive()
    assert definition(conn, server).boot_devices == ("cdrom", "hd")
    act(api, customer, server, type="start")
    assert definition(conn, server, 0).iso_path == iso_volume(server, iso).path


def test_attaching_again_replaces_the_iso(api, customer, server, iso, image_dir, conn):
    other = make_iso(image_dir, "alpine", "Alpine")
    act(api, customer, server, type="attach_iso", iso=iso.slug)
    act(api, customer, server, type="attach_iso", iso=other.slug)
    assert server.iso == other
    parsed = definition(conn, server, 0)
    assert parsed.iso_path == iso_volume(server, other).path
    assert len([disk for disk in parsed.disks if disk.device == "cdrom"]) == 1


@pytest.mark.parametrize("status", ["suspended", "error", "pending"])
def test_attaching_or_detaching_from_the_wrong_status_is_a_conflict(api, customer, catalog, iso, status):
    server = factories.make_server(customer, catalog, status=status, iso=iso)
    assert post_action(api, customer, server, type="attach_iso", iso=iso.slug).status_code == 409
    assert post_action(api, customer, server, type="detach_iso").status_code == 409
    assert not Operation.objects.filter(server=server).exists()


def test_an_action_in_flight_is_a_conflict(api, customer, catalog, iso):
    server = factories.make_server(customer, catalog, task="reboot")
    response = post_action(api, customer, server, type="attach_iso", iso=iso.slug)
    assert response.status_code == 409, response.content


def test_an_unknown_or_retired_iso_or_an_os_image_is_refused(api, customer, catalog, retired_iso):
    server = factories.make_server(customer, catalog)
    for slug in ("no-such-iso", retired_iso.slug, catalog["image"].slug):
        response = post_action(api, customer, server, type="attach_iso", iso=slug)
        assert response.status_code == 422, (slug, response.content)
    assert post_action(api, customer, server, type="attach_iso").status_code == 400  # no iso given
    assert not Operation.objects.filter(server=server).exists()
    assert Server.objects.get(pk=server.pk).task is None


def test_detaching_with_none_recorded_takes_out_what_a_failed_attach_may_have_left(
    api, customer, server, iso, conn
):
    """An attach that failed where the drive could not be put back leaves the ISO in it with none recorded:
    detaching is accepted and empties the drive; with the drive empty it changes nothing, nor restarts."""

    def run_id() -> int:
        return conn.lookupByUUIDString(str(server.id)).ID()

    first_run = run_id()
    act(api, customer, server, type="detach_iso")  # nothing in the drive: nothing happens
    assert run_id() == first_run

    driver.set_iso(server.host, server.id, guest.iso_file(server.host, iso, owner="test"))  # left behind
    assert definition(conn, server).iso_path
    act(api, customer, server, type="detach_iso")
    assert definition(conn, server).iso_path == ""
    assert (server.status, server.iso) == (Server.Status.RUNNING, None)


def test_another_customers_server_is_not_found(api, client, customer, other_customer, catalog, iso):
    server = factories.make_server(customer, catalog)
    assert post_action(api, other_customer, server, type="attach_iso", iso=iso.slug).status_code == 404
    assert post_action(api, other_customer, server, type="detach_iso").status_code == 404
    client.force_login(other_customer)
    response = client.post(f"/servers/{server.pk}/action/", {"action": "attach_iso", "iso": iso.slug})
    assert response.status_code == 404
    assert not Operation.objects.filter(server=server).exists()


def test_rebuild_resize_and_restore_keep_the_iso_and_delete_works_with_one(api, customer, server, iso, conn):
    bigger = factories.make_plan(slug="iso-bigger", vcpus=2, memory_mib=512, disk_gib=server.disk_gib + 1)
    act(api, customer, server, type="snapshot", name="before the iso")
    act(api, customer, server, type="attach_iso", iso=iso.slug)
    path = iso_volume(server, iso).path

    act(api, customer, server, type="rebuild", image=server.image.slug)
    assert definition(conn, server).iso_path == path
    assert definition(conn, server).boot_devices == ("cdrom", "hd")
    assert server.iso == iso

    act(api, customer, server, type="resize", plan=bigger.slug)
    assert definition(conn, server).iso_path == path
    assert (server.vcpus, server.iso) == (2, iso)

    snapshot = act(api, customer, server, type="snapshot", name="with the iso")
    act(api, customer, server, type="detach_iso")
    restored = Snapshot.objects.get(server=server, name=snapshot.params["name"])
    act(api, customer, server, type="restore", snapshot=restored.pk)
    assert server.iso is None
    assert definition(conn, server).iso_path == ""  # the snapshot's drive does not come back

    act(api, customer, server, type="attach_iso", iso=iso.slug)
    response = api(customer).delete(f"/api/v1/servers/{server.pk}/")
    assert response.status_code == 202
    factories.run_operation(Operation.objects.get(server=server, type="delete"))
    server.refresh_from_db()
    assert (server.status, server.iso) == ("deleted", None)
    assert str(server.id) not in [domain.UUIDString() for domain in conn.listAllDomains()]
    assert iso_volume(server, iso).path == path  # shared with other servers: left on the host


def test_a_failed_attach_leaves_the_drive_as_the_panel_records_it(
    api, customer, server, iso, conn, monkeypatch
):
    def broken_start(host, uuid):
        raise HypervisorError("the host refused to start the domain")

    monkeypatch.setattr(driver, "start", broken_start)
    response = post_action(api, customer, server, type="attach_iso", iso=iso.slug)
    operation = factories.run_operation(Operation.objects.get(pk=response.json()["id"]))
    assert operation.status == "failed"
    server.refresh_from_db()
    assert (server.iso, server.task) == (None, None)
    assert definition(conn, server).iso_path == ""
    assert definition(conn, server).boot_devices == ("hd",)


class WorkerKilled(BaseException):
    """Stands for a SIGKILL at a pause point: nothing after it runs, nothing is cleaned up."""


@pytest.mark.parametrize(
    "step", ["attach_iso:copied", "attach_iso:defined", "attach_iso:stopped", "detach_iso:defined",
             "detach_iso:stopped"],
)  # fmt: skip
def test_a_worker_stopped_between_any_two_steps_is_finished_by_the_next_attempt(
    api, customer, server, iso, conn, monkeypatch, step
):
    if step.startswith("detach"):
        act(api, customer, server, type="attach_iso", iso=iso.slug)
    action = step.split(":")[0]
    body = {"type": action, "iso": iso.slug} if action == "attach_iso" else {"type": action}
    response = post_action(api, customer, server, **body)
    operation = Operation.objects.get(pk=response.json()["id"])

    def killed_at(name: str) -> None:
        if name == step:
            raise WorkerKilled(name)

    monkeypatch.setattr(operation_records, "pause_point", killed_at)
    with pytest.raises(WorkerKilled):
        operations.execute(str(operation.pk))
    monkeypatch.undo()
    operation = factories.run_operation(operation)  # the redelivery (the lease is this process's own)

    assert operation.status == "succeeded", (operation.error, operation.detail)
    server.refresh_from_db()
    wanted = iso if action == "attach_iso" else None
    assert (server.iso, server.status, server.task) == (wanted, "running", None)
    assert server.power_state == "running"
    live = definition(conn, server, 0)
    assert live.iso_path == (iso_volume(server, iso).path if wanted else "")
    assert definition(conn, server).iso_path == live.iso_path


def test_the_server_page_attaches_and_detaches_in_the_browser(client, customer, server, iso, conn):
    client.force_login(customer)
    page = client.get(f"/servers/{server.pk}/").content.decode()
    assert 'id="iso"' in page and "Debian 12 installer" in page and "Console tab" in page
    assert 'value="attach_iso"' in page and "restarts at once" in page

    response = client.post(f"/servers/{server.pk}/action/", {"action": "attach_iso", "iso": iso.slug})
    assert response.status_code == 302
    factories.run_operation(Operation.objects.get(server=server, type="attach_iso"))
    page = client.get(f"/servers/{server.pk}/").content.decode()
    assert 'id="iso-attached"' in page and 'value="detach_iso"' in page

    client.post(f"/servers/{server.pk}/action/", {"action": "detach_iso"})
    factories.run_operation(Operation.objects.get(server=server, type="detach_iso"))
    server.refresh_from_db()
    assert server.iso is None
    activity = client.get(f"/servers/{server.pk}/").content.decode()
    assert "Attach the ISO image “Debian 12 installer”" in activity


def test_staff_see_the_attached_iso_and_a_kernel_boot_image_says_it_does_not_boot_it(
    client, staff, customer, catalog, iso
):
    server = factories.make_server(customer, catalog, iso=iso)
    client.force_login(staff)
    assert "Debian 12 installer" in client.get(f"/staff/servers/{server.pk}/").content.decode()
    Image.objects.filter(pk=catalog["image"].pk).update(kernel_path="/images/vmlinuz")
    client.force_login(customer)
    page = client.get(f"/servers/{server.pk}/").content.decode()
    assert "starts its kernel directly" in page


def test_admins_register_isos_on_the_images_page_and_with_add_image(client, admin_user, image_dir, capsys):
    path = image_dir / "netinst.iso"
    path.write_bytes(b"\0" * 1024 * 1024)
    client.force_login(admin_user)
    response = client.post("/staff/images/", {"slug": "netinst", "name": "Netinst", "os_family": "debian",
                                              "path": "netinst.iso", "purpose": "iso"})  # fmt: skip
    assert response.status_code == 302, response.content.decode()
    image = Image.objects.get(slug="netinst")
    assert (image.purpose, image.size_bytes, len(image.checksum)) == ("iso", 1024 * 1024, 64)
    assert image.checksum == images.sha256_of(path)

    call_command("add_image", "netinst2", "netinst.iso", "--name", "Netinst 2", "--os-family", "debian",
                 "--purpose", "iso")  # fmt: skip
    assert Image.objects.get(slug="netinst2").purpose == "iso"

    qcow2 = image_dir / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow2), "1G"], check=True)
    refused = client.post("/staff/images/", {"slug": "bad", "name": "Bad", "os_family": "x",
                                             "path": "disk.qcow2", "purpose": "iso"})  # fmt: skip
    assert refused.status_code == 200 and "not an .iso file" in refused.content.decode()
    disguised = image_dir / "disguised.iso"
    qcow2.rename(disguised)
    refused = client.post("/staff/images/", {"slug": "bad", "name": "Bad", "os_family": "x",
                                             "path": "disguised.iso", "purpose": "iso"})  # fmt: skip
    assert "read as raw" in refused.content.decode()
    outside = client.post("/staff/images/", {"slug": "bad", "name": "Bad", "os_family": "x",
                                             "path": "/etc/hostname", "purpose": "iso"})  # fmt: skip
    assert "must be inside" in outside.content.decode()
    assert not Image.objects.filter(slug="bad").exists()
