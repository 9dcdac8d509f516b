"""hypervisor.reverse_dns against a real PowerDNS: a name is set only on an address the consumer holds and
only if it is a hostname; a push publishes it (or withdraws the record of a released address) and marks the
row pushed, or failed with the reason; a push that raced a newer change never marks that change pushed;
the sync's list holds what is pending, failures a few minutes old and names set before PowerDNS was
configured."""

from __future__ import annotations

import select
import socket
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
from tests.powerdns_server import API_URL, powerdns_fixture, random_ipv4_network  # noqa: F401

State = IPAddress.PtrState
POWERDNS_PORT = int(API_URL.rsplit(":", 1)[1])


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


class HeldPowerDNS:
    """A TCP relay in front of the real PowerDNS that holds every connection until `go` is set: a PowerDNS
    that is slow to answer. `asked` is set when the first connection arrives."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.asked = threading.Event()
        self.go = threading.Event()
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _address = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        self.asked.set()
        self.go.wait(30)
        with client, socket.create_connection(("127.0.0.1", POWERDNS_PORT)) as upstream:
            ends = {client: upstream, upstream: client}
            while True:
                readable, _w, _x = select.select(list(ends), [], [], 30)
                if not readable:
                    return
                for end in readable:
                    data = end.recv(65536)
                    if not data:
                        return
                    ends[end].sendall(data)

    def close(self) -> None:
        self.closing = True
        self.go.set()
        self.listener.close()


def advisory_turns(address_id: int) -> list[tuple[str, object]]:
    """The sessions holding the reverse DNS turn of the address: their state and transaction start."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT a.state, a.xact_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s
            """,
            [reverse_dns.ADVISORY_LOCK_CLASS, address_id],
        )
        return cursor.fetchall()


def my_advisory_locks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
        return cursor.fetchone()[0]


def push_in_thread(address_id: int) -> tuple[threading.Thread, list]:
    results: list = []

    def pushing() -> None:
        try:
            results.append(reverse_dns.push(address_id))
        finally:
            connection.close()

    thread = threading.Thread(target=pushing)
    thread.start()
    return thread, results


def test_no_transaction_is_open_while_powerdns_is_asked(transactional_db, catalog, powerdns, settings):
    network = random_ipv4_network()
    powerdns.add_reverse_zone(network)
    consumer = uuid.uuid4()
    row = held_address(catalog, consumer, network)
    reverse_dns.set_ptr(consumer, row.address, "mail.example.com")

    slow = HeldPowerDNS()
    settings.POWERDNS_API_URL = slow.url
    try:
        thread, results = push_in_thread(row.pk)
        assert slow.asked.wait(10)
        # The push holds the address's turn on its session, and no transaction, while PowerDNS is asked.
        assert advisory_turns(row.pk) == [("idle", None)]
        slow.go.set()
        thread.join(15)
    finally:
        slow.close()
    assert results == [State.PUSHED]
    assert advisory_turns(row.pk) == []
    assert powerdns.resolve_ptr(row.address) == ["mail.example.com."]


def test_pushes_of_one_address_take_turns_and_always_give_theirs_back(transactional_db, catalog, powerdns):
    network = random_ipv4_network()
    powerdns.add_reverse_zone(network)
    consumer = uuid.uuid4()
    row = held_address(catalog, consumer, network)
    reverse_dns.set_ptr(consumer, row.address, "mail.example.com")

    # Another push of this address has its turn: this one waits for it, and has asked PowerDNS nothing.
    key = [reverse_dns.ADVISORY_LOCK_CLASS, row.pk]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", key)
    try:
        thread, results = push_in_thread(row.pk)
        time.sleep(1)
        assert thread.is_alive() and results == []
        assert powerdns.ptr_records(row.address) == []
        assert IPAddress.objects.get(pk=row.pk).ptr_state == State.PENDING
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)
    thread.join(15)
    assert results == [State.PUSHED]
    assert powerdns.resolve_ptr(row.address) == ["mail.example.com."]

    # A push gives its turn back whatever happens: published, failed, or nothing to do.
    assert my_advisory_locks() == 0
    reverse_dns.set_ptr(consumer, row.address, "smtp.example.com")
    assert reverse_dns.push(row.pk) == State.PUSHED
    assert reverse_dns.push(row.pk) is None
    assert my_advisory_locks() == 0
    powerdns.delete_zone(powerdns.zones[0])
    reverse_dns.set_ptr(consumer, row.address, "imap.example.com")
    assert reverse_dns.push(row.pk) == State.FAILED
    assert my_advisory_locks() == 0
