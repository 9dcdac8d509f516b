"""The host page: admins get a Drain button (with the bandwidth and time limits) on a host that answers and
an Evacuate button on a host that is down, each asking first (without JavaScript on a page of its own);
staff get neither and are refused the actions. While a move runs the page shows how far it is (moved,
moving, waiting of all, a progress bar) and which servers could not move and why, refreshed by polling a
fragment that stops once the move has finished."""

from __future__ import annotations

import pytest
from django.urls import reverse

from hypervisor.models import Host
from panel.infrastructure import host_moves
from panel.models import HostMove, HostMoveItem
from tests import factories

pytestmark = pytest.mark.django_db


def page(client, host: Host) -> str:
    response = client.get(reverse("host-detail", args=[host.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_admins_get_a_drain_button_on_a_host_that_answers_and_an_evacuate_button_on_a_down_one(
    client, admin_user, catalog
):
    host = catalog["host"]
    client.force_login(admin_user)

    html = page(client, host)

    assert reverse("host-drain", args=[host.pk]) in html and 'name="timeout_seconds"' in html
    assert reverse("host-evacuate", args=[host.pk]) not in html
    Host.objects.filter(pk=host.pk).update(state=Host.State.DOWN)
    html = page(client, host)
    assert reverse("host-evacuate", args=[host.pk]) in html and "data-confirm" in html
    assert reverse("host-drain", args=[host.pk]) not in html


def test_staff_see_no_buttons_and_are_refused_the_actions(client, staff, customer, catalog):
    host = catalog["host"]
    factories.make_server(customer, catalog)
    client.force_login(staff)

    html = page(client, host)

    assert reverse("host-drain", args=[host.pk]) not in html and 'id="host-move"' not in html
    assert client.post(reverse("host-drain", args=[host.pk]), {"confirmed": "yes"}).status_code == 403
    assert client.post(reverse("host-evacuate", args=[host.pk]), {"confirmed": "yes"}).status_code == 403
    assert not HostMove.objects.exists()


def test_a_drain_asks_first_then_starts_with_the_limits_given(client, admin_user, customer, catalog):
    host = catalog["host"]
    factories.make_server(customer, catalog)
    client.force_login(admin_user)
    url = reverse("host-drain", args=[host.pk])

    asked = client.post(url, {"max_bandwidth_mib": "100", "timeout_seconds": ""})

    assert asked.status_code == 200 and "Drain" in asked.content.decode()
    assert not HostMove.objects.exists()
    done = client.post(url, {"max_bandwidth_mib": "100", "timeout_seconds": "", "confirmed": "yes"})
    assert done.status_code == 302
    move = HostMove.objects.get(host=host)
    assert (move.kind, move.max_bandwidth_mib, move.items.count()) == ("drain", 100, 1)
    host.refresh_from_db()
    assert host.maintenance
    bad = client.post(url, {"timeout_seconds": "1", "confirmed": "yes"}, follow=True)
    assert "not started" in bad.content.decode() and HostMove.objects.count() == 1


def test_an_evacuation_asks_first_then_starts(client, admin_user, customer, catalog):
    host = catalog["host"]
    factories.make_server(customer, catalog)
    Host.objects.filter(pk=host.pk).update(state=Host.State.DOWN)
    client.force_login(admin_user)
    url = reverse("host-evacuate", args=[host.pk])

    asked = client.post(url, {})

    assert asked.status_code == 200 and "gone for good" in asked.content.decode()
    assert not HostMove.objects.exists()
    assert client.post(url, {"confirmed": "yes"}).status_code == 302
    assert HostMove.objects.get(host=host).kind == "evacuate"
    host.refresh_from_db()
    assert (host.enabled, host.maintenance) == (False, True)


def test_staff_follow_a_running_move_and_see_why_servers_could_not_move(client, staff, customer, catalog):
    host = catalog["host"]
    servers = [factories.make_server(customer, catalog, f"web{n}.example") for n in range(4)]
    move = host_moves.start_drain(host, None)
    items = {item.server_id: item for item in move.items.all()}
    HostMoveItem.objects.filter(pk=items[servers[0].pk].pk).update(status=HostMoveItem.Status.MOVED)
    HostMoveItem.objects.filter(pk=items[servers[1].pk].pk).update(
        status=HostMoveItem.Status.FAILED, reason=host_moves.HOST_WENT_DOWN
    )
    HostMoveItem.objects.filter(pk=items[servers[2].pk].pk).update(status=HostMoveItem.Status.MOVING)
    client.force_login(staff)

    html = page(client, host)

    fragment = reverse("host-move", args=[host.pk])
    assert f'hx-get="{fragment}"' in html  # polled while it runs
    assert "2 of 4 servers done" in html
    assert "1 moved · 1 moving · 1 waiting · 1 could not move" in html
    assert 'aria-valuenow="50"' in html
    assert "web1.example" in html and host_moves.HOST_WENT_DOWN in html
    polled = client.get(fragment)
    assert polled.status_code == 200 and "web1.example" in polled.content.decode()

    HostMove.objects.filter(pk=move.pk).update(status=HostMove.Status.FINISHED)
    finished = client.get(fragment).content.decode()
    assert "hx-get" not in finished and "web1.example" in finished


def test_customers_never_reach_the_move_fragment(client, customer, catalog):
    client.force_login(customer)
    assert client.get(reverse("host-move", args=[catalog["host"].pk])).status_code in (403, 404)
