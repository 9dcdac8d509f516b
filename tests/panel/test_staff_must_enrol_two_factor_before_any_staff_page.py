"""Staff and admins without two-factor authentication are sent to enrolment before any page but
enrolment, the login steps, logout and language switching answers; their API tokens get 403
`totp_required` until they have enrolled."""

import pytest

from panel.accounts import totp
from panel.models import User
from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


@pytest.fixture(params=[User.Role.STAFF, User.Role.ADMIN])
def unenrolled(request, db) -> User:
    return factories.make_user(request.param, totp=False)


@pytest.mark.parametrize(
    "path",
    [
        "/staff/servers/",
        "/staff/customers/",
        "/staff/hosts/",
        "/servers/",
        "/account/",
        "/",
        "/django-admin/",
    ],
)
def test_every_page_sends_them_to_enrolment(client, unenrolled, path):
    client.force_login(unenrolled)
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/account/two-factor/?next=")


def test_enrolment_logout_and_language_switching_still_answer(client, unenrolled):
    client.force_login(unenrolled)
    page = client.get("/account/two-factor/")
    assert page.status_code == 200
    assert "must use two-factor authentication" in page.content.decode()
    assert (
        client.post("/i18n/setlang/", {"language": "id", "next": "/account/two-factor/"}).status_code == 302
    )
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/staff/servers/").status_code == 302  # logged out: the login page


def test_live_fragments_are_told_to_load_enrolment(client, unenrolled):
    client.force_login(unenrolled)
    response = client.get("/staff/servers/", headers={"HX-Request": "true"})
    assert response["HX-Redirect"] == "/account/two-factor/"


def test_after_enrolment_the_staff_pages_answer(client, unenrolled):
    client.force_login(unenrolled)
    secret = totp.secret(totp.pending_device(unenrolled))
    response = client.post(
        "/account/two-factor/", {"code": totp.current_code(secret), "next": "/staff/servers/"}
    )
    assert response.status_code == 200 and 'href="/staff/servers/"' in response.content.decode()
    assert client.get("/staff/servers/").status_code == 200


def test_enrolled_staff_without_the_second_factor_in_the_session_are_asked_for_the_code(client, staff):
    assert client.login(username=staff.email, password="correct horse 42")
    response = client.get("/staff/servers/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/code/?next=%2Fstaff%2Fservers%2F"
    assert client.get("/account/two-factor/").status_code == 302


def test_enrolled_staff_reach_the_staff_pages(client, staff):
    client.force_login(staff)
    assert client.get("/staff/servers/").status_code == 200


def test_customers_without_two_factor_are_not_asked(client, customer):
    client.force_login(customer)
    assert client.get("/servers/").status_code == 200


def test_staff_api_tokens_work_only_after_enrolment(unenrolled):
    client = api_client_for(unenrolled)
    response = client.get("/api/v1/admin/servers/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "totp_required"
    assert "two-factor" in response.json()["error"]["message"]
    assert client.get("/api/v1/servers/").status_code == 403
    factories.enrol_totp(unenrolled)
    assert client.get("/api/v1/admin/servers/").status_code == 200


def test_customer_tokens_need_no_second_factor(api, customer):
    assert api(customer).get("/api/v1/servers/").status_code == 200
