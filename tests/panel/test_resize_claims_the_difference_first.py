"""A resize claims the new size on the server's host when it is asked for (422 when the host cannot take
it, and nothing changes), then the worker applies it; a resize that fails gives the claim back."""

from __future__ import annotations

from datetime import timedelta

import libvirt
import pytest
from django.utils import timezone
from lxml import etree

from hypervisor import connection, placement
from hypervisor.models import Allocation, Host
from panel.models import Operation, Server
from panel.servers import operations
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def conn(catalog):
    with factories.TidySimulatedHost(catalog["host"].uri) as conn:
        yield conn


@pytest.fixture
def server(customer, catalog, conn) -> Server:
    """A server on the small plan (1 vCPU, 256 MiB, 1 GiB), created for real on the simulated host."""
    return factories.make_real_server(
        customer, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )


@pytest.fixture
def bigger(catalog):
    return factories.make_plan(slug="medium", vcpus=2, memory_mib=1024, disk_gib=5)


@pytest.fixture
def more_memory(catalog):
    """More vCPUs and memory on the same disk size (the disk needs no growing)."""
    return factories.make_plan(slug="small-plus", vcpus=2, memory_mib=1024, disk_gib=1)


def resize(api, user, server, **body):
    return api(user).post(f"/api/v1/servers/{server.pk}/actions/", {"type": "resize", **body}, format="json")


def allocation_of(server) -> tuple[int, int, int]:
    allocation = Allocation.objects.get(consumer_uuid=server.id)
    return allocation.vcpus, allocation.memory_mib, allocation.disk_gib


def sizes(server) -> tuple[str, int, int, int]:
    server.refresh_from_db()
    return server.plan.slug, server.vcpus, server.memory_mib, server.disk_gib


def assert_nothing_changed(server):
    """Only the create operation exists, the claim is the old size, the server is idle on its old plan."""
    assert list(Operation.objects.filter(server=server).values_list("type", flat=True)) == ["create"]
    assert allocation_of(server) == (1, 256, 1)
    assert sizes(server) == ("small", 1, 256, 1)
    assert (server.status, server.task) == ("running", None)


def the_domain(conn, server) -> libvirt.virDomain:
    return conn.lookupByUUIDString(str(server.id))


# ---------- When it is asked for ----------


def test_the_new_size_is_claimed_before_any_worker_ran(api, customer, server, bigger, catalog):
    response = resize(api, customer, server, plan="medium")

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["type"], body["status"]) == ("resize", "pending")
    operation = Operation.objects.get(pk=body["id"])
    assert operation.attempts == 0 and operation.started_at is None  # no worker has touched it
    assert allocation_of(server) == (2, 1024, 5)
    host = Host.objects.get(pk=catalog["host"].pk)
    assert placement.allocated(host) == {"vcpus": 2, "memory_mib": 1024, "disk_gib": 5}
    # The server itself changes only when the worker has applied the new size.
    assert sizes(server) == ("small", 1, 256, 1)
    assert server.task == "resize"


def test_only_the_difference_has_to_fit_on_the_host(api, customer, server, catalog):
    # The host has exactly 512 MiB; the server holds 256 of it. A 512 MiB plan fits because the server's
    # own claim is replaced, not added to.
    factories.set_host_size(catalog["host"], vcpus=1, memory_mib=512, disk_gib=1)
    factories.make_plan(slug="snug", vcpus=1, memory_mib=512, disk_gib=1)

    assert resize(api, customer, server, plan="snug").status_code == 202
    assert allocation_of(server) == (1, 512, 1)


def test_a_plan_the_host_cannot_take_is_refused_and_nothing_changes(api, customer, server, bigger, catalog):
    Host.objects.filter(pk=catalog["host"].pk).update(
        vcpus_total=4,
        memory_mib_total=512,
        disk_gib_total=100,
        reserved_vcpus=0,
        reserved_memory_mib=0,
        reserved_disk_gib=0,
        ram_allocation_ratio=1,
    )

    response = resize(api, customer, server, plan="medium")

    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "out_of_capacity"
    assert "Medium" in error["message"]
    assert_nothing_changed(server)


def test_a_plan_with_a_smaller_disk_is_refused(api, customer, catalog, conn, bigger):
    server = factories.make_real_server(
        customer, plan=bigger, image=catalog["image"], region=catalog["region"]
    )
    factories.make_plan(slug="more-cpu-less-disk", vcpus=4, memory_mib=2048, disk_gib=2)

    response = resize(api, customer, server, plan="more-cpu-less-disk")

    assert response.status_code == 422, response.content
    assert response.json()["error"]["message"] == (
        "Disks only grow: More-Cpu-Less-Disk has 2 GiB, the server has 5 GiB."
    )
    assert not Operation.objects.filter(server=server, type="resize").exists()
    assert allocation_of(server) == (2, 1024, 5)
    assert sizes(server) == ("medium", 2, 1024, 5)
    assert server.task is None


def test_the_plan_the_server_is_on_is_refused(api, customer, server):
    response = resize(api, customer, server, plan="small")

    assert response.status_code == 422, response.content
    assert "on the plan Small already" in response.json()["error"]["message"]
    assert_nothing_changed(server)


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({}, 400, "invalid"),
        ({"plan": ""}, 400, "invalid"),
        ({"plan": "no-such-plan"}, 422, "unprocessable"),
        ({"plan": "retired"}, 422, "unprocessable"),
    ],
    ids=["missing", "blank", "unknown", "not-on-sale"],
)
def test_a_missing_unknown_or_retired_plan_is_refused(api, customer, server, body, status, code):
    factories.make_plan(slug="retired", vcpus=8, memory_mib=8192, disk_gib=80, is_active=False)

    response = resize(api, customer, server, **body)

    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    if status == 400:
        assert list(error["fields"]) == ["plan"]
    assert_nothing_changed(server)


def test_another_customers_server_cannot_be_resized(api, other_customer, server, bigger):
    assert resize(api, other_customer, server, plan="medium").status_code == 404
    assert_nothing_changed(server)


def test_a_second_resize_while_one_is_in_flight_is_a_conflict(api, customer, server, bigger):
    factories.make_plan(slug="large", vcpus=4, memory_mib=2048, disk_gib=10)
    assert resize(api, customer, server, plan="medium").status_code == 202

    response = resize(api, customer, server, plan="large")

    assert response.status_code == 409, response.content
    assert allocation_of(server) == (2, 1024, 5)  # the first claim, not the second


# ---------- In the worker ----------


def test_the_worker_applies_the_new_plan_and_the_server_runs_again(api, customer, server, more_memory, conn):
    operation = Operation.objects.get(pk=resize(api, customer, server, plan="small-plus").json()["id"])

    operation = factories.run_operation(operation)

    assert operation.status == "succeeded", operation.error
    assert sizes(server) == ("small-plus", 2, 1024, 1)
    assert (server.status, server.task, server.power_state) == ("running", None, "running")
    domain = the_domain(conn, server)
    assert domain.isActive()
    root = etree.fromstring(domain.XMLDesc(0).encode())
    assert int(root.findtext("memory")) == 1024 * 1024  # KiB
    assert int(root.findtext("vcpu")) == 2
    assert domain.info()[3] == 2  # the running domain has the new vCPUs, not only its definition
    assert allocation_of(server) == (2, 1024, 1)

    detail = api(customer).get(f"/api/v1/servers/{server.pk}/").json()
    assert (detail["plan"], detail["vcpus"], detail["memory_mib"], detail["disk_gib"]) == (
        "small-plus",
        2,
        1024,
        1,
    )


def test_a_stopped_server_is_resized_and_stays_stopped(api, customer, server, more_memory, conn):
    response = api(customer).post(
        f"/api/v1/servers/{server.pk}/actions/", {"type": "power_off"}, format="json"
    )
    assert factories.run_operation(Operation.objects.get(pk=response.json()["id"])).status == "succeeded"

    operation = Operation.objects.get(pk=resize(api, customer, server, plan="small-plus").json()["id"])
    operation = factories.run_operation(operation)

    assert operation.status == "succeeded", operation.error
    assert sizes(server) == ("small-plus", 2, 1024, 1)
    assert (server.status, server.task, server.power_state) == ("stopped", None, "shutoff")
    domain = the_domain(conn, server)
    assert not domain.isActive()
    assert int(etree.fromstring(domain.XMLDesc(0).encode()).findtext("memory")) == 1024 * 1024


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_a_resize_that_grows_the_disk_works_on_a_simulated_host(api, customer, server, bigger, conn, running):
    # The test driver cannot resize volumes (it holds no data); the resize must succeed all the same.
    if not running:
        the_domain(conn, server).destroy()
        Server.objects.filter(pk=server.pk).update(status="stopped", power_state="shutoff")
    operation = Operation.objects.get(pk=resize(api, customer, server, plan="medium").json()["id"])

    operation = factories.run_operation(operation)

    assert operation.status == "succeeded", operation.error
    assert sizes(server) == ("medium", 2, 1024, 5)
    assert (server.status, server.task) == ("running" if running else "stopped", None)
    assert conn.lookupByUUIDString(str(server.id)).isActive() == running
    assert allocation_of(server) == (2, 1024, 5)


def test_a_resize_that_fails_in_the_worker_gives_the_claim_back(api, customer, server, more_memory, catalog):
    # The domain vanished from the host behind the panel's back.
    domain = connection.connection(catalog["host"]).lookupByUUIDString(str(server.id))
    domain.destroy()
    domain.undefine()
    operation = Operation.objects.get(pk=resize(api, customer, server, plan="small-plus").json()["id"])
    assert allocation_of(server) == (2, 1024, 1)

    operation = factories.run_operation(operation)

    assert operation.status == "failed"
    assert operation.detail == "the virtual machine does not exist on its host"  # for staff
    assert allocation_of(server) == (1, 256, 1)
    assert sizes(server) == ("small", 1, 256, 1)
    assert server.task is None
    body = api(customer).get(f"/api/v1/servers/{server.pk}/actions/{operation.pk}/").json()
    assert (body["status"], body["error"]) == ("failed", operation.error)
    assert "virtual machine" not in body["error"] and body["detail"] is None  # the customer: plain words


def test_a_resize_the_reaper_gives_up_on_gives_the_claim_back(api, customer, server, bigger):
    operation = Operation.objects.get(pk=resize(api, customer, server, plan="medium").json()["id"])
    Operation.objects.filter(pk=operation.pk).update(deadline=timezone.now() - timedelta(seconds=1))

    assert operations.reap_stuck_operations() == 1

    operation.refresh_from_db()
    assert operation.status == "failed"
    assert sizes(server) == ("small", 1, 256, 1)
    assert server.task is None
    assert allocation_of(server) == (1, 256, 1)
