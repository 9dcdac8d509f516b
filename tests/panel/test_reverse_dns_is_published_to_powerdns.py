"""Reverse DNS through the API (`GET, PUT servers/{id}/rdns/`) and the server page, published to a real
PowerDNS (tests/powerdns_server.py) and read back with real DNS queries: a name is published by a worker,
a change replaces it, clearing it or releasing the address withdraws it (the sync job); an address with no
reverse zone fails with the reason; without PowerDNS nothing is pushed; bad input is a 400 that changes
nothing; other customers get 404 and read-only tokens 403."""

from __future__ import annotations

import ipaddress
import socket
import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone

from hypervisor import ipam
from hypervisor.models import IPAddress, IPPool
from panel import tasks
from panel.models import ActivityEvent, Server
from panel.servers import reverse_dns
from tests import factories
from tests.conftest import wait_for
from tests.powerdns_server import powerdns_fixture, random_ipv4_network, random_ipv6_network  # noqa: F401

pytestmark = pytest.mark.django_db


def url(server) -> str:
    return f"/api/v1/servers/{server.pk}/rdns/"


@pytest.fixture
def server(customer, catalog) -> Server:
    return factories.make_server(customer, catalog, name="mail")


def hold(server: Server, address: IPAddress) -> IPAddress:
    IPAddress.objects.filter(pk=address.pk).update(consumer_uuid=server.id, allocated_at=timezone.now())
    server.forget_addresses()
    return IPAddress.objects.get(pk=address.pk)


def ipv4_of(server: Server, catalog, network) -> IPAddress:
    pool = factories.make_pool(catalog["region"], cidr=str(network))
    return hold(server, IPAddress.objects.filter(pool=pool).order_by("value").first())


def ipv6_of(server: Server, catalog, network: ipaddress.IPv6Network) -> IPAddress:
    """The server's routed /64 of an IPv6 pool (rows made directly: IPv6 pools are IPAM's own work)."""
    pool = IPPool.objects.create(
        region=catalog["region"],
        name=str(network),
        family=IPPool.Family.IPV6,
        assignment=IPPool.Assignment.PREFIX64,
        cidr=str(network),
        gateway="fe80::1",
    )
    subnet = list(network.subnets(new_prefix=64))[1]
    address = subnet.network_address + 1
    return hold(
        server,
        IPAddress.objects.create(pool=pool, address=str(address), prefix_length=64, value=int(address)),
    )


@pytest.fixture
def ipv4(server, catalog, powerdns) -> IPAddress:
    network = random_ipv4_network()
    powerdns.add_reverse_zone(network)
    return ipv4_of(server, catalog, network)


@pytest.fixture
def ipv6(server, catalog, powerdns) -> IPAddress:
    network = random_ipv6_network()
    powerdns.add_reverse_zone(network)
    return ipv6_of(server, catalog, network)


def sync() -> int:
    """The periodic job, run as beat would have a worker run it."""
    return tasks.sync_reverse_dns.apply().get()


def listed(api, user, server) -> dict[str, dict]:
    answer = api(user).get(url(server))
    assert answer.status_code == 200
    return {row["ip"]: row for row in answer.json()["results"]}


def test_a_put_is_published_by_a_worker_a_change_replaces_it_and_clearing_withdraws_it(
    celery_worker, api, customer, server, ipv4, powerdns
):
    client = api(customer)
    answer = client.put(url(server), {"ip": ipv4.address, "name": "Mail.Example.com."}, format="json")
    assert answer.status_code == 200
    assert answer.json() == {"ip": ipv4.address, "name": "mail.example.com", "dns": "pending"}
    wait_for(lambda: powerdns.resolve_ptr(ipv4.address) == ["mail.example.com."], timeout=15)
    wait_for(lambda: listed(api, customer, server)[ipv4.address]["dns"] == "published", timeout=15)

    changed = client.put(url(server), {"ip": ipv4.address, "name": "smtp.example.com"}, format="json")
    assert changed.status_code == 200
    wait_for(lambda: powerdns.resolve_ptr(ipv4.address) == ["smtp.example.com."], timeout=15)

    cleared = client.put(url(server), {"ip": ipv4.address, "name": ""}, format="json")
    assert cleared.json() == {"ip": ipv4.address, "name": "", "dns": "pending"}
    wait_for(lambda: powerdns.resolve_ptr(ipv4.address) == [], timeout=15)
    wait_for(
        lambda: (
            listed(api, customer, server)[ipv4.address]
            == {"ip": ipv4.address, "name": "", "dns": "published"}
        ),
        timeout=15,
    )
    assert powerdns.ptr_records(ipv4.address) == []


def test_the_page_names_an_ipv6_address_and_the_sync_publishes_it(
    client, api, customer, server, ipv4, ipv6, powerdns
):
    expanded = ipaddress.IPv6Address(ipv6.address).exploded.upper()
    client.force_login(customer)
    page = client.post(
        f"/servers/{server.pk}/ptr/", {"address": expanded, "ptr": "v6.example.com"}, follow=True
    )
    assert page.status_code == 200
    assert f"The reverse DNS name of {ipv6.address} is now v6.example.com." in page.content.decode()
    assert IPAddress.objects.get(pk=ipv6.pk).ptr_state == IPAddress.PtrState.PENDING
    assert listed(api, customer, server)[ipv6.address]["dns"] == "pending"

    assert sync() == 1
    assert powerdns.resolve_ptr(ipv6.address) == ["v6.example.com."]
    rows = listed(api, customer, server)
    assert rows[ipv6.address] == {"ip": ipv6.address, "name": "v6.example.com", "dns": "published"}
    assert rows[ipv4.address] == {"ip": ipv4.address, "name": "", "dns": "published"}

    # The API takes IPv6 in any spelling too, and answers it as stored.
    answer = api(customer).put(url(server), {"ip": expanded, "name": "v6b.example.com"}, format="json")
    assert answer.json()["ip"] == ipv6.address
    sync()
    assert powerdns.resolve_ptr(ipv6.address) == ["v6b.example.com."]


def test_releasing_a_named_address_withdraws_its_record_through_the_sync_job(
    api, customer, server, ipv4, powerdns
):
    api(customer).put(url(server), {"ip": ipv4.address, "name": "mail.example.com"}, format="json")
    sync()
    assert powerdns.resolve_ptr(ipv4.address) == ["mail.example.com."]

    ipam.release(server.id)  # what deleting the server does
    assert sync() == 1
    assert powerdns.resolve_ptr(ipv4.address) == []
    released = IPAddress.objects.get(pk=ipv4.pk)
    assert (released.consumer_uuid, released.ptr, released.ptr_state) == (None, "", IPAddress.PtrState.PUSHED)


def test_a_release_followed_by_push_after_commit_withdraws_the_record_without_the_sync_job(
    celery_worker, api, customer, server, ipv4, catalog, powerdns
):
    unnamed = ipv4_of(server, catalog, random_ipv4_network())
    api(customer).put(url(server), {"ip": ipv4.address, "name": "mail.example.com"}, format="json")
    wait_for(lambda: powerdns.resolve_ptr(ipv4.address) == ["mail.example.com."], timeout=15)
    wait_for(lambda: IPAddress.objects.get(pk=ipv4.pk).ptr_state == IPAddress.PtrState.PUSHED, timeout=15)

    with transaction.atomic():
        ids = [address.pk for address in server.ip_addresses]
        ipam.release(server.id)
        reverse_dns.push_after_commit(ids)
    # A worker withdraws the record now, not the sync job a minute later; the unnamed address has nothing
    # to withdraw and is not pushed.
    wait_for(lambda: powerdns.resolve_ptr(ipv4.address) == [], timeout=15)
    wait_for(lambda: IPAddress.objects.get(pk=ipv4.pk).ptr_state == IPAddress.PtrState.PUSHED, timeout=15)
    assert IPAddress.objects.get(pk=unnamed.pk).ptr_state == IPAddress.PtrState.NONE


def test_push_after_commit_sends_nothing_when_the_transaction_rolls_back_or_without_powerdns(
    celery_worker, api, customer, server, ipv4, powerdns, settings
):
    api(customer).put(url(server), {"ip": ipv4.address, "name": "mail.example.com"}, format="json")
    wait_for(lambda: powerdns.resolve_ptr(ipv4.address) == ["mail.example.com."], timeout=15)

    class Undone(Exception):
        pass

    with pytest.raises(Undone), transaction.atomic():
        ipam.release(server.id)
        reverse_dns.push_after_commit([ipv4.pk])
        raise Undone
    assert IPAddress.objects.get(pk=ipv4.pk).consumer_uuid == server.id

    settings.POWERDNS_API_URL = ""
    with transaction.atomic():
        ipam.release(server.id)
        reverse_dns.push_after_commit([ipv4.pk])
    settings.POWERDNS_API_URL = "http://127.0.0.1:8089"
    time.sleep(1)  # a push sent would have withdrawn the record by now
    assert IPAddress.objects.get(pk=ipv4.pk).ptr_state == IPAddress.PtrState.PENDING
    assert powerdns.resolve_ptr(ipv4.address) == ["mail.example.com."]
    assert sync() == 1  # the sync job withdraws it
    assert powerdns.resolve_ptr(ipv4.address) == []


def test_an_address_without_a_reverse_zone_fails_with_the_reason(api, customer, server, catalog, powerdns):
    address = ipv4_of(server, catalog, random_ipv4_network())  # no zone made for it
    answer = api(customer).put(
        url(server), {"ip": address.address, "name": "mail.example.com"}, format="json"
    )
    assert answer.status_code == 200 and answer.json()["dns"] == "pending"

    assert sync() == 0
    row = IPAddress.objects.get(pk=address.pk)
    assert row.ptr_state == IPAddress.PtrState.FAILED
    assert f"no reverse zone for {address.address}" in row.ptr_error
    assert listed(api, customer, server)[address.address]["dns"] == "failed"

    # Once the zone exists, the sync tries again a few minutes after the change.
    network = ipaddress.IPv4Network(f"{address.address}/24", strict=False)
    powerdns.add_reverse_zone(network)
    assert sync() == 0  # not at once
    IPAddress.objects.filter(pk=address.pk).update(ptr_changed_at=timezone.now() - timedelta(minutes=10))
    assert sync() == 1
    assert powerdns.resolve_ptr(address.address) == ["mail.example.com."]
    assert listed(api, customer, server)[address.address]["dns"] == "published"


def test_without_powerdns_the_name_is_kept_and_nothing_is_pushed(
    api, customer, server, ipv4, powerdns, settings
):
    settings.POWERDNS_API_URL = ""
    answer = api(customer).put(url(server), {"ip": ipv4.address, "name": "mail.example.com"}, format="json")
    assert answer.json() == {"ip": ipv4.address, "name": "mail.example.com", "dns": "not_configured"}
    assert IPAddress.objects.get(pk=ipv4.pk).ptr_state == ""
    assert sync() == 0
    assert powerdns.ptr_records(ipv4.address) == [] and powerdns.resolve_ptr(ipv4.address) == []
    assert listed(api, customer, server)[ipv4.address]["dns"] == "not_configured"


def test_bad_names_and_addresses_are_400_with_the_field_and_change_nothing(
    api, customer, server, ipv4, catalog
):
    client = api(customer)
    someone_elses = IPAddress.objects.filter(pool=ipv4.pool, consumer_uuid__isnull=True).first()
    cases = [
        ({"ip": ipv4.address, "name": "bad_name!.example"}, "name", "not a valid hostname label"),
        ({"ip": ipv4.address, "name": "mail"}, "name", "full hostname"),
        ({"ip": ipv4.address, "name": "x" * 254}, "name", "253"),
        ({"ip": someone_elses.address, "name": "mail.example.com"}, "ip", "is not an address of this server"),
        ({"ip": "2001:db8::99", "name": "mail.example.com"}, "ip", "is not an address of this server"),
        ({"ip": "not-an-ip", "name": "mail.example.com"}, "ip", "is not an IPv4 or IPv6 address"),
        ({"name": "mail.example.com"}, "ip", "required"),
    ]
    for body, field, message in cases:
        answer = client.put(url(server), body, format="json")
        assert answer.status_code == 400, body
        error = answer.json()["error"]
        assert error["code"] == "invalid"
        assert message in " ".join(error["fields"][field]), (body, error)
    assert not IPAddress.objects.exclude(ptr="").exists()
    assert not IPAddress.objects.exclude(ptr_state="").exists()
    assert not ActivityEvent.objects.filter(type=ActivityEvent.Type.REVERSE_DNS).exists()


def test_other_customers_get_404_and_read_tokens_403(api, customer, other_customer, server, ipv4):
    body = {"ip": ipv4.address, "name": "evil.example.com"}
    assert api(other_customer).get(url(server)).status_code == 404
    answer = api(other_customer).put(url(server), body, format="json")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    assert api(None).put(url(server), body, format="json").status_code == 401

    raw = api(customer).post("/api/v1/tokens/", {"scope": "read"}, format="json").json()["token"]
    reader = api(None)
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert reader.get(url(server)).status_code == 200
    answer = reader.put(url(server), body, format="json")
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "read_only_token"
    assert IPAddress.objects.get(pk=ipv4.pk).ptr == ""


def test_a_change_is_on_the_customers_activity_log_and_a_deleted_server_is_409(api, customer, server, ipv4):
    api(customer).put(url(server), {"ip": ipv4.address, "name": "mail.example.com"}, format="json")
    event = ActivityEvent.objects.get(type=ActivityEvent.Type.REVERSE_DNS)
    assert (event.account, event.actor, event.target) == (customer, customer, f"server:{server.pk}")
    assert event.data == {"ip": ipv4.address, "name": "mail", "ptr": "mail.example.com"}

    Server.objects.filter(pk=server.pk).update(status=Server.Status.DELETED)
    answer = api(customer).put(url(server), {"ip": ipv4.address, "name": "x.example.com"}, format="json")
    assert answer.status_code == 409
    assert IPAddress.objects.get(pk=ipv4.pk).ptr == "mail.example.com"


def test_the_sync_job_runs_every_minute():
    jobs = {job["task"]: job["schedule"] for job in django_settings.CELERY_BEAT_SCHEDULE.values()}
    assert jobs["panel.tasks.sync_reverse_dns"] <= 60


def test_while_powerdns_is_down_the_sync_leaves_names_pending(
    api, customer, server, ipv4, powerdns, settings
):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        settings.POWERDNS_API_URL = f"http://127.0.0.1:{unused.getsockname()[1]}"
    api(customer).put(url(server), {"ip": ipv4.address, "name": "mail.example.com"}, format="json")
    assert sync() == 0
    assert IPAddress.objects.get(pk=ipv4.pk).ptr_state == IPAddress.PtrState.PENDING

    settings.POWERDNS_API_URL = "http://127.0.0.1:8089"  # back up
    assert sync() == 1
    assert powerdns.resolve_ptr(ipv4.address) == ["mail.example.com."]
