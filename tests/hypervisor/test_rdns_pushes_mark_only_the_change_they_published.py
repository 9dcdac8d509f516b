"""hypervisor.reverse_dns against a real PowerDNS: a name is set only on an address the consumer holds and
only if it is a hostname; a push publishes it (or withdraws the record of a released address) and marks the
row pushed, or failed with the reason; a push that raced a newer change never marks that change pushed;
the sync's list holds what is pending, failures a few minutes old and names set before PowerDNS was
configured."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from hypervisor import ipam, reverse_dns
from hypervisor.models import IPAddress
from tests import factories
from tests.powerdns_server import powerdns_fixture, random_ipv4_network  # noqa: F401

State = IPAddress.PtrState


def held_address(catalog, consumer: uuid.UUID, network) -> IPAddress:
    pool = factories.make_pool(catalog["region"], cidr=str(network))
    row = IPAddress.objects.filter(pool=pool).order_by("value").first()
    IPAddress.objects.filter(pk=row.pk).update(consumer_uuid=consumer, allocated_at=timezone.now())
    return IPAddress.objects.get(pk=row.pk)


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("Mail.Example.COM.", "mail.example.com"),
        ("  smtp-1.example.net ", "smtp-1.example.net"),
        ("", ""),
        (".", ""),
        (None, ""),
        ("a." * 125 + "io", "a." * 125 + "io"),  # 252 characters
    ],
)
def test_a_hostname_is_kept_lowercased_without_its_trailing_dot(typed, kept):
    assert reverse_dns.validate_name(typed) == kept


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("localhost", "full hostname"),
        ("-mail.example.com", "not a valid hostname label"),
        ("mail-.example.com", "not a valid hostname label"),
        ("mail..example.com", "not a valid hostname label"),
        ("bad_name!.example", "not a valid hostname label"),
        ("x" * 64 + ".example.com", "not a valid hostname label"),
        ("a." * 126 + "io", "at most 253"),
        ("mail.example.123", "numeric label"),
        ("192.0.2.1", "numeric label"),
    ],
)
def test_a_name_that_is_not_a_hostname_is_refused_with_the_reason(typed, reason):
    with pytest.raises(ValidationError, match=reason) as refused:
        reverse_dns.validate_name(typed)
    assert refused.value.code == "invalid_ptr"


def test_a_name_is_set_only_on_an_address_the_consumer_holds(db, catalog, powerdns):
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    row = held_address(catalog, mine, random_ipv4_network())
    with pytest.raises(IPAddress.DoesNotExist):
        reverse_dns.set_ptr(theirs, row.address, "evil.example.com")
    with pytest.raises(ValidationError, match="not an IPv4 or IPv6 address"):
        reverse_dns.set_ptr(mine, "192.0.2.300", "mail.example.com")
    with pytest.raises(ValidationError, match="full hostname"):
        reverse_dns.set_ptr(mine, row.address, "mail")
    assert IPAddress.objects.get(pk=row.pk).ptr == ""

    named = reverse_dns.set_ptr(mine, f" {row.address} ", "Mail.Example.com")
    assert (named.ptr, named.ptr_state, named.ptr_error) == ("mail.example.com", State.PENDING, "")
    assert named.ptr_changed_at is not None


def test_a_push_publishes_then_a_release_is_withdrawn(db, catalog, powerdns):
    network = random_ipv4_network()
    powerdns.add_reverse_zone(network)
    consumer = uuid.uuid4()
    row = held_address(catalog, consumer, network)
    reverse_dns.set_ptr(consumer, row.address, "mail.example.com")

    assert reverse_dns.push(row.pk) == State.PUSHED
    assert powerdns.resolve_ptr(row.address) == ["mail.example.com."]
    assert IPAddress.objects.get(pk=row.pk).ptr_state == State.PUSHED
    assert reverse_dns.push(row.pk) is None  # nothing left to do
    assert row.pk not in reverse_dns.pending()

    ipam.release(consumer)
    released = IPAddress.objects.get(pk=row.pk)
    assert (released.ptr, released.ptr_state) == ("", State.PENDING)
    assert reverse_dns.pending() == [row.pk]
    assert reverse_dns.push(row.pk) == State.PUSHED
    assert powerdns.resolve_ptr(row.address) == []


def test_a_failed_push_says_why_and_is_tried_again_once_a_few_minutes_old(db, catalog, powerdns):
    network = random_ipv4_network()  # no zone yet
    consumer = uuid.uuid4()
    row = held_address(catalog, consumer, network)
    reverse_dns.set_ptr(consumer, row.address, "mail.example.com")

    assert reverse_dns.push(row.pk) == State.FAILED
    failed = IPAddress.objects.get(pk=row.pk)
    assert failed.ptr_state == State.FAILED
    assert f"no reverse zone for {row.address}" in failed.ptr_error
    assert row.pk not in reverse_dns.pending()  # just failed: not at once again

    powerdns.add_reverse_zone(network)
    IPAddress.objects.filter(pk=row.pk).update(ptr_changed_at=timezone.now() - timedelta(minutes=6))
    assert reverse_dns.pending() == [row.pk]
    assert reverse_dns.push(row.pk) == State.PUSHED
    assert IPAddress.objects.get(pk=row.pk).ptr_error == ""
    assert powerdns.resolve_ptr(row.address) == ["mail.example.com."]


def test_names_set_before_powerdns_was_configured_are_published_by_the_sync(db, catalog, powerdns, settings):
    network = random_ipv4_network()
    powerdns.add_reverse_zone(network)
    consumer = uuid.uuid4()
    row = held_address(catalog, consumer, network)

    settings.POWERDNS_API_URL = ""
    named = reverse_dns.set_ptr(consumer, row.address, "mail.example.com")
    assert named.ptr_state == State.NONE
    assert reverse_dns.pending() == [] and reverse_dns.push(row.pk) is None
    assert powerdns.resolve_ptr(row.address) == []

    settings.POWERDNS_API_URL = "http://127.0.0.1:8089"
    assert reverse_dns.pending() == [row.pk]
    assert reverse_dns.push(row.pk) == State.PUSHED
    assert powerdns.resolve_ptr(row.address) == ["mail.example.com."]


def test_an_older_push_never_marks_a_newer_change_published(transactional_db, catalog, powerdns):
    network = random_ipv4_network()
    powerdns.add_reverse_zone(network)
    consumer = uuid.uuid4()
    row = held_address(catalog, consumer, network)
    reverse_dns.set_ptr(consumer, row.address, "old.example.com")

    changing = threading.Event()

    def newer_change() -> None:
        # A customer's new name, committed while the push below is under way: its row lock makes the
        # push's recording wait, and the recording then finds a newer change.
        try:
            with transaction.atomic():
                reverse_dns.set_ptr(consumer, row.address, "new.example.com")
                changing.set()
                time.sleep(1.5)
        finally:
            connection.close()

    thread = threading.Thread(target=newer_change)
    thread.start()
    assert changing.wait(10)
    try:
        assert reverse_dns.push(row.pk) is None  # it published "old", but may not say so
    finally:
        thread.join(10)

    current = IPAddress.objects.get(pk=row.pk)
    assert (current.ptr, current.ptr_state) == ("new.example.com", State.PENDING)
    assert reverse_dns.pending() == [row.pk]
    assert reverse_dns.push(row.pk) == State.PUSHED
    assert powerdns.resolve_ptr(row.address) == ["new.example.com."]
