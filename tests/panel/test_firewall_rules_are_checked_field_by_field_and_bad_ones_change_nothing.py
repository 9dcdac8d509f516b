"""`PUT servers/{id}/firewall/` checks every rule: the protocol's vocabulary, ports only for tcp and udp (a
port 1-65535 or a range low-high), at least one source and each an IPv4 or IPv6 address or network, at most
50 rules and 20 sources per rule, the default's vocabulary. A bad body is a 400 whose `fields` names each
wrong field, and nothing changes (no rule, no version, no activity line). Good values are stored
normalised, and answered with 202 (the host follows within a minute) and the stored firewall."""

from __future__ import annotations

import pytest

from panel.models import ActivityEvent, Firewall
from tests import factories

pytestmark = pytest.mark.django_db

ANYWHERE = ["0.0.0.0/0", "::/0"]


@pytest.fixture
def server(customer, catalog):
    return factories.make_server(customer, catalog)


def put(api, user, server, body):
    return api(user).put(f"/api/v1/servers/{server.pk}/firewall/", body, format="json")


def rule(**values) -> dict:
    return {"protocol": "tcp", "ports": "22", "sources": ANYWHERE, **values}


@pytest.mark.parametrize(
    "body, field",
    [
        ({"inbound": [rule(protocol="gre")]}, "inbound.0.protocol"),
        ({"inbound": [rule(), rule(protocol="icmp", ports="22")]}, "inbound.1.ports"),
        ({"inbound": [rule(protocol="any", ports="1-100")]}, "inbound.0.ports"),
        ({"inbound": [rule(ports="8100-8000")]}, "inbound.0.ports"),
        ({"inbound": [rule(ports="0")]}, "inbound.0.ports"),
        ({"inbound": [rule(ports="65536")]}, "inbound.0.ports"),
        ({"inbound": [rule(ports="ssh")]}, "inbound.0.ports"),
        ({"inbound": [rule(ports="1-2-3")]}, "inbound.0.ports"),
        ({"inbound": [rule(sources=[])]}, "inbound.0.sources"),
        ({"inbound": [rule(sources=None)]}, "inbound.0.sources"),
        ({"inbound": [rule(sources=["203.0.113.0/33"])]}, "inbound.0.sources"),
        ({"inbound": [rule(sources=["example.com"])]}, "inbound.0.sources"),
        ({"inbound": [rule(sources=[f"198.51.100.{n}" for n in range(21)])]}, "inbound.0.sources"),
        ({"inbound": [rule() for _ in range(51)]}, "inbound"),
        ({"inbound": "tcp 22"}, "inbound"),
        ({"default_inbound": "drop"}, "inbound"),
        ({"inbound": ["tcp"]}, "inbound.0.protocol"),
        ({"inbound": [], "default_inbound": "reject"}, "default_inbound"),
    ],
)
def test_a_bad_field_is_named_and_nothing_changes(api, customer, server, body, field):
    before = put(api, customer, server, {"inbound": [rule()], "default_inbound": "drop"})
    assert before.status_code == 202
    stored = Firewall.objects.get(pk=server.pk)
    events = ActivityEvent.objects.count()

    response = put(api, customer, server, body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"], error
    assert error["fields"][field][0]  # a message a person can read
    after = Firewall.objects.get(pk=server.pk)
    assert (after.inbound, after.default_inbound, after.version) == (
        stored.inbound,
        stored.default_inbound,
        stored.version,
    )
    assert ActivityEvent.objects.count() == events


def test_every_bad_field_of_a_body_is_named_at_once(api, customer, server):
    body = {
        "inbound": [rule(protocol="udp", ports="99999", sources=["nowhere"]), rule(protocol="smtp")],
        "default_inbound": "maybe",
    }
    response = put(api, customer, server, body)
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {
        "inbound.0.ports",
        "inbound.0.sources",
        "inbound.1.protocol",
        "default_inbound",
    }
    assert not Firewall.objects.filter(pk=server.pk).exists()


def test_good_values_are_stored_normalised_and_answered_with_202(api, customer, server):
    body = {
        "inbound": [
            {
                "protocol": "TCP",
                "ports": "0022",
                "sources": ["203.0.113.9/24", "2001:DB8::1", "203.0.113.0/24"],
            },
            {"protocol": "udp", "ports": "8000 - 8100", "sources": ["0.0.0.0/0"]},
            {"protocol": "tcp", "ports": None, "sources": ["::/0"]},
            {"protocol": "icmp", "ports": "", "sources": ["198.51.100.7"]},
            {"protocol": "any", "sources": ["192.0.2.0/24"]},
        ],
        "default_inbound": "drop",
    }
    response = put(api, customer, server, body)
    assert response.status_code == 202, response.content
    stored = [
        {"protocol": "tcp", "ports": "22", "sources": ["203.0.113.0/24", "2001:db8::1/128"]},
        {"protocol": "udp", "ports": "8000-8100", "sources": ["0.0.0.0/0"]},
        {"protocol": "tcp", "ports": None, "sources": ["::/0"]},
        {"protocol": "icmp", "ports": None, "sources": ["198.51.100.7/32"]},
        {"protocol": "any", "ports": None, "sources": ["192.0.2.0/24"]},
    ]
    assert response.json() == {
        "inbound": stored,
        "default_inbound": "drop",
        "applied": False,
        "applied_at": None,
    }
    firewall = Firewall.objects.get(pk=server.pk)
    assert firewall.inbound == stored and firewall.pending and firewall.updated_by == customer
    event = ActivityEvent.objects.get(type=ActivityEvent.Type.FIREWALL_CHANGED)
    assert event.account == customer and event.target == f"server:{server.pk}" and not event.staff_action

    # The default may be left out: it stays as it is. The same body again changes nothing.
    version = firewall.version
    again = put(api, customer, server, {"inbound": body["inbound"]})
    assert again.status_code == 202 and again.json()["default_inbound"] == "drop"
    assert Firewall.objects.get(pk=server.pk).version == version
    assert ActivityEvent.objects.filter(type=ActivityEvent.Type.FIREWALL_CHANGED).count() == 1


def test_a_server_that_never_had_a_firewall_reads_as_no_rules_accept(api, customer, server):
    response = api(customer).get(f"/api/v1/servers/{server.pk}/firewall/")
    assert response.status_code == 200
    assert response.json() == {
        "inbound": [],
        "default_inbound": "accept",
        "applied": True,
        "applied_at": None,
    }
    assert not Firewall.objects.filter(pk=server.pk).exists()
