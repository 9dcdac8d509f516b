"""A customer's activity log shows the address of their own requests only: events that staff or admins
caused on the account show no address to the customer (null in the API, nothing on the pages), while the
admins' audit log keeps it."""

import pytest
from django.test import RequestFactory
from django.utils.translation import gettext_noop

from panel.activity import log as activity
from panel.models import ActivityEvent

pytestmark = pytest.mark.django_db
STAFF_IP = "198.51.100.77"
CUSTOMER_IP = "203.0.113.21"


@pytest.fixture
def events(customer, staff):
    staff_request = RequestFactory().post("/", REMOTE_ADDR=STAFF_IP)
    customer_request = RequestFactory().post("/", REMOTE_ADDR=CUSTOMER_IP)
    by_staff = activity.record(
        ActivityEvent.Type.QUOTA_CHANGED,
        summary=gettext_noop("Changed the quota of %(email)s."),
        data={"email": customer.email},
        account=customer,
        actor=staff,
        target=f"user:{customer.pk}",
        staff_action=True,
        request=staff_request,
    )
    own = activity.record(
        ActivityEvent.Type.SSH_KEY_ADDED,
        summary=gettext_noop("Added SSH key %(name)s."),
        data={"name": "laptop"},
        account=customer,
        actor=customer,
        request=customer_request,
    )
    return by_staff, own


def test_the_api_gives_null_for_staff_addresses(api, customer, events):
    by_staff, own = events
    rows = {row["id"]: row for row in api(customer).get("/api/v1/account/events/").json()["results"]}
    assert rows[by_staff.pk]["ip"] is None
    assert rows[own.pk]["ip"] == CUSTOMER_IP


def test_the_pages_show_no_staff_address(client, customer, events):
    client.force_login(customer)
    for url in ("/account/", "/account/activity/"):
        text = client.get(url).content.decode()
        assert "Changed the quota" in text and CUSTOMER_IP in text
        assert STAFF_IP not in text


def test_the_admins_audit_log_shows_the_staff_address(client, admin_user, events):
    client.force_login(admin_user)
    assert STAFF_IP in client.get("/staff/audit/").content.decode()
