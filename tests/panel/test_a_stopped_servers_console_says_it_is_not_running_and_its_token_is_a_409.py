"""A server that is not running has no console: its Console tab says so (with a way to the overview, where
it can be started) and offers no Connect, its console window says the same, and a token asked for anyway
(the server stopped while the page was open) is a 409 with the reason, which the page shows."""

from __future__ import annotations

import pytest
from django.utils.html import escape

from panel.console import sessions
from panel.console.models import ConsoleSession
from panel.models import ActivityEvent
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("status", ["stopped", "suspended", "provisioning", "error"])
def test_a_server_that_is_not_running_has_no_console(client, customer, catalog, status):
    server = factories.make_server(customer, catalog, status=status)
    client.force_login(customer)

    page = client.get(f"/servers/{server.pk}/console/")
    assert page.status_code == 200
    html = page.content.decode()
    assert str(sessions.NOT_RUNNING) in html
    assert f'href="/servers/{server.pk}/"' in html
    assert "data-console " not in html and 'data-console-action="connect"' not in html
    assert "panel/console.js" not in html

    window = client.get(f"/servers/{server.pk}/console/serial/window/")
    assert window.status_code == 200
    assert str(sessions.NOT_RUNNING) in window.content.decode()
    assert "data-autoconnect" not in window.content.decode()

    response = client.post(f"/servers/{server.pk}/console/vnc/token/")
    assert response.status_code == 409
    assert response.json() == {"detail": str(sessions.NOT_RUNNING)}
    assert not ConsoleSession.objects.exists()
    assert not ActivityEvent.objects.filter(type=ActivityEvent.Type.CONSOLE_OPENED).exists()


def test_the_reason_is_in_the_readers_language(client, catalog):
    customer = factories.make_user(language="id")
    server = factories.make_server(customer, catalog, status="stopped")
    client.force_login(customer)
    detail = client.post(f"/servers/{server.pk}/console/serial/token/").json()["detail"]
    page = client.get(f"/servers/{server.pk}/console/").content.decode()
    assert escape(detail) in page
