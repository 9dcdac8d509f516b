"""GET servers/{id}/backup-policy/ answers the policy (disabled at first, keeping the default retention);
PUT turns backups on: the first run is the server's next slot (its own minute of the backup hour, in the
installation's time zone), the backup add-on starts at a share of the plan's price, and the retention
counts towards the `backups` quota. The same PUT again changes nothing and charges nothing; turning
backups off ends the add-on. A read token may look but not change."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import addons
from billing.models import InvoiceLine, SubscriptionAddon
from panel.accounts import quotas
from panel.backups import policies
from panel.models import ActivityEvent, ApiToken, BackupPolicy
from panel.servers import actions
from tests.panel.backup_policy_support import give_backup_target

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def rupiah(settings):
    settings.TIME_ZONE = "Asia/Jakarta"
    settings.PANEL_CURRENCY = "IDR"
    settings.BACKUP_HOUR = 2


@pytest.fixture
def server(customer, catalog, admin_user):
    give_backup_target(catalog["region"])
    addons.set_backup_share(Decimal("20"), admin_user)  # 20% of 50,000 a month
    return actions.order_server(
        customer, name="web1", plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )


def url(server) -> str:
    return f"/api/v1/servers/{server.pk}/backup-policy/"


def backup_addons(server):
    return SubscriptionAddon.objects.filter(subscription__reference=str(server.pk), kind="backup")


def test_backups_are_turned_on_billed_once_and_turned_off(api, customer, server):
    client = api(customer)
    answer = client.get(url(server)).json()
    assert answer == {
        "enabled": False,
        "schedule": "daily",
        "retention": 7,
        "price_monthly": "10000",
        "currency": "IDR",
        "next_run_at": None,
        "retention_max": 14,
        "available": True,
    }
    policy = policies.policy_of(server)  # not stored until it is set: reading it writes nothing
    assert (policy.minute, policy.weekday) == policies.spread(server.pk)
    assert 0 <= policy.minute < 60 and 0 <= policy.weekday < 7

    before = timezone.now()
    response = client.put(url(server), {"enabled": True, "schedule": "daily", "retention": 5}, format="json")
    assert response.status_code == 200, response.json()
    answer = response.json()
    assert (answer["enabled"], answer["schedule"], answer["retention"]) == (True, "daily", 5)
    # The next slot: 02:<minute> in Jakarta, within the next day.
    first = datetime.fromisoformat(answer["next_run_at"]).astimezone(timezone.get_current_timezone())
    assert (first.hour, first.minute) == (2, policy.minute)
    assert before < first <= before + timedelta(days=1)

    [addon] = backup_addons(server)
    assert (addon.key, addon.price, addon.ended_at) == ("backups", Decimal("10000"), None)
    charged = InvoiceLine.objects.filter(invoice__account=customer, kind=InvoiceLine.Kind.ADDON).count()
    assert charged == 1  # the rest of the first month, pro rata
    assert quotas.usage(customer, ("backups",)) == {"backups": 5}
    event = ActivityEvent.objects.filter(account=customer, target=f"server:{server.pk}").first()
    assert event.text == "Turned on daily backups of server web1, keeping 5."

    # The same again: nothing changes, nothing is charged again.
    again = client.put(url(server), {"enabled": True, "schedule": "daily", "retention": 5}, format="json")
    assert again.json() == answer
    assert backup_addons(server).count() == 1
    assert InvoiceLine.objects.filter(invoice__account=customer, kind=InvoiceLine.Kind.ADDON).count() == 1

    # Weekly, keeping 3: the next run moves to the server's weekday; the add-on runs on as it was.
    answer = client.put(url(server), {"schedule": "weekly", "retention": 3}, format="json").json()
    weekly = datetime.fromisoformat(answer["next_run_at"]).astimezone(timezone.get_current_timezone())
    assert (weekly.weekday(), weekly.hour, weekly.minute) == (policy.weekday, 2, policy.minute)
    assert timezone.now() < weekly <= timezone.now() + timedelta(days=7)
    assert backup_addons(server).count() == 1
    assert quotas.usage(customer, ("backups",)) == {"backups": 3}

    # Off: the add-on ends, no run is due, nothing counts towards the quota.
    answer = client.put(url(server), {"enabled": False}, format="json").json()
    assert (answer["enabled"], answer["next_run_at"]) == (False, None)
    [addon] = backup_addons(server)
    assert addon.ended_at is not None
    assert quotas.usage(customer, ("backups",)) == {"backups": 0}
    assert (
        ActivityEvent.objects.filter(account=customer).first().text
        == "Turned off the backups of server web1."
    )


def test_without_a_share_backups_are_free(api, customer, server, admin_user):
    addons.set_backup_share(None, admin_user)
    client = api(customer)
    assert client.get(url(server)).json()["price_monthly"] == "0"
    client.put(url(server), {"enabled": True, "schedule": "daily", "retention": 7}, format="json")
    [addon] = backup_addons(server)
    assert addon.price == 0
    assert not InvoiceLine.objects.filter(invoice__account=customer, kind=InvoiceLine.Kind.ADDON).exists()


def test_a_read_token_may_look_but_not_change(customer, server):
    from rest_framework.test import APIClient

    token, raw = ApiToken.issue(customer, "ci")
    ApiToken.objects.filter(pk=token.pk).update(scope=ApiToken.Scope.READ)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get(url(server)).status_code == 200
    response = client.put(url(server), {"enabled": True}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "read_only_token"
    assert not BackupPolicy.objects.filter(pk=server.pk, enabled=True).exists()
    assert client.get(f"/api/v1/servers/{server.pk}/backups/").status_code == 200


def test_another_customers_server_is_not_found(api, other_customer, server):
    client = api(other_customer)
    assert client.get(url(server)).status_code == 404
    assert client.put(url(server), {"enabled": True}, format="json").status_code == 404
    assert client.get(f"/api/v1/servers/{server.pk}/backups/").status_code == 404
    assert not BackupPolicy.objects.filter(pk=server.pk, enabled=True).exists()
