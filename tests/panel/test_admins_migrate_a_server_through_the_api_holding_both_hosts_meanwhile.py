"""An admin asks for a server's migration through the API (POST admin/servers/{id}/migrate/): 202 and the
action (live for a running server, cold for a stopped one), the server keeps its status with the task
`migrate`, and it holds capacity on both hosts until the operation ends; a second request meanwhile is a 409.
Customers see maintenance, not where their server goes; billing does not change."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing.models import Subscription
from panel.models import ActivityEvent, Operation, Server
from panel.servers import migration
from tests import factories
from tests.panel.migration_support import MIGRATE, held, source_uri, target_uri, two_hosts_and_a_server, used

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(customer, tmp_path):
    with factories.TidySimulatedHost(source_uri(tmp_path)), factories.TidySimulatedHost(target_uri(tmp_path)):
        yield two_hosts_and_a_server(customer, tmp_path)


def subscriptions(server: Server) -> list[tuple]:
    return list(
        Subscription.objects.filter(reference=str(server.id)).values_list("plan_id", "status", "paid_through")
    )


def test_a_running_server_moves_live_to_the_host_asked_for(api, admin_user, customer, world, settings):
    settings.MIGRATION_MAX_BANDWIDTH_MIB = 0
    server, source, target = world.server, world.source, world.target
    billed = subscriptions(server)
    response = api(admin_user).post(
        MIGRATE.format(server.pk),
        {"host": target.pk, "max_bandwidth_mib": 50, "timeout_seconds": 600},
        format="json",
    )
    assert response.status_code == 202, response.json()
    action = response.json()
    assert {key: action[key] for key in ("type", "status", "error", "finished_at", "mode", "progress")} == {
        "type": "migrate",
        "status": "pending",
        "error": "",
        "finished_at": None,
        "mode": "live",
        "progress": {},
    }
    operation = Operation.objects.get(pk=action["id"])
    assert {
        key: operation.params[key] for key in ("source_host", "target_host", "live", "max_bandwidth_mib")
    } == {
        "source_host": source.pk,
        "target_host": target.pk,
        "live": True,
        "max_bandwidth_mib": 50,
    }
    assert operation.params["timeout_seconds"] == 600
    # Long enough for the admin's time limit and a margin (the reaper gives it up only after that).
    assert operation.deadline - operation.created_at > timedelta(seconds=600)

    server.refresh_from_db()
    assert (server.status, server.task, server.host_id) == ("running", "migrate", source.pk)
    assert held(server) == {"source": (1, 256, 1), "target": (1, 256, 1)}
    assert used(source) == used(target) == (1, 256, 1)
    assert subscriptions(server) == billed  # no billing change

    # Admins read where it goes on the audit log; its owner's log says nothing of hosts.
    audit = ActivityEvent.objects.get(summary=migration.LIVE_SUMMARY)
    assert (audit.actor, audit.staff_action, audit.account) == (admin_user, True, None)
    assert (audit.data["source"], audit.data["target"]) == ("source", "target")
    own = ActivityEvent.objects.filter(account=customer, type=ActivityEvent.Type.SERVER_ACTION).get()
    assert own.text == "Moved server web1.example to another host for maintenance."
    assert not own.staff_action  # one audit event: the one that names the hosts
    for event in ActivityEvent.objects.filter(account=customer):
        assert "source" not in event.text and "target" not in event.text

    # The customer's API: their server is busy with the migration; its host is not theirs to know.
    mine = api(customer).get(f"/api/v1/servers/{server.pk}/").json()
    assert (mine["status"], mine["task"]) == ("running", "migrate")
    assert "host" not in mine
    listed = api(admin_user).get("/api/v1/admin/servers/").json()["results"]
    assert [row["host"] for row in listed if row["id"] == str(server.pk)] == ["source"]


def test_without_a_host_placement_picks_another_host_of_the_region(api, admin_user, world, settings):
    settings.MIGRATION_MAX_BANDWIDTH_MIB = 7
    settings.MIGRATION_TIMEOUT_SECONDS = 120
    response = api(admin_user).post(MIGRATE.format(world.server.pk), {}, format="json")
    assert response.status_code == 202, response.json()
    operation = Operation.objects.get(pk=response.json()["id"])
    # Never its own host, even though the source has the most memory free.
    assert operation.params["target_host"] == world.target.pk
    assert (operation.params["max_bandwidth_mib"], operation.params["timeout_seconds"]) == (7, 120)
    assert held(world.server) == {"source": (1, 256, 1), "target": (1, 256, 1)}


def test_a_stopped_server_moves_cold(api, admin_user, customer, tmp_path):
    with factories.TidySimulatedHost(source_uri(tmp_path)), factories.TidySimulatedHost(target_uri(tmp_path)):
        world = two_hosts_and_a_server(customer, tmp_path, status=Server.Status.STOPPED)
        response = api(admin_user).post(
            MIGRATE.format(world.server.pk), {"host": world.target.pk}, format="json"
        )
    assert response.status_code == 202, response.json()
    assert (response.json()["mode"], response.json()["type"]) == ("cold", "migrate")
    world.server.refresh_from_db()
    assert (world.server.status, world.server.task) == ("stopped", "migrate")
    assert audit_summaries() == [migration.COLD_SUMMARY]


def audit_summaries() -> list[str]:
    return list(
        ActivityEvent.objects.filter(staff_action=True, account=None).values_list("summary", flat=True)
    )


def test_a_second_request_while_one_runs_is_a_409_and_claims_nothing_more(api, admin_user, world):
    first = api(admin_user).post(MIGRATE.format(world.server.pk), {"host": world.target.pk}, format="json")
    assert first.status_code == 202
    second = api(admin_user).post(MIGRATE.format(world.server.pk), {}, format="json")
    assert second.status_code == 409, second.json()
    assert second.json()["error"]["code"] == "conflict"
    assert Operation.objects.filter(server=world.server, type="migrate").count() == 1
    assert held(world.server) == {"source": (1, 256, 1), "target": (1, 256, 1)}
    # Nor does any other action start meanwhile.
    busy = api(world.server.owner).post(
        f"/api/v1/servers/{world.server.pk}/actions/", {"type": "reboot"}, format="json"
    )
    assert busy.status_code == 409
