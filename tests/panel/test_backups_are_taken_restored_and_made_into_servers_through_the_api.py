"""The backup actions through the public API on a simulated host (libvirt's test driver moves no data; the
real path is proven on the real libvirtd): `backup` answers 202 with the action and its progress, the
backup is listed succeeded once done; `restore_backup` puts it back; `POST servers/` with `backup` instead
of `image` orders a new server from it. What a customer may not do changes nothing."""

from __future__ import annotations

import pytest

from hypervisor.models import BackupTarget, Host, Region
from panel.models import Backup, Operation, Server
from tests import factories
from tests.panel.backup_policy_support import give_backup_target

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(api, customer, catalog):
    with factories.TidySimulatedHost(catalog["host"].uri):
        give_backup_target(catalog["region"])
        body = {"name": "toko", "plan": catalog["plan"].slug, "image": catalog["image"].slug,
                "region": catalog["region"].slug}  # fmt: skip
        response = api(customer).post("/api/v1/servers/", body, format="json")
        assert response.status_code == 202, response.json()
        server = Server.objects.get(pk=response.json()["id"])
        factories.run_operation(Operation.objects.get(server=server, type="create"))
        answer = api(customer).put(
            f"/api/v1/servers/{server.id}/backup-policy/",
            {"enabled": True, "schedule": "daily", "retention": 3},
            format="json",
        )
        assert answer.status_code == 200, answer.json()
        yield server


def act(api, user, server, **body):
    return api(user).post(f"/api/v1/servers/{server.id}/actions/", body, format="json")


def run(response) -> Operation:
    assert response.status_code == 202, response.json()
    operation = factories.run_operation(Operation.objects.get(pk=response.json()["id"]))
    assert operation.status == "succeeded", (operation.error, operation.detail)
    return operation


def test_a_backup_is_taken_listed_restored_and_made_into_a_new_server(api, customer, catalog, server):
    response = act(api, customer, server, type="backup")
    assert response.json()["type"] == "backup" and "progress" in response.json()
    operation = run(response)
    listed = api(customer).get(f"/api/v1/servers/{server.id}/backups/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    (row,) = rows
    assert (row["status"], row["kind"]) == ("succeeded", "full")
    backup = Backup.objects.get(pk=row["id"])
    assert backup.operation_id == operation.pk and backup.sha256 and backup.location

    run(act(api, customer, server, type="restore_backup", backup=backup.pk))
    server.refresh_from_db()
    assert (server.status, server.task) == ("running", None)

    response = api(customer).post(
        "/api/v1/servers/",
        {"name": "toko-copy", "plan": catalog["plan"].slug, "backup": backup.pk},
        format="json",
    )
    assert response.status_code == 202, response.json()
    copy = Server.objects.get(pk=response.json()["id"])
    assert (copy.region_id, copy.image_id) == (server.region_id, server.image_id)
    create = Operation.objects.get(server=copy, type="create")
    assert create.params["backup"] == backup.pk
    assert factories.run_operation(create).status == "succeeded"
    copy.refresh_from_db()
    assert copy.status == "running"


def test_customers_cannot_use_backups_that_are_not_theirs(api, customer, other_customer, catalog, server):
    run(act(api, customer, server, type="backup"))
    backup = Backup.objects.get(server=server)
    assert api(other_customer).get(f"/api/v1/servers/{server.id}/backups/").status_code == 404
    response = api(other_customer).post(
        "/api/v1/servers/",
        {"name": "thief", "plan": catalog["plan"].slug, "backup": backup.pk},
        format="json",
    )
    assert response.status_code == 400 and "backup" in response.json()["error"]["fields"]
    assert not Server.objects.filter(owner=other_customer).exists()
    response = api(customer).post(
        "/api/v1/servers/",
        {"name": "both", "plan": catalog["plan"].slug, "backup": backup.pk, "image": catalog["image"].slug},
        format="json",
    )
    assert response.status_code == 400


def test_a_backup_is_refused_without_a_policy_a_target_or_off_its_host(api, customer, catalog, server):
    server.backup_policy.enabled = False
    server.backup_policy.save()
    response = act(api, customer, server, type="backup")
    assert response.status_code == 422 and "Enable backups" in response.json()["error"]["message"]
    server.backup_policy.enabled = True
    server.backup_policy.save()

    target = catalog["region"].backup_target
    BackupTarget.objects.filter(pk=target.pk).update(host=server.host)  # a pool on the server's own host
    response = act(api, customer, server, type="backup")
    assert response.status_code == 422 and "own host" in response.json()["error"]["message"]

    Region.objects.filter(pk=catalog["region"].pk).update(backup_target=None)
    response = act(api, customer, server, type="backup")
    assert response.status_code == 422
    assert not Backup.objects.filter(server=server).exists()
    assert not Operation.objects.filter(server=server, type="backup").exists()
    response = act(api, customer, server, type="restore_backup", backup=12345)
    assert response.status_code == 422


def test_a_lost_hosts_server_is_made_again_from_its_backup_on_another_host(api, customer, catalog, server):
    run(act(api, customer, server, type="backup"))
    backup = Backup.objects.get(server=server)
    with factories.TidySimulatedHost(catalog["host"].uri):
        other = factories.make_host(region=catalog["region"], name="spare")
        Host.objects.filter(pk=server.host_id).update(state=Host.State.DOWN)  # the server's host is lost
        response = api(customer).post(
            "/api/v1/servers/", {"name": "toko-again", "plan": catalog["plan"].slug, "backup": backup.pk},
            format="json",
        )  # fmt: skip
        assert response.status_code == 202, response.json()
        again = Server.objects.get(pk=response.json()["id"])
        assert again.host_id == other.pk
        assert (
            factories.run_operation(Operation.objects.get(server=again, type="create")).status == "succeeded"
        )


def test_a_backup_beyond_the_retention_lets_the_oldest_go_at_once(api, customer, server):
    response = api(customer).put(
        f"/api/v1/servers/{server.id}/backup-policy/", {"retention": 1}, format="json"
    )
    assert response.status_code == 200, response.json()
    run(act(api, customer, server, type="backup"))
    first = Backup.objects.get(server=server)
    run(act(api, customer, server, type="backup"))
    listed = api(customer).get(f"/api/v1/servers/{server.id}/backups/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [row["id"] for row in rows] == [Backup.objects.exclude(pk=first.pk).get(server=server).pk]
    first.refresh_from_db()
    assert first.delete_after is not None
