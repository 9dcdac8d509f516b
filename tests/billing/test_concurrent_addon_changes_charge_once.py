"""On real Postgres with real threads: requests that start the same address on a server at once make one
add-on and one charge; ending it at once credits once; moving it both ways at once neither deadlocks nor
leaves it running twice. Each takes the customer's lock first, as the panel's transactions do."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection, transaction

from billing import addons, subscriptions
from billing.models import InvoiceLine, LedgerEntry, SubscriptionAddon
from panel.models import User
from tests import factories
from tests.factories import check_books
from tests.factories import local_time as at

pytestmark = pytest.mark.django_db(transaction=True)

PRICE = Decimal("31000")
ADDRESS = "192.0.2.10"
LABEL = f"Additional IPv4 address {ADDRESS}"


@pytest.fixture(autouse=True)
def rupiah(settings):
    settings.TIME_ZONE = "Asia/Jakarta"
    settings.PANEL_CURRENCY = "IDR"
    settings.PRORATE_DOWNGRADE_CREDIT = True


def at_once(count: int, work: Callable[[int], object]) -> list:
    """Run work(0) ... work(count - 1) in threads released together; each closes its DB connection."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = work(i)
        except BaseException as exc:  # noqa: B036 - reported to the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread hung (a deadlock?)"
    assert not errors, errors
    return results


def as_the_panel(customer: User, work: Callable[[], object]) -> object:
    """`work` in a transaction that locked the customer first (panel.servers.locks: FOR NO KEY UPDATE)."""
    with transaction.atomic():
        User.objects.select_for_update(no_key=True).get(pk=customer.pk)
        return work()


@pytest.fixture
def two_servers(db):
    customer = factories.make_user(password=None)
    admin = factories.make_user(User.Role.ADMIN, password=None)
    addons.set_addon_price("ipv4", PRICE, admin)
    plan = factories.make_plan(price_monthly=Decimal("50000"))
    subscriptions.open_subscription(customer, plan, "a", "a.example.com", at=at(2026, 3, 1, 10))
    subscriptions.open_subscription(customer, plan, "b", "b.example.com", at=at(2026, 3, 11, 10))
    return customer


def addon_lines(customer) -> list[InvoiceLine]:
    return list(InvoiceLine.objects.filter(invoice__account=customer, kind=InvoiceLine.Kind.ADDON))


def test_starting_one_address_at_once_makes_one_addon_and_one_charge(two_servers):
    customer = two_servers
    started = at_once(
        4,
        lambda i: (
            as_the_panel(
                customer, lambda: addons.start_addon("a", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 17, 10))
            ).pk
        ),
    )
    assert len(set(started)) == 1
    assert SubscriptionAddon.objects.count() == 1
    [line] = addon_lines(customer)
    assert line.amount == Decimal("15000")
    check_books(customer)


def test_ending_one_address_at_once_credits_once(two_servers):
    customer = two_servers
    addons.start_addon("a", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 17, 10))
    at_once(4, lambda i: addons.end_addon("a", ADDRESS, at=at(2026, 3, 27, 10)))
    assert list(
        LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CREDIT).values_list("amount", flat=True)
    ) == [Decimal("5000")]
    check_books(customer)


def test_moving_both_ways_at_once_leaves_one_running_addon(two_servers):
    customer = two_servers
    addons.start_addon("a", "ipv4", ADDRESS, LABEL, at=at(2026, 3, 17, 10))
    moves = [("a", "b"), ("b", "a")] * 2
    at_once(
        4,
        lambda i: as_the_panel(
            customer, lambda: addons.move_addon(*moves[i], ADDRESS, LABEL, at=at(2026, 3, 21, 10))
        ),
    )
    assert SubscriptionAddon.objects.filter(ended_at__isnull=True).count() == 1
    check_books(customer)
