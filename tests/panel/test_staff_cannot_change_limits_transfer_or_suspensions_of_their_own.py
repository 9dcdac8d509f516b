"""Staff cannot act for their own benefit: editing their own quota or new-account limits (customer page and
quota API), adding transfer to their own server, or unsuspending their own server. Each is refused (403 in
the API, an error on the page) and changes nothing; the same acts on a customer's account still work."""

from __future__ import annotations

import pytest

from panel.accounts import quotas
from panel.models import ActivityEvent, Operation, Server, User
from panel.servers import actions
from panel.usage import metering

from .. import factories

pytestmark = pytest.mark.django_db

QUOTA = {"servers": 99, "vcpus": "", "memory_mib": "", "disk_gib": "", "snapshots": ""}


def test_the_quota_api_refuses_staff_their_own_quota_and_limits(api, staff, customer):
    before = quotas.own_limits(staff)
    staff_url = f"/api/v1/admin/customers/{staff.pk}/quota/"
    body = {"servers": 99, "vcpus": None, "memory_mib": None, "disk_gib": None}

    response = api(staff).put(staff_url, body, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert quotas.own_limits(staff) == before

    User.objects.filter(pk=staff.pk).update(new_account_limits=True)
    response = api(staff).put(staff_url, {**body, "new_account_limits": False}, format="json")
    assert response.status_code == 403
    staff.refresh_from_db()
    assert staff.new_account_limits
    assert not ActivityEvent.objects.filter(
        account=staff, type__in=["quota_changed", "limits_lifted"]
    ).exists()

    customer_url = f"/api/v1/admin/customers/{customer.pk}/quota/"
    assert api(staff).put(customer_url, body, format="json").status_code == 200


def test_the_customer_page_refuses_staff_their_own_quota_and_limits(client, staff, customer):
    client.force_login(staff)
    before = quotas.own_limits(staff)

    response = client.post(f"/staff/customers/{staff.pk}/", QUOTA)
    assert response.status_code == 200
    assert "your own account" in response.content.decode()
    assert quotas.own_limits(staff) == before

    User.objects.filter(pk=staff.pk).update(new_account_limits=True)
    response = client.post(
        f"/staff/customers/{staff.pk}/", {"action": "lift_new_account_limits"}, follow=True
    )
    assert "your own account" in response.content.decode()
    staff.refresh_from_db()
    assert staff.new_account_limits

    client.post(f"/staff/customers/{customer.pk}/", QUOTA)
    assert quotas.own_limits(customer)["servers"] == 99


def test_staff_cannot_add_transfer_to_their_own_server(client, staff, customer, catalog):
    own = factories.make_server(staff, catalog, "own")
    theirs = factories.make_server(customer, catalog, "theirs")
    client.force_login(staff)

    response = client.post(f"/staff/servers/{own.pk}/traffic-block/", {"gib": 100}, follow=True)
    assert "your own server" in response.content.decode()
    assert metering.current_period(own).extra_bytes == 0
    assert not ActivityEvent.objects.filter(type="traffic_block").exists()

    client.post(f"/staff/servers/{theirs.pk}/traffic-block/", {"gib": 100})
    assert metering.current_period(theirs).extra_bytes == 100 * 1024**3


@pytest.mark.parametrize("by", ["billing", "staff", "transfer"])
def test_staff_cannot_unsuspend_their_own_server(staff, catalog, by):
    own = factories.make_server(staff, catalog, "own", status="suspended", suspended_by=by)

    with pytest.raises(actions.Forbidden):
        actions.unsuspend_server(own, staff)

    own.refresh_from_db()
    assert (own.status, own.task) == (Server.Status.SUSPENDED, None)
    assert not Operation.objects.filter(server=own).exists()
    actions.unsuspend_server(own)  # billing's own unsuspension after a payment still works
    assert Operation.objects.filter(server=own, type="unsuspend").exists()
