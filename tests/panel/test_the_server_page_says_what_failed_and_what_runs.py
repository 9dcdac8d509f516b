"""The server page after a failed action and during a long one: a banner saying what failed, the state the
server is in and what to do (the hypervisor's words for staff only), and for an action in flight the step
it is at with its time budget."""

from datetime import timedelta

import pytest
from django.utils import timezone

from panel.models import Operation, Server
from panel.servers import operation_steps, operations
from tests import factories

pytestmark = pytest.mark.django_db

RAW = "internal error: qemu-img: Can't resize a v2 image which has snapshots (host kvm-7, /var/lib/libvirt)"


@pytest.fixture
def server(customer, catalog) -> Server:
    return factories.make_server(customer, catalog, name="shop")


def failed_resize(server: Server, customer) -> Operation:
    operation = Operation.objects.create(
        server=server,
        type="resize",
        params={"plan": "small"},
        requested_by=customer,
        status=Operation.Status.FAILED,
        error=str(operations.FAILED_MESSAGE),
        detail=RAW,
        finished_at=timezone.now(),
    )
    return operation


def page(client, server, language: str = "en") -> str:
    return client.get(f"/servers/{server.pk}/", HTTP_ACCEPT_LANGUAGE=language).content.decode()


def test_a_failed_resize_gets_a_banner_with_the_state_and_what_to_do(client, customer, server):
    failed_resize(server, customer)
    client.force_login(customer)
    html = page(client, server)
    assert 'class="alert alert--error failure-banner" role="alert"' in html
    assert "Resize to Small failed." in html
    assert "Your server is running." in html
    assert "It keeps its previous plan and you are not charged for the change" in html
    assert "Can&#x27;t resize" not in html and "kvm-7" not in html  # the raw error is for staff


def test_staff_see_the_hypervisors_words_in_the_banner(client, customer, staff, server):
    failed_resize(server, customer)
    Server.objects.filter(pk=server.pk).update(owner=staff)
    client.force_login(staff)
    html = page(client, server)
    assert "Detail (staff only):" in html and "kvm-7" in html


def test_the_banner_goes_when_the_next_action_succeeds(client, customer, server):
    failed_resize(server, customer)
    Operation.objects.create(
        server=server, type="reboot", status=Operation.Status.SUCCEEDED, finished_at=timezone.now()
    )
    client.force_login(customer)
    assert "failure-banner" not in page(client, server)


def test_an_old_failure_of_a_working_server_is_left_to_the_activity_list(client, customer, server):
    operation = failed_resize(server, customer)
    Operation.objects.filter(pk=operation.pk).update(finished_at=timezone.now() - timedelta(days=4))
    client.force_login(customer)
    html = page(client, server)
    assert "failure-banner" not in html and "Resize to Small" in html  # still in the activity list


def test_the_banner_and_the_activity_are_in_the_readers_language(client, customer, server):
    """The error is stored in the source language by the worker and translated when shown."""
    failed_resize(server, customer)
    customer.language = "id"
    customer.save(update_fields=["language"])
    client.force_login(customer)
    html = page(client, server)
    assert "Ganti paket ke Small gagal." in html and "Server Anda sedang berjalan." in html
    english = "The action failed. Please try again, or contact support if it keeps failing."
    assert english not in html  # shown in the reader's language, not as stored


def test_the_worker_stores_errors_in_the_source_language(customer, server):
    """Whatever language the process runs in, a failure is stored as the English message id."""
    from django.utils import translation

    operation = Operation.objects.create(server=server, type="snapshot", params={"name": "x"})
    with translation.override("id"):
        Server.objects.filter(pk=server.pk).update(task="snapshot", host=None)
        operations.execute(str(operation.pk))
    operation.refresh_from_db()
    assert operation.status == Operation.Status.FAILED
    assert operation.error == "The action failed. Please try again, or contact support if it keeps failing."


def test_a_shutdown_in_flight_shows_its_step_and_budget(client, customer, server, settings):
    settings.SHUTDOWN_TIMEOUT = 60
    Server.objects.filter(pk=server.pk).update(task="shutdown")
    Operation.objects.create(
        server=server,
        type="shutdown",
        status=Operation.Status.RUNNING,
        started_at=timezone.now() - timedelta(seconds=50),  # the disk grew first, say
        step=operation_steps.GUEST_SHUTDOWN,
        step_at=timezone.now() - timedelta(seconds=12),
    )
    client.force_login(customer)
    html = client.get(f"/servers/{server.pk}/status/", HTTP_HX_REQUEST="true").content.decode()
    assert "Waiting for the guest to shut down; it is forced off after 60 seconds" in html
    assert "12 seconds so far" in html or "13 seconds so far" in html  # on this step, against its budget


def test_a_shutdown_waiting_for_a_worker_says_what_it_will_do(client, customer, server):
    Server.objects.filter(pk=server.pk).update(task="shutdown")
    Operation.objects.create(server=server, type="shutdown")
    client.force_login(customer)
    html = client.get(f"/servers/{server.pk}/status/", HTTP_HX_REQUEST="true").content.decode()
    assert "Shutting down…" in html and "so far" not in html


def test_the_cpu_chart_follows_a_resize_without_a_reload(client, customer, server):
    client.force_login(customer)
    Server.objects.filter(pk=server.pk).update(vcpus=2)
    html = client.get(f"/servers/{server.pk}/status/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="chart-cpu-note" hx-swap-oob="true">Percent of its 2 vCPUs<' in html


def test_an_empty_list_after_deleting_servers_is_not_a_first_visit(client, customer, catalog):
    client.force_login(customer)
    assert "No servers yet" in client.get("/servers/").content.decode()
    factories.make_server(customer, catalog, status="deleted", deleted_at=timezone.now())
    html = client.get("/servers/").content.decode()
    assert "No servers yet" not in html and "Your servers have been deleted." in html


def test_the_staff_server_page_has_the_banner_with_the_hypervisors_words(client, customer, staff, server):
    failed_resize(server, customer)
    client.force_login(staff)
    html = client.get(f"/staff/servers/{server.pk}/").content.decode()
    assert "failure-banner" in html and "Resize to Small failed." in html
    assert "Detail (staff only):" in html and "kvm-7" in html


def test_a_failed_suspension_is_for_staff_not_for_the_customer(client, customer, staff, server):
    """Billing, metering or staff suspend servers: when that fails, the customer did nothing to act on."""
    Operation.objects.create(
        server=server, type="suspend", status=Operation.Status.FAILED, error="x", detail="host refused",
        finished_at=timezone.now(),
    )  # fmt: skip
    client.force_login(customer)
    assert "failure-banner" not in page(client, server)
    client.force_login(staff)
    html = client.get(f"/staff/servers/{server.pk}/").content.decode()
    assert "failure-banner" in html and "host refused" in html
