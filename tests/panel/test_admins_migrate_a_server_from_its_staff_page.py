"""Admins move a server from its staff page: the Migrate form (the other ready hosts of its region with
their free memory, or any; the bandwidth cap and the time limit) is shown to admins only and only while the
server can move; posting it starts the migration and comes back with a message, bad input comes back as
form errors and changes nothing. While it runs, staff see where it goes, how far it is and what is left;
its owner sees maintenance, without hosts."""

from __future__ import annotations

import re

import pytest

from hypervisor.models import Allocation
from panel.models import Operation, Server
from tests import factories
from tests.panel.migration_support import held, source_uri, target_uri, two_hosts_and_a_server

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(customer, tmp_path):
    with factories.TidySimulatedHost(source_uri(tmp_path)), factories.TidySimulatedHost(target_uri(tmp_path)):
        yield two_hosts_and_a_server(customer, tmp_path)


def page(client, server: Server) -> str:
    response = client.get(f"/staff/servers/{server.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def migrate(client, server: Server, **data):
    return client.post(f"/staff/servers/{server.pk}/migrate/", data, follow=True)


def test_the_form_is_for_admins_and_offers_the_other_hosts(client, admin_user, staff, customer, world):
    client.force_login(admin_user)
    shown = page(client, world.server)
    assert f'action="/staff/servers/{world.server.pk}/migrate/"' in shown
    assert "Any host: the panel chooses" in shown
    assert f'<option value="{world.target.pk}">target (8192 MiB of memory free)</option>' in shown
    assert f'<option value="{world.source.pk}"' not in shown  # never its own host

    client.force_login(staff)
    assert "/migrate/" not in page(client, world.server)
    assert migrate(client, world.server, host=world.target.pk).status_code == 403

    client.force_login(customer)
    assert client.get(f"/staff/servers/{world.server.pk}/").status_code == 403
    assert migrate(client, world.server, host=world.target.pk).status_code == 403
    assert not Operation.objects.filter(type="migrate").exists()


def test_posting_the_form_starts_the_migration(client, admin_user, customer, world):
    client.force_login(admin_user)
    response = migrate(client, world.server, host=world.target.pk, max_bandwidth_mib=100, timeout_seconds=900)
    assert response.redirect_chain == [(f"/staff/servers/{world.server.pk}/", 302)]
    shown = response.content.decode()
    assert "web1.example is moving to target." in shown
    operation = Operation.objects.get(type="migrate")
    assert (operation.params["target_host"], operation.params["max_bandwidth_mib"]) == (world.target.pk, 100)
    assert operation.params["timeout_seconds"] == 900
    assert held(world.server) == {"source": (1, 256, 1), "target": (1, 256, 1)}

    # While it runs: the page follows it (no form now), with where it goes and, once the copy has begun,
    # how much is left.
    shown = page(client, world.server)
    assert "Live migration from source to target." in shown
    assert "remaining" not in shown
    Operation.objects.filter(pk=operation.pk).update(
        status=Operation.Status.RUNNING,
        progress={
            "percent": 40,
            "bytes_done": 429496730,
            "bytes_total": 1073741824,
            "bytes_remaining": 644245094,
        },
    )
    shown = page(client, world.server)
    assert "Live migration from source to target." in shown
    assert "0.60 GiB remaining." in shown
    assert 'aria-valuenow="40"' in shown
    assert "/migrate/" not in shown

    # Its owner sees maintenance and the progress, not where it goes.
    client.force_login(customer)
    mine = client.get(f"/servers/{world.server.pk}/").content.decode()
    assert "Maintenance: moving your server…" in mine
    assert 'aria-valuenow="40"' in mine
    assert world.target.name not in strip_markup(mine)
    assert world.source.name not in strip_markup(mine)


def strip_markup(html: str) -> str:
    """The page's text, without its markup."""
    text = re.sub(r"<script.*?</script>", " ", html, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text)
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"timeout_seconds": 5, "max_bandwidth_mib": 0}, "timeout_seconds"),
        ({"timeout_seconds": 600, "max_bandwidth_mib": -1}, "max_bandwidth_mib"),
        ({"timeout_seconds": 600, "max_bandwidth_mib": 0, "host": "999999"}, "host"),
        ({"timeout_seconds": "", "max_bandwidth_mib": 0}, "timeout_seconds"),
    ],
)
def test_bad_input_is_a_form_error_and_changes_nothing(client, admin_user, world, data, field):
    client.force_login(admin_user)
    response = client.post(f"/staff/servers/{world.server.pk}/migrate/", data)
    assert response.status_code == 200
    shown = response.content.decode()
    assert "The server was not moved: please correct the errors below." in shown
    assert response.context["migrate_form"].errors.keys() == {field}
    assert "field--invalid" in shown
    assert not Operation.objects.filter(type="migrate").exists()
    assert Allocation.objects.filter(consumer_uuid=world.server.pk).count() == 1


def test_a_refusal_comes_back_as_a_message(client, admin_user, world):
    client.force_login(admin_user)
    form_page = page(client, world.server)
    assert "/migrate/" in form_page
    factories.set_host_size(world.target, memory_mib=128)  # no room any more since the page was shown
    response = migrate(client, world.server, max_bandwidth_mib=0, timeout_seconds=600)
    assert "No other host in this region can take this server now." in response.content.decode()
    assert not Operation.objects.filter(type="migrate").exists()
