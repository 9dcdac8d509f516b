"""Rescue mode and root password resets on a simulated host, through the API, the server page and the staff
page: refused from the wrong status (409), without a rescue system (422) and on another customer's server
(404); the one-time password is returned once and kept only encrypted until the worker has used it; the
domain boots the rescue system with the server's disk attached and its own definition comes back."""

from __future__ import annotations

import json
import logging

import libvirt
import pytest
import yaml

from billing import signals
from hypervisor import cloudinit, driver
from hypervisor.models import Image
from hypervisor.xml.domain import parse
from panel.models import ActivityEvent, Operation, Server
from panel.servers import guest, operations, passwords
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(customer, catalog, conn) -> Server:
    return factories.make_real_server(
        customer, plan=catalog["plan"], image=catalog["image"], region=catalog["region"], name="toko"
    )


@pytest.fixture
def rescue_image(db) -> Image:
    """A rescue system as an admin registers it (without a file: a blank disk on the simulated host)."""
    return Image.objects.create(
        slug="rescue", name="Rescue system", os_family="debian", purpose=Image.Purpose.RESCUE
    )


def post_action(api, user, server, **body):
    return api(user).post(f"/api/v1/servers/{server.pk}/actions/", body, format="json")


def run(operation_id) -> Operation:
    return factories.run_operation(Operation.objects.get(pk=operation_id))


def disks(conn: libvirt.virConnect, server: Server) -> dict[str, str]:
    """The domain's persistent disks: target device -> volume file name."""
    xml = conn.lookupByUUIDString(str(server.id)).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    return {disk.target_dev: disk.source_file.rsplit("/", 1)[-1] for disk in parse(xml).disks}


def volumes(conn: libvirt.virConnect, server: Server) -> set[str]:
    return {name for name in conn.storagePoolLookupByName("default").listVolumes() if str(server.id) in name}


# ---------- Rescue mode ----------


def test_rescue_boots_the_rescue_system_with_the_servers_disk_and_leaving_it_boots_the_server(
    api, customer, server, rescue_image, conn, caplog
):
    caplog.set_level(logging.DEBUG)
    assert disks(conn, server) == {"vda": f"{server.id}.qcow2", "vdb": f"{server.id}-seed.iso"}

    response = post_action(api, customer, server, type="rescue")

    assert response.status_code == 202, response.content
    body = response.json()
    password = body["password"]
    assert len(password) == passwords.GENERATED_LENGTH and body["type"] == "rescue"
    operation = Operation.objects.get(pk=body["id"])
    assert passwords.unsealed(operation.params) == password  # kept, encrypted, for the worker
    stored = json.dumps(operation.params) + json.dumps(list(ActivityEvent.objects.values("data", "summary")))
    assert password not in stored
    # Shown once: the action's own page and the list do not carry it.
    for url in (
        f"/api/v1/servers/{server.pk}/actions/{operation.pk}/",
        f"/api/v1/servers/{server.pk}/actions/",
    ):
        answer = api(customer).get(url)
        assert answer.status_code == 200 and password not in answer.content.decode()

    operation = run(operation.pk)

    assert operation.status == "succeeded", operation.error
    assert "password" not in operation.params  # gone once the worker has used it
    server.refresh_from_db()
    assert (server.status, server.task, server.power_state) == ("rescue", None, "running")
    assert disks(conn, server) == {
        "vda": f"{server.id}-rescue.qcow2",
        "vdb": f"{server.id}.qcow2",
        "vdc": f"{server.id}-rescue-seed.iso",
    }
    assert conn.lookupByUUIDString(str(server.id)).isActive()

    # From rescue, only leaving it (or deleting the server) is possible.
    for action in ("rescue", "reset_password", "reboot", "shutdown"):
        assert post_action(api, customer, server, type=action).status_code == 409, action

    leave = post_action(api, customer, server, type="unrescue")
    assert leave.status_code == 202 and "password" not in leave.json()
    assert run(leave.json()["id"]).status == "succeeded"

    server.refresh_from_db()
    assert (server.status, server.task, server.power_state) == ("running", None, "running")
    assert disks(conn, server) == {"vda": f"{server.id}.qcow2", "vdb": f"{server.id}-seed.iso"}
    assert volumes(conn, server) == {f"{server.id}.qcow2", f"{server.id}-seed.iso"}
    assert password not in caplog.text


def test_a_stopped_server_can_be_rescued_and_leaving_rescue_starts_it(
    api, customer, server, rescue_image, conn
):
    assert run(post_action(api, customer, server, type="power_off").json()["id"]).status == "succeeded"
    rescue = post_action(api, customer, server, type="rescue")
    assert rescue.status_code == 202
    assert run(rescue.json()["id"]).status == "succeeded"
    server.refresh_from_db()
    assert server.status == "rescue"
    assert run(post_action(api, customer, server, type="unrescue").json()["id"]).status == "succeeded"
    server.refresh_from_db()
    assert (server.status, server.power_state) == ("running", "running")


def test_rescue_mode_is_refused_with_422_when_no_rescue_system_is_registered(api, customer, server, catalog):
    Image.objects.create(slug="old-rescue", name="Old", os_family="debian", purpose="rescue", is_active=False)
    response = post_action(api, customer, server, type="rescue")
    assert response.status_code == 422, response.content
    assert "no rescue system" in response.json()["error"]["message"]
    assert not Operation.objects.filter(server=server, type="rescue").exists()
    assert Server.objects.get(pk=server.pk).task is None


def test_actions_from_the_wrong_status_get_409(api, customer, server, rescue_image):
    assert post_action(api, customer, server, type="unrescue").status_code == 409
    Server.objects.filter(pk=server.pk).update(status="stopped")
    assert post_action(api, customer, server, type="reset_password").status_code == 409
    Server.objects.filter(pk=server.pk).update(status="suspended")
    assert post_action(api, customer, server, type="rescue").status_code == 409
    assert not Operation.objects.filter(server=server, type__in=("rescue", "unrescue", "reset_password"))


def test_another_customer_gets_404(api, customer, other_customer, server, rescue_image):
    for action in ("rescue", "unrescue", "reset_password"):
        assert post_action(api, other_customer, server, type=action).status_code == 404
    assert Server.objects.get(pk=server.pk).task is None


def test_the_rescue_seed_sets_the_one_time_password_and_lets_root_in_over_ssh(server):
    files = cloudinit.read_seed_iso(guest.rescue_seed_iso(server, "Secret-one-time-pw", "rescue-1"))
    user_data = files["user-data"].decode()
    assert "Secret-one-time-pw" not in user_data  # only its hash
    config = yaml.safe_load(user_data)
    root = config["users"][0]
    assert root["name"] == "root" and not root["lock_passwd"]
    assert cloudinit._crypt.crypt("Secret-one-time-pw", root["hashed_passwd"]) == root["hashed_passwd"]
    assert config["ssh_pwauth"] is True and config["hostname"] == "rescue"
    assert config["write_files"][0]["content"] == "PermitRootLogin yes\nPasswordAuthentication yes\n"
    assert yaml.safe_load(files["meta-data"])["instance-id"] == "rescue-1"


def test_a_failed_rescue_puts_the_servers_own_domain_back(
    api, customer, server, rescue_image, conn, monkeypatch
):
    def refuse(*args, **kwargs):
        raise driver.HypervisorError("internal error: cannot define the rescue domain on kvm-7")

    monkeypatch.setattr(driver, "define_rescue", refuse)
    operation = run(post_action(api, customer, server, type="rescue").json()["id"])

    assert operation.status == "failed" and "kvm-7" not in operation.error and "kvm-7" in operation.detail
    assert "password" not in operation.params
    server.refresh_from_db()
    assert (server.status, server.task, server.power_state) == ("running", None, "running")
    assert disks(conn, server) == {"vda": f"{server.id}.qcow2", "vdb": f"{server.id}-seed.iso"}
    assert volumes(conn, server) == {f"{server.id}.qcow2", f"{server.id}-seed.iso"}


def test_a_rescue_stuck_past_its_deadline_leaves_the_server_in_rescue_mode_to_leave(
    customer, server, rescue_image
):
    from datetime import timedelta

    from django.utils import timezone

    operation = Operation.objects.create(
        server=server, type="rescue", status="running", params=passwords.sealed("x" * 20),
        deadline=timezone.now() - timedelta(seconds=1), lease_owner="",
    )  # fmt: skip
    Server.objects.filter(pk=server.pk).update(task="rescue")
    assert operations.reap_stuck_operations() == 1
    operation.refresh_from_db()
    server.refresh_from_db()
    assert (operation.status, server.status, server.task) == ("failed", "rescue", None)
    assert "password" not in operation.params


def test_deleting_a_server_in_rescue_mode_removes_the_rescue_volumes(
    api, customer, server, rescue_image, conn
):
    assert run(post_action(api, customer, server, type="rescue").json()["id"]).status == "succeeded"
    assert f"{server.id}-rescue.qcow2" in volumes(conn, server)
    delete = api(customer).delete(f"/api/v1/servers/{server.pk}/")
    assert delete.status_code == 202
    assert run(Operation.objects.get(server=server, type="delete").pk).status == "succeeded"
    assert volumes(conn, server) == set()


def test_rescue_images_are_neither_ordered_nor_rebuilt_with(api, customer, server, rescue_image, catalog):
    assert "rescue" not in [image["slug"] for image in api(customer).get("/api/v1/images/").json()["results"]]
    order = api(customer).post(
        "/api/v1/servers/", {"name": "web2", "plan": catalog["plan"].slug, "image": "rescue"}, format="json"
    )
    assert order.status_code == 400, order.content
    assert post_action(api, customer, server, type="rebuild", image="rescue").status_code == 422


# ---------- Root password reset ----------


def test_a_password_reset_returns_the_given_password_once_and_keeps_it_encrypted(
    api, customer, server, monkeypatch
):
    seen = {}

    def set_user_password(host, uuid, user, password, timeout):
        seen.update(user=user, password=password)

    monkeypatch.setattr(driver, "set_user_password", set_user_password)
    response = post_action(api, customer, server, type="reset_password", password="correct horse battery")
    assert response.status_code == 202, response.content
    assert response.json()["password"] == "correct horse battery"
    operation = Operation.objects.get(pk=response.json()["id"])
    assert "correct horse battery" not in json.dumps(operation.params)

    operation = run(operation.pk)

    assert operation.status == "succeeded" and operation.params == {}
    assert seen == {"user": "root", "password": "correct horse battery"}
    server.refresh_from_db()
    assert (server.status, server.task) == ("running", None)


def test_a_password_reset_makes_a_password_when_none_is_given_and_refuses_a_short_one(api, customer, server):
    short = post_action(api, customer, server, type="reset_password", password="too short")
    assert short.status_code == 400 and "password" in short.json()["error"]["fields"], short.content
    response = post_action(api, customer, server, type="reset_password")
    assert response.status_code == 202
    assert len(response.json()["password"]) == passwords.GENERATED_LENGTH
    # The simulated host has no guest agent to answer: the driver takes it as done.
    assert run(response.json()["id"]).status == "succeeded"


def test_when_the_guest_agent_does_not_answer_the_reset_fails_and_offers_rescue_mode(
    api, client, customer, server, rescue_image, monkeypatch
):
    def no_agent(*args, **kwargs):
        raise driver.GuestAgentUnavailable("Guest agent is not responding: QEMU guest agent is not connected")

    monkeypatch.setattr(driver, "set_user_password", no_agent)
    operation = run(post_action(api, customer, server, type="reset_password").json()["id"])

    assert operation.status == "failed" and operation.params == {}
    assert operation.error == operations.GUEST_AGENT_TEXT and "not connected" in operation.detail
    answer = api(customer).get(f"/api/v1/servers/{server.pk}/actions/{operation.pk}/").json()
    assert "Use rescue mode" in answer["error"] and answer["detail"] is None
    client.force_login(customer)
    html = client.get(f"/servers/{server.pk}/").content.decode()
    banner = html.split('class="alert alert--error failure-banner"', 1)[1].split("</div>", 1)[0]
    assert "Reset root password failed." in banner and "Use rescue mode instead" in banner
    assert 'name="action" value="rescue"' in banner


# ---------- The server page and the staff page ----------


def test_the_server_page_shows_the_password_once_after_an_htmx_request(
    client, customer, server, rescue_image
):
    client.force_login(customer)
    html = client.get(f"/servers/{server.pk}/").content.decode()
    assert "Rescue and recovery" in html and 'value="reset_password"' in html and 'value="rescue"' in html

    answer = client.post(
        f"/servers/{server.pk}/action/", {"action": "rescue", "confirmed": "yes"}, HTTP_HX_REQUEST="true"
    )

    assert answer.status_code == 200
    operation = Operation.objects.get(server=server, type="rescue")
    password = passwords.unsealed(operation.params)
    assert password in answer.content.decode()
    assert 'id="one-time-password"' in answer.content.decode()
    assert (
        password not in client.get(f"/servers/{server.pk}/status/", HTTP_HX_REQUEST="true").content.decode()
    )
    assert password not in client.get(f"/servers/{server.pk}/").content.decode()


def test_without_javascript_the_password_is_shown_on_the_next_page_only(
    client, customer, server, rescue_image
):
    client.force_login(customer)
    asked = client.post(f"/servers/{server.pk}/action/", {"action": "rescue"})
    assert asked.status_code == 200 and "Start rescue mode" in asked.content.decode()  # asked first
    assert not Operation.objects.filter(server=server, type="rescue").exists()

    answer = client.post(f"/servers/{server.pk}/action/", {"action": "rescue", "confirmed": "yes"})

    assert answer.status_code == 302
    password = passwords.unsealed(Operation.objects.get(server=server, type="rescue").params)
    assert password not in json.dumps(dict(client.session))  # only encrypted until shown
    assert password in client.get(f"/servers/{server.pk}/").content.decode()
    assert password not in client.get(f"/servers/{server.pk}/").content.decode()


def test_in_rescue_mode_the_page_says_how_to_log_in_and_offers_to_leave(
    api, client, customer, server, rescue_image
):
    assert run(post_action(api, customer, server, type="rescue").json()["id"]).status == "succeeded"
    client.force_login(customer)
    html = client.get(f"/servers/{server.pk}/").content.decode()
    assert "The server runs the rescue system." in html and "/dev/vdb" in html
    assert 'value="unrescue"' in html and 'value="rescue"' not in html


def test_the_card_says_when_no_rescue_system_is_set_up(client, customer, server):
    client.force_login(customer)
    html = client.get(f"/servers/{server.pk}/").content.decode()
    assert "Rescue mode is not available: no rescue system has been set up." in html
    assert 'value="rescue"' not in html


def test_staff_start_rescue_mode_from_the_staff_page_and_see_the_password_once(
    client, staff, customer, server, rescue_image
):
    client.force_login(staff)
    page = client.get(f"/staff/servers/{server.pk}/").content.decode()
    assert "Rescue and recovery" in page and 'value="rescue"' in page

    answer = client.post(f"/staff/servers/{server.pk}/action/", {"action": "rescue", "confirmed": "yes"})

    assert answer.status_code == 302
    operation = Operation.objects.get(server=server, type="rescue")
    assert operation.requested_by == staff
    password = passwords.unsealed(operation.params)
    page = client.get(f"/staff/servers/{server.pk}/").content.decode()
    assert password in page and "password=" not in page  # the operation's parameters hide it
    assert password not in client.get(f"/staff/servers/{server.pk}/").content.decode()
    assert ActivityEvent.objects.filter(staff_action=True, target=f"server:{server.pk}").exists()


def test_a_server_in_rescue_mode_is_still_suspended_for_billing_and_comes_back_as_itself(
    api, customer, server, rescue_image, conn
):
    run(post_action(api, customer, server, type="rescue").json()["id"])
    server.refresh_from_db()
    assert server.status == Server.Status.RESCUE

    # The account falls overdue: billing asks the panel to suspend its servers.
    signals.account_suspended.send(sender=None, account=customer, references=[str(server.id)])
    run(Operation.objects.get(server=server, type="suspend").pk)
    server.refresh_from_db()
    assert (server.status, server.suspended_by) == (Server.Status.SUSPENDED, "billing")
    # The rescue system is gone: the server's own domain is defined again, switched off.
    assert disks(conn, server) == {"vda": f"{server.id}.qcow2", "vdb": f"{server.id}-seed.iso"}
    assert not conn.lookupByUUIDString(str(server.id)).isActive()
    assert volumes(conn, server) == {f"{server.id}.qcow2", f"{server.id}-seed.iso"}

    signals.account_unsuspended.send(sender=None, account=customer, references=[str(server.id)])
    run(Operation.objects.get(server=server, type="unsuspend").pk)
    server.refresh_from_db()
    assert server.status == Server.Status.RUNNING
