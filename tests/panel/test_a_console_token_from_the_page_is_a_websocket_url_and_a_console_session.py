"""The Console tab's token endpoint (`POST servers/{id}/console/{type}/token/`, what static/panel/console.js
asks before each Connect): for a running server it answers the console proxy's ws:// URL with a fresh
single-use token and when it expires, records a ConsoleSession for the user, the server and the console
type, and logs the opening; it takes only POST, with the CSRF token."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from panel.console.models import ConsoleSession
from panel.models import ActivityEvent
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(customer, catalog):
    return factories.make_server(customer, catalog, name="web1.example.com")


@pytest.mark.parametrize("console_type", ["vnc", "serial"])
def test_a_running_servers_console_token_is_a_websocket_url(client, customer, server, settings, console_type):
    settings.CONSOLE_URL = "ws://127.0.0.1:8001/console"
    client.force_login(customer)
    response = client.post(f"/servers/{server.pk}/console/{console_type}/token/")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["url"].startswith("ws://127.0.0.1:8001/console/")
    token = body["url"].rsplit("/", 1)[1]
    assert len(token) >= 40
    expires_at = timezone.datetime.fromisoformat(body["expires_at"])
    assert timezone.now() < expires_at <= timezone.now() + timedelta(seconds=60)

    session = ConsoleSession.objects.get()
    assert (session.server, session.user, session.type) == (server, customer, console_type)
    assert session.connected_at is None and session.origin == "http://testserver"
    event = ActivityEvent.objects.get(type=ActivityEvent.Type.CONSOLE_OPENED)
    assert (event.account, event.actor) == (customer, customer)

    # Each Connect gets a fresh token.
    again = client.post(f"/servers/{server.pk}/console/{console_type}/token/").json()
    assert again["url"] != body["url"]
    assert ConsoleSession.objects.count() == 2


def test_without_a_proxy_url_the_token_points_at_the_proxy_port_on_the_pages_host(
    client, customer, server, settings
):
    settings.CONSOLE_URL = ""
    settings.CONSOLE_BIND = "127.0.0.1:8001"
    client.force_login(customer)
    body = client.post(f"/servers/{server.pk}/console/vnc/token/", HTTP_HOST="localhost").json()
    assert body["url"].startswith("ws://localhost:8001/console/")


def test_the_token_needs_a_post_with_the_csrf_token(customer, server):
    client = Client(enforce_csrf_checks=True)
    client.force_login(customer)
    url = f"/servers/{server.pk}/console/vnc/token/"
    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 403  # no CSRF token
    page = client.get(f"/servers/{server.pk}/console/")
    csrf = page.context["csrf_token"]
    assert client.post(url, HTTP_X_CSRFTOKEN=str(csrf)).status_code == 200
    assert ConsoleSession.objects.count() == 1


def test_an_unknown_console_type_is_not_found(client, customer, server):
    client.force_login(customer)
    assert client.post(f"/servers/{server.pk}/console/spice/token/").status_code == 404
    assert client.get(f"/servers/{server.pk}/console/spice/window/").status_code == 404
    assert not ConsoleSession.objects.exists()


def test_logged_out_visitors_are_sent_to_log_in(client, server):
    response = client.post(f"/servers/{server.pk}/console/vnc/token/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not ConsoleSession.objects.exists()
