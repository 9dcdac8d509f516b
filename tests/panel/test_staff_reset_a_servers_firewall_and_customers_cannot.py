"""Staff see a server's firewall on its staff page (the rules, the default, whether the host applies it and
why not) and can reset it to no rules, everything accepted: asked first, recorded in the customer's
activity log as a staff action, sent to the host like any change. Customers never reach it (403)."""

from __future__ import annotations

import pytest

from panel.models import ActivityEvent, Firewall
from panel.servers import firewall
from tests import factories

pytestmark = pytest.mark.django_db

RULES = [{"protocol": "tcp", "ports": "22", "sources": ["203.0.113.0/24"]}]


@pytest.fixture
def server(customer, catalog):
    server = factories.make_server(customer, catalog)
    firewall.set_firewall(server, RULES, "drop", customer)
    return server


def test_staff_see_the_firewall_and_why_it_is_not_applied(client, staff, server):
    Firewall.objects.filter(pk=server.pk).update(apply_error="the host did not answer within 10 seconds")
    client.force_login(staff)
    page = client.get(f"/staff/servers/{server.pk}/").content.decode()
    assert 'id="firewall"' in page
    assert "203.0.113.0/24" in page and "Inbound traffic the rules do not allow is dropped." in page
    assert "Being applied" in page and "the host did not answer within 10 seconds" in page
    assert f'action="/staff/servers/{server.pk}/firewall/reset/"' in page


def test_staff_reset_it_after_being_asked(client, staff, customer, server):
    version = Firewall.objects.get(pk=server.pk).version
    client.force_login(staff)
    path = f"/staff/servers/{server.pk}/firewall/reset/"

    asked = client.post(path, {"confirmed": ""})
    assert asked.status_code == 200 and "Reset the firewall of web1?" in asked.content.decode()
    assert Firewall.objects.get(pk=server.pk).inbound == RULES

    response = client.post(path, {"confirmed": "yes"})
    assert response.status_code == 302 and response["Location"] == f"/staff/servers/{server.pk}/"
    row = Firewall.objects.get(pk=server.pk)
    assert (row.inbound, row.default_inbound, row.version) == ([], "accept", version + 1)
    assert row.pending and row.updated_by == staff
    event = ActivityEvent.objects.filter(type=ActivityEvent.Type.FIREWALL_CHANGED).latest("pk")
    assert event.actor == staff and event.account == customer and event.staff_action
    assert "no rules, everything accepted" in client.get(f"/staff/servers/{server.pk}/").content.decode()


def test_customers_get_403_on_the_staff_page_and_the_reset(client, customer, server):
    client.force_login(customer)
    assert client.get(f"/staff/servers/{server.pk}/").status_code == 403
    response = client.post(f"/staff/servers/{server.pk}/firewall/reset/", {"confirmed": "yes"})
    assert response.status_code == 403
    assert Firewall.objects.get(pk=server.pk).inbound == RULES
