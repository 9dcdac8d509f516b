"""Orders, actions, SSH keys, payments and staff's changes are recorded in the activity log, in the
transaction that makes them; staff's acts on someone else's account are on the audit log too."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import payments
from panel.models import ActivityEvent
from panel.servers import actions

from .. import factories

pytestmark = pytest.mark.django_db


def types(**filters) -> list[str]:
    return list(ActivityEvent.objects.filter(**filters).order_by("id").values_list("type", flat=True))


def test_a_customers_own_doings(api, customer, catalog):
    client = api(customer)
    key = client.post(
        "/api/v1/ssh-keys/", {"name": "laptop", "public_key": factories.ED25519_KEY}, format="json"
    )
    client.delete(f"/api/v1/ssh-keys/{key.json()['id']}/")
    client.post(
        "/api/v1/servers/", {"name": "web1", "plan": catalog["plan"].slug, "image": catalog["image"].slug},
        format="json",
    )  # fmt: skip
    running = factories.make_server(customer, catalog, name="web2")
    client.post(f"/api/v1/servers/{running.pk}/actions/", {"type": "reboot"}, format="json")

    assert types(account=customer) == ["ssh_key_added", "ssh_key_deleted", "server_ordered", "server_action"]
    assert not ActivityEvent.objects.filter(staff_action=True).exists()


def test_staff_doings_are_on_the_audit_log(api, client, staff, admin_user, customer, catalog):
    server = factories.make_server(customer, catalog)
    actions.suspend_server(server, "abuse report", staff)
    payments.record_payment(customer, Decimal("1000"), "bank-1", by=staff)
    payments.adjust(customer, Decimal("500"), "goodwill", by=staff)
    api(staff).put(
        f"/api/v1/admin/customers/{customer.pk}/quota/",
        {"servers": 3, "vcpus": None, "memory_mib": None, "disk_gib": None}, format="json",
    )  # fmt: skip
    api(admin_user).patch(f"/api/v1/admin/hosts/{catalog['host'].pk}/", {"enabled": False}, format="json")

    assert types(account=customer, staff_action=True) == ["suspension", "payment", "credit", "quota_changed"]
    host_event = ActivityEvent.objects.get(type="host_changed")
    assert (host_event.account, host_event.actor, host_event.staff_action) == (None, admin_user, True)


def test_a_provider_payment_is_in_the_customers_log(customer):
    payments.record_payment(customer, Decimal("1000"), "provider-1", method="testpay")
    event = ActivityEvent.objects.get(account=customer, type="payment")
    assert (event.actor, event.staff_action) == (None, False)
    assert "provider-1" in event.text
