"""Staff open any customer's server's console from the staff server page (its Console tab, the console
window and the tokens, recorded as a staff action on the customer's account); customers get 403 on those
staff pages, even for their own servers, and the staff pages 404 for a server that does not exist."""

from __future__ import annotations

import uuid

import pytest

from panel.console.models import ConsoleSession
from panel.models import ActivityEvent
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(customer, catalog):
    return factories.make_server(customer, catalog, name="db1.example.com")


def test_staff_open_a_customers_console(client, staff, customer, server, settings):
    settings.CONSOLE_URL = "wss://panel.example.com/console"
    client.force_login(staff)

    overview = client.get(f"/staff/servers/{server.pk}/").content.decode()
    assert f'href="/staff/servers/{server.pk}/console/"' in overview

    page = client.get(f"/staff/servers/{server.pk}/console/?type=serial")
    assert page.status_code == 200
    html = page.content.decode()
    assert customer.email in html  # the staff header: the owner
    assert f'data-token-url="/staff/servers/{server.pk}/console/serial/token/"' in html
    assert f'data-window-url="/staff/servers/{server.pk}/console/serial/window/"' in html
    assert client.get(f"/staff/servers/{server.pk}/console/vnc/window/").status_code == 200

    body = client.post(f"/staff/servers/{server.pk}/console/serial/token/").json()
    assert body["url"].startswith("wss://panel.example.com/console/")
    session = ConsoleSession.objects.get()
    assert (session.user, session.server, session.type) == (staff, server, "serial")
    event = ActivityEvent.objects.get(type=ActivityEvent.Type.CONSOLE_OPENED)
    assert (event.account, event.actor, event.staff_action) == (customer, staff, True)


def test_staff_get_a_409_for_a_stopped_server(client, staff, customer, catalog):
    server = factories.make_server(customer, catalog, status="stopped")
    client.force_login(staff)
    assert client.post(f"/staff/servers/{server.pk}/console/vnc/token/").status_code == 409
    assert (
        'data-console-action="connect"'
        not in client.get(f"/staff/servers/{server.pk}/console/").content.decode()
    )


def test_customers_get_403_on_the_staff_console_pages(client, customer, server):
    client.force_login(customer)
    assert client.get(f"/staff/servers/{server.pk}/console/").status_code == 403
    assert client.get(f"/staff/servers/{server.pk}/console/vnc/window/").status_code == 403
    assert client.post(f"/staff/servers/{server.pk}/console/vnc/token/").status_code == 403
    assert not ConsoleSession.objects.exists()


def test_an_unknown_server_is_not_found_for_staff(client, staff):
    client.force_login(staff)
    assert client.get(f"/staff/servers/{uuid.uuid4()}/console/").status_code == 404
    assert client.post(f"/staff/servers/{uuid.uuid4()}/console/vnc/token/").status_code == 404
