"""account/events/ and the account page show a customer their own activity; admin/events/ and the audit
page show admins what staff did; staff and customers get 403 there."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone, translation
from django.utils.translation import gettext_noop

from panel.activity import log as activity
from panel.models import ActivityEvent

pytestmark = pytest.mark.django_db


def event(type, account, actor, summary, staff_action=False, minutes_ago=0, **data):
    made = activity.record(
        type,
        summary=summary,
        data=data,
        account=account,
        actor=actor,
        target=f"user:{account.pk}" if account else "host:1",
        staff_action=staff_action,
    )
    ActivityEvent.objects.filter(pk=made.pk).update(at=timezone.now() - timedelta(minutes=minutes_ago))
    return made


@pytest.fixture
def history(customer, other_customer, staff):
    return {
        "old": event(
            ActivityEvent.Type.LOGIN,
            customer,
            customer,
            gettext_noop("Signed in at the office."),
            minutes_ago=10,
        ),
        "new": event(
            ActivityEvent.Type.SSH_KEY_ADDED,
            customer,
            customer,
            gettext_noop("Added SSH key %(name)s."),
            minutes_ago=1,
            name="laptop",
        ),
        "other": event(ActivityEvent.Type.LOGIN, other_customer, other_customer, gettext_noop("Logged in.")),
        "quota": event(
            ActivityEvent.Type.QUOTA_CHANGED,
            customer,
            staff,
            gettext_noop("Changed the quota of %(email)s."),
            staff_action=True,
            minutes_ago=5,
            email=customer.email,
        ),
    }


def test_a_customer_reads_their_own_events_newest_first(api, customer, history):
    body = api(customer).get("/api/v1/account/events/").json()
    ids = [item["id"] for item in body["results"]]
    # the token fixture's creation is not an event; the staff quota change concerns this account too
    assert ids == [history["new"].pk, history["quota"].pk, history["old"].pk]
    assert set(body["results"][0]) == {"id", "at", "type", "ip", "summary"}
    assert body["results"][0]["summary"] == "Added SSH key laptop."
    assert body["results"][0]["type"] == "ssh_key_added"


def test_admins_read_the_audit_log_and_staff_and_customers_get_403(api, customer, staff, admin_user, history):
    body = api(admin_user).get("/api/v1/admin/events/").json()
    assert [item["id"] for item in body["results"]] == [history["quota"].pk]
    row = body["results"][0]
    assert set(row) == {"id", "at", "actor", "type", "target", "summary"}
    assert row["actor"] == staff.email
    assert row["summary"] == f"Changed the quota of {customer.email}."
    for reader in (staff, customer):
        response = api(reader).get("/api/v1/admin/events/")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"


def test_the_audit_log_filters_by_type_and_actor(api, admin_user, staff, history):
    client = api(admin_user)
    assert client.get("/api/v1/admin/events/?type=quota_changed").json()["count"] == 1
    assert client.get("/api/v1/admin/events/?type=credit").json()["count"] == 0
    assert client.get(f"/api/v1/admin/events/?actor={staff.email.upper()}").json()["count"] == 1
    assert client.get("/api/v1/admin/events/?actor=nobody@example.com").json()["count"] == 0


def test_the_account_page_shows_recent_activity_and_links_the_full_log(client, customer, history):
    client.force_login(customer)
    page = client.get("/account/").content.decode()
    assert "Recent activity" in page and "Added SSH key laptop." in page
    assert "/account/activity/" in page
    full = client.get("/account/activity/")
    assert full.status_code == 200
    text = full.content.decode()
    assert text.index("Added SSH key laptop.") < text.index("Signed in at the office.")


def test_the_activity_page_is_paged(client, customer):
    client.force_login(customer)  # may record a login of its own
    for number in range(55):
        event(
            ActivityEvent.Type.LOGIN,
            customer,
            customer,
            gettext_noop("Test event %(n)s."),
            minutes_ago=number,
            n=number,
        )
    first = client.get("/account/activity/").content.decode()
    assert "Page 1 of 2" in first
    assert "Test event 0." in first and "Test event 54." not in first  # newest first
    second = client.get("/account/activity/?page=2").content.decode()
    assert "Test event 54." in second and "Test event 0." not in second


def test_the_audit_page_is_for_admins_only_and_filters(client, customer, staff, admin_user, history):
    for reader in (customer, staff):
        client.force_login(reader)
        assert client.get("/staff/audit/").status_code == 403
    assert 'href="/staff/audit/"' not in client.get("/staff/servers/").content.decode()
    client.force_login(admin_user)
    page = client.get("/staff/audit/")
    assert page.status_code == 200
    text = page.content.decode()
    assert f"Changed the quota of {customer.email}." in text
    assert "Added SSH key" not in text  # the customer's own actions are not staff actions
    assert "Changed the quota" not in client.get("/staff/audit/?type=credit").content.decode()
    assert "Changed the quota" in client.get(f"/staff/audit/?actor={staff.email[:5]}").content.decode()
    assert 'href="/staff/audit/"' in client.get("/staff/servers/").content.decode()


def test_the_audit_pages_keep_newest_first_when_many_events_share_a_moment(
    client, customer, staff, admin_user
):
    """A bulk action records many events in the same instant: the pages still go by time, then by id
    (newest first), each event on exactly one page, with its type's label in the reader's language."""
    made = [
        event(ActivityEvent.Type.QUOTA_CHANGED, customer, staff, gettext_noop("Bulk entry %(n)s."), True, n=n)
        for n in range(55)
    ]
    ActivityEvent.objects.filter(pk__in=[e.pk for e in made]).update(at=timezone.now())
    event(ActivityEvent.Type.CREDIT, customer, staff, gettext_noop("Older entry."), True, minutes_ago=5)
    client.force_login(admin_user)
    pages = [client.get(f"/staff/audit/?page={number}").content.decode() for number in (1, 2)]

    def shown(page: str) -> list[str]:
        return re.findall(r"Bulk entry \d+\.|Older entry\.", page)

    assert shown(pages[0]) == [f"Bulk entry {n}." for n in range(54, 4, -1)]
    assert shown(pages[1]) == [f"Bulk entry {n}." for n in range(4, -1, -1)] + ["Older entry."]
    assert "Quota changed" in pages[0] and "Credit or charge" in pages[1]
    type(admin_user).objects.filter(pk=admin_user.pk).update(language="id")  # the account's language
    with translation.override("id"):
        label = str(ActivityEvent.Type.QUOTA_CHANGED.label)
    assert label != "Quota changed" and label in client.get("/staff/audit/").content.decode()
