"""Redeeming a console token is a compare-and-swap: two connections racing with one token get one console
between them; the proxy's checks close consoles of servers that were suspended, given away or deleted."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import RequestFactory

from panel.console import sessions
from panel.console.models import ConsoleSession
from panel.models import Server
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def mint(server, user) -> str:
    request = RequestFactory().post("/", REMOTE_ADDR="192.0.2.7")
    request.user = user
    url, _expires_at = sessions.open_console(server, user, "serial", request)
    return url.rsplit("/", 1)[1]


def test_two_racing_connections_get_one_console(catalog, customer):
    server = factories.make_server(customer, catalog)
    token = mint(server, customer)
    barrier = threading.Barrier(2)
    outcomes = []

    def connect() -> None:
        barrier.wait()
        try:
            outcomes.append(sessions.redeem(token, None, "127.0.0.1"))
        except sessions.Refused as refused:
            outcomes.append(str(refused))
        finally:
            connection.close()

    threads = [threading.Thread(target=connect) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    grants = [outcome for outcome in outcomes if isinstance(outcome, sessions.Grant)]
    assert len(grants) == 1, outcomes
    assert outcomes.count("the console token was used already") == 1
    assert grants[0].server_id == str(server.id) and grants[0].type == "serial"
    session = ConsoleSession.objects.get()
    assert session.ip == "192.0.2.7" and session.connected_ip == "127.0.0.1"


def test_the_checks_close_consoles_of_servers_suspended_given_away_or_deleted(
    catalog, customer, other_customer
):
    servers = [factories.make_server(customer, catalog, name=f"web{n}") for n in range(4)]
    ids = []
    for server in servers:
        sessions.redeem(mint(server, customer), None, None)
        ids.append(ConsoleSession.objects.get(server=server).pk)
    assert sessions.closing(ids) == {}
    Server.objects.filter(pk=servers[0].pk).update(status=Server.Status.SUSPENDED)
    Server.objects.filter(pk=servers[1].pk).update(owner=other_customer)
    ConsoleSession.objects.filter(pk=ids[2]).delete()  # went with its server
    assert sessions.closing(ids) == {
        ids[0]: sessions.SUSPENDED,
        ids[1]: sessions.NOT_YOURS,
        ids[2]: sessions.DELETED,
    }
    assert [sessions.closing(ids)[pk].code for pk in ids[:3]] == [4001, 4003, 4002]


def test_staff_keep_their_console_whoever_owns_the_server(catalog, customer, other_customer, staff):
    server = factories.make_server(customer, catalog)
    sessions.redeem(mint(server, staff), None, None)
    Server.objects.filter(pk=server.pk).update(owner=other_customer)
    assert sessions.closing([ConsoleSession.objects.get().pk]) == {}
