"""The server page's Firewall tab, without JavaScript: the rules as rows with empty rows to add more, a
Remove box on each rule, "More rows" for more empty rows (nothing saved), the default for other traffic,
and whether the host applies it yet. A bad row comes back with the message on its field and nothing
changes."""

from __future__ import annotations

import re

import pytest

from panel.models import Firewall, Server
from panel.servers import firewall, firewall_forms
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(customer, catalog) -> Server:
    return factories.make_server(customer, catalog)


def form(rows: list[dict], initial: int = 0, policy: str = "drop", total: int | None = None, **extra) -> dict:
    data = {
        "rules-TOTAL_FORMS": str(total if total is not None else len(rows)),
        "rules-INITIAL_FORMS": str(initial),
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
        "default_inbound": policy,
        **extra,
    }
    for index, row in enumerate(rows):
        for key, value in row.items():
            data[f"rules-{index}-{key}"] = value
    return data


EMPTY = {"protocol": "tcp", "ports": "", "sources": ""}


def test_the_tab_shows_the_rules_and_empty_rows(client, customer, server):
    client.force_login(customer)
    overview = client.get(f"/servers/{server.pk}/").content.decode()
    assert f'href="/servers/{server.pk}/firewall/"' in overview
    page = client.get(f"/servers/{server.pk}/firewall/").content.decode()
    assert 'id="firewall-tab"' in page and 'aria-current="page"' in page
    assert 'name="rules-TOTAL_FORMS" value="3"' in page  # three empty rows, no rule yet
    assert re.search(r'value="accept"[^>]* checked', page)  # the default: accept
    assert "Applied" in page


def test_a_customer_adds_removes_and_keeps_rules(client, customer, server):
    client.force_login(customer)
    path = f"/servers/{server.pk}/firewall/"
    rows = [{"protocol": "tcp", "ports": "22", "sources": "203.0.113.0/24, 2001:db8::/32"}, EMPTY, EMPTY]
    response = client.post(path, form(rows))
    assert response.status_code == 302 and response["Location"] == path
    row = Firewall.objects.get(pk=server.pk)
    assert row.default_inbound == "drop"
    assert row.inbound == [{"protocol": "tcp", "ports": "22", "sources": ["203.0.113.0/24", "2001:db8::/32"]}]
    page = client.get(path).content.decode()
    assert "Being applied" in page and "Firewall saved" in page
    assert 'value="203.0.113.0/24, 2001:db8::/32"' in page

    # A second rule in an empty row; the first kept as it is.
    rows = [
        {"protocol": "tcp", "ports": "22", "sources": "203.0.113.0/24, 2001:db8::/32"},
        {"protocol": "udp", "ports": "51820", "sources": "0.0.0.0/0"},
        EMPTY,
    ]
    assert client.post(path, form(rows, initial=1)).status_code == 302
    assert [rule["ports"] for rule in Firewall.objects.get(pk=server.pk).inbound] == ["22", "51820"]

    # Remove the first.
    rows[0]["DELETE"] = "on"
    assert client.post(path, form(rows[:2], initial=2)).status_code == 302
    assert Firewall.objects.get(pk=server.pk).inbound == [
        {"protocol": "udp", "ports": "51820", "sources": ["0.0.0.0/0"]}
    ]


def test_more_rows_adds_empty_rows_and_saves_nothing(client, customer, server):
    client.force_login(customer)
    rows = [{"protocol": "tcp", "ports": "22", "sources": "0.0.0.0/0"}, EMPTY, EMPTY]
    response = client.post(f"/servers/{server.pk}/firewall/", form(rows, more_rows="1"))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="rules-TOTAL_FORMS" value="6"' in page
    assert 'name="rules-0-ports" value="22"' in page  # what was typed is kept
    assert "field__error" not in page  # empty rows are not errors
    assert not Firewall.objects.filter(pk=server.pk).exists()


@pytest.mark.parametrize("total", ["abc", "-4", "", "99999999999999999999"])
def test_row_counts_posted_wrong_are_refused_without_an_error_page(client, customer, server, total):
    client.force_login(customer)
    path = f"/servers/{server.pk}/firewall/"
    rows = [{"protocol": "tcp", "ports": "22", "sources": "0.0.0.0/0"}]
    data = {**form(rows), "rules-TOTAL_FORMS": total}

    # "More rows": counts read as none (or as the most a form may have), and the form comes back.
    more = client.post(path, {**data, "more_rows": "1"})
    assert more.status_code == 200
    counted = re.search(r'name="rules-TOTAL_FORMS" value="(\d+)"', more.content.decode())
    assert counted and 0 < int(counted.group(1)) <= firewall_forms.ABSOLUTE_MAX_ROWS

    saved = client.post(path, data)  # the form comes back with a message; nothing is saved
    assert saved.status_code == 200
    assert 'role="alert"' in saved.content.decode()
    if total == "-4":  # Django itself would read it as no rows, and save "no rules"
        assert "The rows could not be read" in saved.content.decode()
    assert not Firewall.objects.filter(pk=server.pk).exists()


def test_a_bad_row_is_shown_on_its_field_and_nothing_changes(client, customer, server):
    firewall.set_firewall(server, [], "accept", customer)
    version = Firewall.objects.get(pk=server.pk).version
    client.force_login(customer)
    rows = [
        {"protocol": "icmp", "ports": "22", "sources": "0.0.0.0/0"},
        {"protocol": "tcp", "ports": "22", "sources": "not-a-network"},
        EMPTY,
    ]
    response = client.post(f"/servers/{server.pk}/firewall/", form(rows))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Ports apply only to tcp and udp" in page
    assert "is not an IPv4 or IPv6 address or network" in page
    assert page.count('class="field field--invalid"') == 2
    row = Firewall.objects.get(pk=server.pk)
    assert (row.inbound, row.default_inbound, row.version) == ([], "accept", version)


def test_a_deleted_servers_tab_says_so_and_takes_no_change(client, customer, catalog):
    deleted = factories.make_server(customer, catalog, name="gone", status=Server.Status.DELETED)
    client.force_login(customer)
    page = client.get(f"/servers/{deleted.pk}/firewall/").content.decode()
    assert "This server has been deleted." in page and "rules-TOTAL_FORMS" not in page
    client.post(
        f"/servers/{deleted.pk}/firewall/", form([{"protocol": "tcp", "ports": "22", "sources": "::/0"}])
    )
    assert not Firewall.objects.filter(pk=deleted.pk).exists()
