"""Draining and evacuating a host are admin actions: staff and customers get 403 and change nothing; an
unknown host is a 404; a second move of a host while one runs is a 409; a host that is down is evacuated,
not drained (409 pointing to evacuation), and a host that answers is drained, not evacuated; limits out of
range are a 400. None of these refusals changes the host or starts anything."""

from __future__ import annotations

import pytest

from hypervisor.models import Host
from panel.models import HostMove
from tests import factories

pytestmark = pytest.mark.django_db


def drain(client, host_id: int, **body):
    return client.post(f"/api/v1/admin/hosts/{host_id}/drain/", body, format="json")


def evacuate(client, host_id: int):
    return client.post(f"/api/v1/admin/hosts/{host_id}/evacuate/", {}, format="json")


def unchanged(host: Host) -> None:
    current = Host.objects.get(pk=host.pk)
    assert (current.maintenance, current.enabled) == (host.maintenance, host.enabled)
    assert not HostMove.objects.filter(host=host).exists()


def test_staff_and_customers_get_403(api, staff, customer, catalog):
    host = catalog["host"]
    factories.make_server(customer, catalog)
    for user in (staff, customer):
        assert drain(api(user), host.pk).status_code == 403
        assert evacuate(api(user), host.pk).status_code == 403
    assert drain(api(None), host.pk).status_code in (401, 403)
    unchanged(host)


def test_an_unknown_host_is_a_404(api, admin_user, catalog):
    assert drain(api(admin_user), 999999).status_code == 404
    assert evacuate(api(admin_user), 999999).status_code == 404


def test_a_second_drain_while_one_runs_is_a_409(api, admin_user, customer, catalog):
    host = catalog["host"]
    factories.make_server(customer, catalog)
    assert drain(api(admin_user), host.pk).status_code == 202

    second = drain(api(admin_user), host.pk)

    assert second.status_code == 409
    assert second.json()["error"]["code"] == "move_running"
    assert HostMove.objects.filter(host=host).count() == 1


def test_a_down_host_is_evacuated_not_drained(api, admin_user, customer, catalog):
    host = catalog["host"]
    Host.objects.filter(pk=host.pk).update(state=Host.State.DOWN)
    host.refresh_from_db()

    response = drain(api(admin_user), host.pk)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "host_down"
    assert "Evacuate" in response.json()["error"]["message"]
    unchanged(host)


def test_a_host_that_answers_is_drained_not_evacuated(api, admin_user, catalog):
    host = catalog["host"]

    response = evacuate(api(admin_user), host.pk)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "host_not_down"
    assert "Drain" in response.json()["error"]["message"]
    unchanged(host)


@pytest.mark.parametrize(
    "body", [{"timeout_seconds": 5}, {"max_bandwidth_mib": -1}, {"timeout_seconds": "soon"}]
)
def test_limits_out_of_range_are_a_400(api, admin_user, catalog, body):
    host = catalog["host"]

    response = drain(api(admin_user), host.pk, **body)

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) <= {"timeout_seconds", "max_bandwidth_mib"}
    unchanged(host)
