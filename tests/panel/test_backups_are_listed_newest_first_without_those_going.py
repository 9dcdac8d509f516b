"""GET servers/{id}/backups/ lists the server's backups newest first, as the API lists everything (count,
next, previous, results), with their status, kind, size, trigger and times; backups marked to go are not
listed, nor other servers' backups."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework import serializers

from panel.models import Backup
from tests import factories
from tests.panel.backup_policy_support import give_backup_target, make_backup

pytestmark = pytest.mark.django_db


def test_backups_are_listed_newest_first(api, customer, catalog):
    give_backup_target(catalog["region"])
    server = factories.make_server(customer, catalog)
    other = factories.make_server(customer, catalog, name="web2")
    now = timezone.now()
    full = make_backup(server, now - timedelta(days=2))
    incremental = make_backup(server, now - timedelta(days=1), kind=Backup.Kind.INCREMENTAL, parent=full)
    failed = make_backup(server, now - timedelta(hours=2), status=Backup.Status.FAILED, trigger="manual")
    running = make_backup(server, now - timedelta(minutes=1), status=Backup.Status.RUNNING)
    make_backup(server, now - timedelta(days=3), delete_after=now)  # going: not listed
    make_backup(other, now)  # another server's

    answer = api(customer).get(f"/api/v1/servers/{server.pk}/backups/").json()
    assert (answer["count"], answer["next"], answer["previous"]) == (4, None, None)
    assert [row["id"] for row in answer["results"]] == [running.pk, failed.pk, incremental.pk, full.pk]
    stamp = serializers.DateTimeField().to_representation
    assert answer["results"][2] == {
        "id": incremental.pk,
        "created_at": stamp(incremental.created_at),
        "status": "succeeded",
        "size_bytes": 1024,
        "kind": "incremental",
        "completed_at": stamp(incremental.completed_at),
        "trigger": "manual",
    }
    assert answer["results"][0]["status"] == "running" and answer["results"][0]["completed_at"] is None
    assert answer["results"][1]["size_bytes"] is None


def test_a_server_without_backups_lists_none(api, customer, catalog):
    server = factories.make_server(customer, catalog)
    answer = api(customer).get(f"/api/v1/servers/{server.pk}/backups/").json()
    assert answer == {"count": 0, "next": None, "previous": None, "results": []}
