"""Why a server's firewall is not applied yet is stored in the panel's source language (the worker's own
reasons, such as a host that is down, are marked for translation) and shown on the staff server page in the
reader's language where the catalogue has it; libvirt's own messages are shown as they are."""

from __future__ import annotations

import pytest

from hypervisor.models import Host
from panel.models import Firewall
from panel.servers import actions, filter_sync, firewall
from tests import factories

pytestmark = pytest.mark.django_db

SSH = [{"protocol": "tcp", "ports": "22", "sources": ["203.0.113.0/24"]}]


@pytest.fixture
def server(customer, catalog):
    server = factories.make_server(customer, catalog)
    firewall.set_firewall(server, SSH, "drop", customer)
    return server


def test_a_down_host_is_the_stored_reason_shown_to_staff(client, server):
    Host.objects.filter(pk=server.host_id).update(state=Host.State.DOWN)
    assert firewall.apply_pending(server.pk) is False
    assert Firewall.objects.get(pk=server.pk).apply_error == filter_sync.HOST_DOWN == "the host is down"
    client.force_login(factories.make_user("staff"))
    page = client.get(f"/staff/servers/{server.pk}/").content.decode()
    assert "Not applied on the host yet (tried again within a minute): the host is down" in page


def test_a_stored_reason_is_shown_in_the_staff_members_language(client, server):
    Firewall.objects.filter(pk=server.pk).update(apply_error=actions.HOST_DOWN_TEXT)  # a translated text
    client.force_login(factories.make_user("staff", language="id"))
    page = client.get(f"/staff/servers/{server.pk}/").content.decode()
    assert "Belum diterapkan di host" in page
    assert "Host server ini tidak merespons" in page and actions.HOST_DOWN_TEXT not in page

    libvirt_says = "Failed to connect socket to '/var/run/libvirt/libvirt-sock': Connection refused"
    Firewall.objects.filter(pk=server.pk).update(apply_error=libvirt_says)
    page = client.get(f"/staff/servers/{server.pk}/").content.decode()
    assert "Failed to connect socket to &#x27;/var/run/libvirt/libvirt-sock&#x27;: Connection refused" in page
