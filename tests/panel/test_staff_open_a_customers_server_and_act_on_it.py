"""Staff open any customer's server from the staff lists and see what its owner sees plus the staff-only
facts (owner, host, the workers' raw errors, leases, who suspended it); they suspend it with a reason,
unsuspend it and power it on and off in their own name (recorded in the audit log). Refusals come back as
messages, never as errors; power off and suspend ask first, on a page of their own without JavaScript."""

from __future__ import annotations

import pytest

from panel.models import ActivityEvent, Operation, Server
from tests import factories

pytestmark = pytest.mark.django_db

RAW_ERROR = "libvirtError: internal error: process exited while connecting to monitor: qemu-kvm: -drive"
STAFF_MENU = [
    "/staff/customers/",
    "/staff/overdue/",
    "/staff/hosts/",
    "/staff/ip-pools/",
    "/staff/images/",
    "/staff/billing-settings/",
]
ADMIN_MENU = ["/staff/audit/", "/django-admin/"]


@pytest.fixture
def server(customer, catalog) -> Server:
    server = factories.make_server(customer, catalog, "shop.example.com")
    Operation.objects.create(
        server=server,
        type=Operation.Type.REBOOT,
        status=Operation.Status.FAILED,
        attempts=2,
        error="The server could not be rebooted.",
        detail=RAW_ERROR,
        requested_by=customer,
    )
    return server


def _page(client, server: Server) -> str:
    response = client.get(f"/staff/servers/{server.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def _post(client, server: Server, **data):
    return client.post(f"/staff/servers/{server.pk}/action/", data, follow=True)


def test_staff_see_the_owner_the_host_and_the_raw_error(client, staff, server, catalog):
    client.force_login(staff)
    page = _page(client, server)
    assert server.name in page
    assert f'href="/staff/customers/{server.owner_id}/"' in page and server.owner.email in page
    assert f'href="/staff/hosts/{catalog["host"].pk}/"' in page and catalog["host"].name in page
    assert catalog["region"].name in page and catalog["plan"].name in page
    assert RAW_ERROR in page and "The server could not be rebooted." in page
    assert "2 attempts" in page
    # The running server offers the staff actions; none of the customer's forms is on the page.
    for action in ("reboot", "shutdown", "power_off", "suspend"):
        assert f'name="action" value="{action}"' in page, action
    assert f"/servers/{server.pk}/action/" in page
    assert f'action="/servers/{server.pk}/action/"' not in page
    assert f'action="/servers/{server.pk}/ptr/"' not in page


def test_customers_cannot_open_or_act_on_the_staff_server_page(client, customer, server):
    client.force_login(customer)
    assert client.get(f"/staff/servers/{server.pk}/").status_code == 403
    response = client.post(f"/staff/servers/{server.pk}/action/", {"action": "power_off", "confirmed": "yes"})
    assert response.status_code == 403
    assert not Operation.objects.filter(server=server, type="power_off").exists()


def test_staff_suspend_with_a_reason_and_the_audit_log_records_it(client, staff, server):
    client.force_login(staff)
    response = _post(client, server, action="suspend", reason="Phishing kit reported", confirmed="yes")
    assert response.redirect_chain[-1][0] == f"/staff/servers/{server.pk}/"
    assert "is being suspended" in response.content.decode()
    operation = Operation.objects.get(server=server, type="suspend")
    assert operation.params == {"reason": "Phishing kit reported", "by": "staff"}
    assert operation.requested_by == staff
    server.refresh_from_db()
    assert server.task == "suspend"
    event = ActivityEvent.objects.get(type=ActivityEvent.Type.SUSPENSION, target=f"server:{server.pk}")
    assert event.staff_action and event.actor == staff and event.account == server.owner


def test_a_suspension_needs_a_reason(client, staff, server):
    client.force_login(staff)
    response = _post(client, server, action="suspend", reason="  ", confirmed="yes")
    assert "Give a reason for the suspension" in response.content.decode()
    assert not Operation.objects.filter(server=server, type="suspend").exists()


def test_power_off_and_suspend_ask_first_without_javascript(client, staff, server):
    client.force_login(staff)
    response = client.post(f"/staff/servers/{server.pk}/action/", {"action": "power_off", "confirmed": ""})
    page = response.content.decode()
    assert response.status_code == 200 and "Please confirm" in page
    assert 'name="confirmed" value="yes"' in page
    response = client.post(f"/staff/servers/{server.pk}/action/", {"action": "suspend", "reason": "Spam"})
    assert 'name="reason" value="Spam"' in response.content.decode()
    assert not Operation.objects.filter(server=server).exclude(type="reboot").exists()

    response = _post(client, server, action="power_off", confirmed="yes")
    assert "is being powered off" in response.content.decode()
    operation = Operation.objects.get(server=server, type="power_off")
    assert operation.requested_by == staff
    event = ActivityEvent.objects.get(type=ActivityEvent.Type.SERVER_ACTION, target=f"server:{server.pk}")
    assert event.staff_action and event.actor == staff


def test_staff_unsuspend_a_customers_server_but_not_their_own(client, staff, server, catalog):
    Server.objects.filter(pk=server.pk).update(status="suspended", suspended_by="billing")
    own = factories.make_server(staff, catalog, "own.example.com", status="suspended", suspended_by="staff")
    client.force_login(staff)

    page = _page(client, own)
    assert "You cannot unsuspend your own server" in page
    response = _post(client, own, action="unsuspend")
    assert "You cannot unsuspend your own server" in response.content.decode()
    assert not Operation.objects.filter(server=own).exists()

    page = _page(client, server)
    assert "Billing" in page and 'value="unsuspend"' in page
    response = _post(client, server, action="unsuspend")
    assert "is being unsuspended" in response.content.decode()
    assert Operation.objects.filter(server=server, type="unsuspend", requested_by=staff).exists()


def test_refused_actions_are_messages_not_errors(client, staff, server):
    client.force_login(staff)
    Server.objects.filter(pk=server.pk).update(task="reboot")
    response = _post(client, server, action="reboot")
    assert response.status_code == 200
    assert "Another action (Reboot) is in progress" in response.content.decode()
    Server.objects.filter(pk=server.pk).update(task=None)
    response = _post(client, server, action="start")  # a running server cannot start
    assert response.status_code == 200
    assert "Cannot start a server that is running" in response.content.decode()
    response = _post(client, server, action="delete")  # not a staff action here
    assert response.status_code == 200 and "Unknown action." in response.content.decode()
    assert client.get(f"/staff/servers/{server.pk}/action/").status_code == 405
    assert not Operation.objects.filter(server=server).exclude(type="reboot").exists()


def test_staff_lists_link_to_the_staff_server_page(client, staff, server, catalog):
    client.force_login(staff)
    href = f'href="/staff/servers/{server.pk}/"'
    assert href in client.get("/staff/servers/").content.decode()
    assert href in client.get(f"/staff/customers/{server.owner_id}/").content.decode()
    assert href in client.get(f"/staff/hosts/{catalog['host'].pk}/").content.decode()


def test_the_state_part_is_polled_while_an_action_runs(client, staff, server):
    client.force_login(staff)
    Server.objects.filter(pk=server.pk).update(task="reboot")
    page = _page(client, server)
    assert f'hx-get="/staff/servers/{server.pk}/"' in page
    fragment = client.get(f"/staff/servers/{server.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith('<div id="staff-server-state"') and "<html" not in fragment
    Server.objects.filter(pk=server.pk).update(task=None)
    assert f'hx-get="/staff/servers/{server.pk}/"' not in _page(client, server)


def test_the_staff_pages_sit_in_one_staff_menu_that_marks_the_current_page(client, staff, admin_user, server):
    client.force_login(staff)
    page = _page(client, server)
    # One current entry in the top bar (the page's own Overview tab is marked under it, in <main>).
    assert page.split('id="main"')[0].count('aria-current="page"') == 1
    assert '<a href="/staff/servers/" aria-current="page">' in page
    assert "nav-menu__toggle--current" in page
    for path in STAFF_MENU:
        assert f'href="{path}"' in page, path
    for path in ADMIN_MENU:
        assert f'href="{path}"' not in page, path

    client.force_login(admin_user)
    page = client.get("/staff/billing-settings/").content.decode()
    assert '<a href="/staff/billing-settings/" aria-current="page">' in page
    assert 'href="/staff/audit/"' in page and 'href="/django-admin/"' in page
    # The customer tabs: one "Servers" tab, current on the customer's own pages only.
    page = client.get("/servers/").content.decode()
    assert '<a class="nav__tab" href="/servers/" aria-current="page">' in page
    assert "nav-menu__toggle--current" not in page
