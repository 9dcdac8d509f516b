"""An account from browser sign-up is held to NEW_ACCOUNT_QUOTA until its payments reach the lift amount
(once, recorded) or until staff lift the limits (on the customer page, or through the quota API)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import payments
from panel.models import ActivityEvent
from panel.servers import actions

from .. import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def newcomer(db):
    user = factories.make_user()
    user.new_account_limits = True
    user.save()
    return user


def order(user, catalog, name):
    return actions.order_server(
        user, name=name, plan=catalog["plan"], image=catalog["image"], region=catalog["region"]
    )


def test_the_second_server_is_refused_with_a_new_account_message(api, newcomer, catalog, settings):
    settings.NEW_ACCOUNT_QUOTA = {**settings.NEW_ACCOUNT_QUOTA, "servers": 1}
    order(newcomer, catalog, "web1")
    response = api(newcomer).post(
        "/api/v1/servers/",
        {"name": "web2", "plan": catalog["plan"].slug, "image": catalog["image"].slug},
        format="json",
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "over_quota" and "until their payments reach 50000 IDR" in error["message"]
    assert api(newcomer).get("/api/v1/account/").json()["quota"]["servers"]["limit"] == 1


def test_payments_reaching_the_amount_lift_them_once(newcomer, catalog, settings):
    settings.NEW_ACCOUNT_QUOTA = {**settings.NEW_ACCOUNT_QUOTA, "servers": 1}
    order(newcomer, catalog, "web1")
    payments.record_payment(newcomer, Decimal("50000"), "first")  # the cheapest plan's monthly price
    payments.record_payment(newcomer, Decimal("1000"), "second")

    newcomer.refresh_from_db()
    assert not newcomer.new_account_limits
    order(newcomer, catalog, "web2")
    assert ActivityEvent.objects.filter(account=newcomer, type="limits_lifted").count() == 1


def test_staff_lift_them_on_the_customer_page(client, staff, newcomer):
    client.force_login(staff)
    client.post(f"/staff/customers/{newcomer.pk}/", {"action": "lift_new_account_limits"})
    newcomer.refresh_from_db()
    assert not newcomer.new_account_limits
    event = ActivityEvent.objects.get(account=newcomer, type="limits_lifted")
    assert (event.actor, event.staff_action) == (staff, True)


def test_the_quota_api_shows_and_lifts_them(api, staff, newcomer):
    url = f"/api/v1/admin/customers/{newcomer.pk}/quota/"
    assert api(staff).get(url).json()["new_account_limits"] is True
    body = {"servers": 5, "vcpus": None, "memory_mib": None, "disk_gib": None, "new_account_limits": False}
    answer = api(staff).put(url, body, format="json").json()
    assert answer["new_account_limits"] is False
    assert answer["servers"]["limit"] == 5
