"""An order in the browser needs an SSH key or a root password (the only key is chosen for the customer),
and power off, revoking a token and deleting an SSH key ask before they act: in the browser (the forms carry
the question) and, without JavaScript, on a page of their own."""

import pytest

from panel.models import ApiToken, Operation, Server, SSHKey
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def web(client, customer):
    client.force_login(customer)
    return client


def order(web, catalog, **extra):
    data = {
        "name": "web1",
        "plan": catalog["plan"].pk,
        "image": catalog["image"].pk,
        "region": catalog["region"].pk,
        **extra,
    }
    return web.post("/servers/new/", data)


def test_an_order_without_a_key_or_a_password_is_refused(web, catalog):
    response = order(web, catalog)
    assert response.status_code == 200
    assert "Choose an SSH key or set a root password" in response.content.decode()
    assert not Server.objects.exists()


def test_an_order_with_a_password_and_no_key_is_accepted(web, catalog):
    response = order(web, catalog, password="correct horse battery")
    assert response.status_code == 302
    assert Server.objects.get().password_hash


def test_an_order_with_a_key_and_no_password_is_accepted(web, customer, catalog):
    key = factories.make_ssh_key(customer)
    assert order(web, catalog, ssh_keys=[key.pk]).status_code == 302
    assert Server.objects.get().ssh_keys == [key.public_key]


def test_the_only_key_is_chosen_for_the_customer(web, customer, catalog):
    key = factories.make_ssh_key(customer)
    html = web.get("/servers/new/").content.decode()
    assert f'value="{key.pk}"' in html
    checkbox = html[html.index(f'value="{key.pk}"') - 200 : html.index(f'value="{key.pk}"') + 120]
    assert "checked" in checkbox


def test_with_two_keys_none_is_chosen(web, customer, catalog):
    factories.make_ssh_key(customer, name="one")
    factories.make_ssh_key(
        customer,
        name="two",
        public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHaXyW2Vbq6C7E7o1Q0WlE0Xn1Yb5m3C3VfU8j3Q7zKx two",
    )
    assert (
        "checked"
        not in web.get("/servers/new/").content.decode().split('id="step-keys"')[1].split('id="step-name"')[0]
    )


# ---------- Asking first ----------


def test_power_off_asks_before_it_acts(web, customer, catalog):
    server = factories.make_server(customer, catalog)
    html = web.get(f"/servers/{server.pk}/").content.decode()
    assert 'value="power_off"' in html and "hx-confirm=" in html and f"Power off {server.name} now?" in html

    response = web.post(f"/servers/{server.pk}/action/", {"action": "power_off"})
    assert response.status_code == 200 and "Please confirm" in response.content.decode()
    assert 'name="confirmed" value="yes"' in response.content.decode()
    assert not Operation.objects.exists()

    web.post(f"/servers/{server.pk}/action/", {"action": "power_off", "confirmed": "yes"})
    assert Operation.objects.get().type == "power_off"


def test_a_shutdown_needs_no_confirmation(web, customer, catalog):
    server = factories.make_server(customer, catalog)
    web.post(f"/servers/{server.pk}/action/", {"action": "shutdown"})
    assert Operation.objects.get().type == "shutdown"


def test_revoking_a_token_asks_first(web, customer):
    token, _secret = ApiToken.issue(customer, "ci")
    html = web.get("/account/").content.decode()
    assert "Revoke the token ci?" in html

    response = web.post(f"/account/tokens/{token.pk}/revoke/")
    assert "Please confirm" in response.content.decode()
    assert ApiToken.objects.filter(pk=token.pk).exists()

    web.post(f"/account/tokens/{token.pk}/revoke/", {"confirmed": "yes"})
    assert not ApiToken.objects.filter(pk=token.pk).exists()


def test_another_customers_token_is_not_found_even_to_ask(web, other_customer):
    token, _secret = ApiToken.issue(other_customer, "theirs")
    assert web.post(f"/account/tokens/{token.pk}/revoke/").status_code == 404
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_deleting_an_ssh_key_asks_first(web, customer):
    key = factories.make_ssh_key(customer)
    html = web.get("/ssh-keys/").content.decode()
    assert "Delete the SSH key laptop?" in html

    response = web.post(f"/ssh-keys/{key.pk}/delete/")
    assert "Please confirm" in response.content.decode()
    assert SSHKey.objects.filter(pk=key.pk).exists()

    web.post(f"/ssh-keys/{key.pk}/delete/", {"confirmed": "yes"})
    assert not SSHKey.objects.filter(pk=key.pk).exists()


def test_the_question_page_switches_language_back_to_where_the_question_came_from(web, customer):
    key = factories.make_ssh_key(customer)
    html = web.post(f"/ssh-keys/{key.pk}/delete/").content.decode()
    assert '<input name="next" type="hidden" value="/ssh-keys/">' in html
