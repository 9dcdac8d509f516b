"""A customer's Console tab, console window and console tokens are theirs alone: another customer gets 404
for each (the server's existence is not given away) and no token is minted."""

from __future__ import annotations

import pytest

from panel.console.models import ConsoleSession
from tests import factories

pytestmark = pytest.mark.django_db


def test_another_customers_server_console_is_not_found(client, customer, other_customer, catalog):
    server = factories.make_server(customer, catalog)
    client.force_login(other_customer)
    assert client.get(f"/servers/{server.pk}/console/").status_code == 404
    assert client.get(f"/servers/{server.pk}/console/vnc/window/").status_code == 404
    for console_type in ("vnc", "serial"):
        assert client.post(f"/servers/{server.pk}/console/{console_type}/token/").status_code == 404
    assert not ConsoleSession.objects.exists()

    client.force_login(customer)
    assert client.get(f"/servers/{server.pk}/console/").status_code == 200
    assert client.post(f"/servers/{server.pk}/console/vnc/token/").status_code == 200
