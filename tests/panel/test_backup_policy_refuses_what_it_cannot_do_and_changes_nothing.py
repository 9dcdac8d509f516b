"""PUT servers/{id}/backup-policy/ refuses, changing nothing (no add-on, no quota used): bad values (400,
the field named), a region without a backup target (422), more backups than the customer's `backups`
quota (422 over_quota), a prepaid account without the credit for the first charge (422
insufficient_credit), and a server deleted or being deleted (409)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import addons
from billing.models import SubscriptionAddon
from panel.accounts import quotas
from panel.models import BackupPolicy, Server
from panel.servers import actions
from tests.panel.backup_policy_support import give_backup_target

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def rupiah(settings):
    settings.PANEL_CURRENCY = "IDR"


def order(customer, catalog, name: str = "web1") -> Server:
    return actions.order_server(
        customer, name=name, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )


def put(client, server, body):
    return client.put(f"/api/v1/servers/{server.pk}/backup-policy/", body, format="json")


def nothing_changed(customer, server, used: int = 0) -> bool:
    return (
        not BackupPolicy.objects.filter(pk=server.pk, enabled=True).exists()
        and not SubscriptionAddon.objects.filter(
            subscription__reference=str(server.pk), kind="backup"
        ).exists()
        and quotas.usage(customer, ("backups",)) == {"backups": used}
    )


@pytest.mark.parametrize(
    "body, field, message",
    [
        ({"enabled": True, "schedule": "hourly", "retention": 7}, "schedule", "Choose daily or weekly."),
        ({"enabled": True, "schedule": "daily", "retention": 0}, "retention", "Keep from 1 to 14 backups."),
        ({"enabled": True, "schedule": "daily", "retention": 15}, "retention", "Keep from 1 to 14 backups."),
        (
            {"enabled": True, "schedule": "daily", "retention": "many"},
            "retention",
            "A valid integer is required.",
        ),
        ({"enabled": "perhaps", "schedule": "daily", "retention": 7}, "enabled", "Must be a valid boolean."),
    ],
)
def test_bad_values_name_their_field(api, customer, catalog, body, field, message):
    give_backup_target(catalog["region"])
    server = order(customer, catalog)
    response = put(api(customer), server, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["fields"] == {field: [message]}
    assert nothing_changed(customer, server)


def test_a_region_without_a_backup_target_has_no_backups(api, customer, catalog):
    server = order(customer, catalog)
    client = api(customer)
    assert client.get(f"/api/v1/servers/{server.pk}/backup-policy/").json()["available"] is False
    response = put(client, server, {"enabled": True, "schedule": "daily", "retention": 7})
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "backups_unavailable",
        "message": "Backups are not available in this region",
    }
    assert nothing_changed(customer, server)
    # Settings of a policy that stays off may change.
    response = put(client, server, {"enabled": False, "schedule": "weekly", "retention": 3})
    assert response.status_code == 200 and response.json()["retention"] == 3


def test_the_backups_quota_counts_the_retentions_of_enabled_policies(api, customer, staff, catalog):
    give_backup_target(catalog["region"])
    quotas.set_limits(customer, {"backups": 10}, by=staff)
    first, second = order(customer, catalog, "web1"), order(customer, catalog, "web2")
    client = api(customer)
    assert put(client, first, {"enabled": True, "schedule": "daily", "retention": 7}).status_code == 200
    response = put(client, second, {"enabled": True, "schedule": "daily", "retention": 4})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "over_quota"
    assert error["message"] == ("Your quota allows 10 backups kept; you use 7 and this needs 4 more.")
    assert nothing_changed(customer, second, used=7)
    assert put(client, second, {"enabled": True, "schedule": "daily", "retention": 3}).status_code == 200
    # Growing a retention counts only the difference; shrinking one always fits.
    assert put(client, first, {"enabled": True, "schedule": "daily", "retention": 8}).status_code == 422
    assert put(client, first, {"enabled": True, "schedule": "daily", "retention": 2}).status_code == 200
    assert quotas.report(customer)["backups"] == {"limit": 10, "used": 5}
    account = client.get("/api/v1/account/").json()
    assert account["quota"]["backups"] == {"limit": 10, "used": 5}


def test_a_prepaid_account_needs_the_credit_for_the_first_charge(
    api, customer, catalog, admin_user, settings
):
    give_backup_target(catalog["region"])
    server = order(customer, catalog)
    settings.BILLING_ORDER_POLICY = "prepaid"
    addons.set_backup_share(Decimal("50"), admin_user)
    response = put(api(customer), server, {"enabled": True, "schedule": "daily", "retention": 7})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "insufficient_credit"
    assert error["message"].startswith("Insufficient credit: the backup service costs")
    assert nothing_changed(customer, server)


def test_a_server_deleted_or_being_deleted_is_a_conflict(api, customer, catalog):
    give_backup_target(catalog["region"])
    server = order(customer, catalog)
    client = api(customer)
    Server.objects.filter(pk=server.pk).update(status=Server.Status.DELETING, task="delete")
    response = put(client, server, {"enabled": True, "schedule": "daily", "retention": 7})
    assert (
        response.status_code == 409 and response.json()["error"]["message"] == "This server is being deleted."
    )
    Server.objects.filter(pk=server.pk).update(status=Server.Status.DELETED, task=None)
    response = put(client, server, {"enabled": True, "schedule": "daily", "retention": 7})
    assert (
        response.status_code == 409 and response.json()["error"]["message"] == "This server has been deleted."
    )
    assert nothing_changed(customer, server)
