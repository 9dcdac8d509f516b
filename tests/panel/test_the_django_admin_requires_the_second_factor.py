"""The Django admin answers only admins whose session has shown the second factor; its login page is the
panel's own two-step login."""

import pytest

from tests import factories

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse 42"


def test_an_admin_logged_in_with_the_password_only_is_refused(client, admin_user):
    assert client.login(username=admin_user.email, password=PASSWORD)
    response = client.get("/django-admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/code/")
    # The admin's own login page does not log in with a password alone either.
    response = client.get("/django-admin/login/?next=/django-admin/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/code/")


def test_the_admin_site_itself_checks_the_second_factor(admin_user, rf):
    from django.contrib import admin
    from django_otp.middleware import OTPMiddleware

    request = rf.get("/django-admin/")
    request.user = admin_user
    request.session = {}
    OTPMiddleware(lambda r: None)._install_lazy_accessors(request)
    assert not admin.site.has_permission(request)


def test_an_admin_who_gave_the_code_reaches_the_admin(client, admin_user):
    response = client.post("/accounts/login/", {"username": admin_user.email, "password": PASSWORD})
    assert response["Location"].startswith("/accounts/login/code/")
    client.post("/accounts/login/code/", {"code": factories.totp_code(admin_user)})
    assert client.get("/django-admin/").status_code == 200


def test_the_admin_login_page_sends_visitors_to_the_panels_login(client):
    response = client.get("/django-admin/login/?next=/django-admin/panel/user/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=%2Fdjango-admin%2Fpanel%2Fuser%2F"


def test_customers_and_staff_get_403_on_the_admin_login_page(client, customer, staff):
    for user in (customer, staff):
        client.force_login(user)
        assert client.get("/django-admin/login/").status_code == 403
