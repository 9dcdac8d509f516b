"""The staff server list shows 50 servers a page, newest first, and keeps the filters across pages."""

import pytest

from panel.models import Server
from tests import factories

pytestmark = pytest.mark.django_db


def test_the_staff_server_list_is_paged(client, staff, customer, catalog):
    for index in range(55):
        factories.make_server(customer, catalog, f"srv-{index:02d}.example")
    client.force_login(staff)
    first = client.get("/staff/servers/").content.decode()
    assert "srv-54.example" in first and "srv-04.example" not in first
    assert "Page 1 of 2" in first
    second = client.get("/staff/servers/?page=2").content.decode()
    assert "srv-04.example" in second and "srv-54.example" not in second
    Server.objects.filter(name="srv-03.example").update(status="error")
    filtered = client.get("/staff/servers/?status=error").content.decode()
    assert "srv-03.example" in filtered and "Page 1 of" not in filtered
