"""A whole simulated year of one customer's server, with a moved clock, in IDR and in USD.

The order opens the subscription and its first invoice; `billing_run --at` renews it on each anniversary
(the 31st rule: Feb 28, Mar 31, Apr 30 ...) with invoice numbers that never skip; a resize up invoices the
prorated difference and a resize down credits it; payments settle open invoices oldest first; an unpaid
invoice is reminded, reported overdue, gets the server suspended after the grace period and unsuspended at
once on payment; an account left unpaid is warned and terminated. The ledger's invariant is checked after
every step. Moments are in the installation's time zone (Asia/Jakarta), like the customer's invoices.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.conf import settings
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from billing import invoice_mail
from billing.invoices import void_invoice
from billing.models import Invoice, InvoiceSequence, LedgerEntry, Payment, Subscription
from billing.payments import record_payment
from billing.subscriptions import change_plan, open_subscription
from hypervisor.models import Allocation, Host
from panel import dispatch
from panel.models import Operation
from panel.servers import actions, operations
from tests import factories
from tests.factories import check_books
from tests.factories import local_time as at

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass(frozen=True)
class Money:
    code: str
    unit: Decimal  # the currency's smallest amount
    basic: Decimal  # monthly prices
    premium: Decimal
    basic_hourly: Decimal
    premium_hourly: Decimal
    upgrade: Decimal  # the prorated amounts of the year below, worked out by hand
    downgrade: Decimal


MONEY = {
    # Upgrade on Feb 6 16:30 in the period Jan 31 10:00 - Feb 28 10:00: 521.5 h of 672 h remain.
    #   IDR 100000 * 521.5 / 672 = 77604.17 -> 77604; USD 7.50 * 521.5 / 672 = 5.8203 -> 5.82.
    # Downgrade on Mar 20 22:45 in the period Feb 28 10:00 - Mar 31 10:00: 251.25 h of 744 h remain.
    #   IDR 100000 * 251.25 / 744 = 33770.16 -> 33770; USD 7.50 * 251.25 / 744 = 2.5328 -> 2.53.
    "IDR": Money(
        "IDR", Decimal("1"), Decimal("150000"), Decimal("250000"), Decimal("250"), Decimal("400"),
        Decimal("77604"), Decimal("33770"),
    ),
    "USD": Money(
        "USD", Decimal("0.01"), Decimal("10.00"), Decimal("17.50"), Decimal("0.0150"), Decimal("0.0270"),
        Decimal("5.82"), Decimal("2.53"),
    ),
}  # fmt: skip


def prorate(difference: Decimal, moment, start, end, unit: Decimal) -> Decimal:
    """The price difference for the rest of the period [start, end) from `moment`, rounded half up."""
    remaining = Decimal(int((end - moment).total_seconds()))
    period = Decimal(int((end - start).total_seconds()))
    return (difference * remaining / period).quantize(unit, rounding=ROUND_HALF_UP)


@pytest.fixture(autouse=True)
def jakarta(settings):
    settings.TIME_ZONE = "Asia/Jakarta"


@pytest.fixture(params=["IDR", "USD"])
def money(request, settings) -> Money:
    settings.PANEL_CURRENCY = request.param
    return MONEY[request.param]


@pytest.fixture
def dispatched(monkeypatch) -> list:
    """Operations sent to the workers (recorded, not sent: the test runs them itself)."""
    sent: list = []
    monkeypatch.setattr(dispatch, "operation", lambda operation_id, *_where: sent.append(operation_id))
    return sent


@pytest.fixture
def plans(money, catalog):
    basic = factories.make_plan(
        "basic", memory_mib=256, disk_gib=1, price_monthly=money.basic, price_hourly=money.basic_hourly
    )
    premium = factories.make_plan(
        "premium", vcpus=2, memory_mib=512, disk_gib=1, price_monthly=money.premium,
        price_hourly=money.premium_hourly,
    )  # fmt: skip
    return basic, premium


@pytest.fixture
def server(customer, catalog, plans, dispatched):
    """The customer orders a server on the basic plan on 31 January 2026, 10:00; a worker creates it."""
    with factories.TidySimulatedHost(catalog["host"].uri):
        with factories.moved_clock(at(2026, 1, 31, 10)):
            server = actions.order_server(
                customer, name="web1", plan=plans[0], image=catalog["image"], region=catalog["region"]
            )
        create = factories.run_operation(Operation.objects.get(server=server, type="create"))
        assert create.status == "succeeded", create.error
        server.refresh_from_db()
        assert server.status == "running"
        yield server


class Mailbox:
    def __init__(self, customer, queue):
        self.customer, self.seen, self.queue = customer, 0, queue

    def new(self) -> list[str]:
        """Subjects of the mails sent since the last look (all to the customer), the invoices' mails (sent
        by a worker, with their PDF) once the worker has done its job, a new server's first invoice's once
        beat's sweep has handed it on (INVOICE_MAIL_DELAY_SECONDS after the order)."""
        invoice_mail.hand_on_due(timezone.now() + timedelta(seconds=settings.INVOICE_MAIL_DELAY_SECONDS))
        self.queue.run()
        messages = mail.outbox[self.seen :]
        self.seen = len(mail.outbox)
        assert all(message.to == [self.customer.email] for message in messages)
        return [message.subject for message in messages]


def billing_run(moment) -> None:
    call_command("billing_run", at=moment.isoformat(), stdout=io.StringIO())


def number(n: int, year: int = 2026) -> str:
    return f"INV-{year}-{n:06d}"


def invoice(n: int) -> Invoice:
    return Invoice.objects.get(number=number(n))


def test_a_year_of_one_server_in_idr_and_usd(
    customer, catalog, plans, money, server, dispatched, billing_queue
):
    basic, premium = plans
    mailbox = Mailbox(customer, billing_queue)
    reference = str(server.id)

    def subscription() -> Subscription:
        return Subscription.objects.get(reference=reference)

    def run(moment) -> tuple[Decimal, Decimal]:
        billing_run(moment)
        return check_books(customer)

    def pay(ref: str, amount: Decimal, moment) -> tuple[Decimal, Decimal]:
        payment, created = record_payment(customer, amount, ref, at=moment)
        assert created and payment.amount == amount and payment.currency == money.code
        return check_books(customer)

    def statuses() -> list[str]:
        invoices = Invoice.objects.filter(account=customer).order_by("number")
        return list(invoices.values_list("status", flat=True))

    def operations_of(kind: str):
        return Operation.objects.filter(server=server, type=kind)

    # 31 January 10:00: the order opened a monthly subscription and invoiced its first month at once.
    sub = subscription()
    assert (sub.plan, sub.cycle, sub.status, sub.price, sub.currency) == (
        basic, "monthly", "active", money.basic, money.code
    )  # fmt: skip
    assert (sub.started_at, sub.period_start, sub.paid_through) == (
        at(2026, 1, 31, 10), at(2026, 1, 31, 10), at(2026, 2, 28, 10)
    )  # fmt: skip
    first = invoice(1)
    assert (first.status, first.total, first.currency) == ("open", money.basic, money.code)
    assert (first.issued_at, first.due_at) == (at(2026, 1, 31, 10), at(2026, 2, 7, 10))
    [line] = first.lines.all()
    assert (line.kind, line.subscription_id, line.amount) == ("plan", sub.pk, money.basic)
    assert (line.period_start, line.period_end) == (at(2026, 1, 31, 10), at(2026, 2, 28, 10))
    assert mailbox.new() == [f"Invoice {number(1)}"]
    assert check_books(customer) == (-money.basic, 0)

    # Nothing is due on 1 February; the reminder comes 3 days before the due date, once.
    assert run(at(2026, 2, 1)) == (-money.basic, 0)
    run(at(2026, 2, 4, 9, 59))
    assert mailbox.new() == []
    run(at(2026, 2, 4, 10))
    assert mailbox.new() == [f"Reminder: invoice {number(1)} is due soon"]
    run(at(2026, 2, 4, 10))
    assert mailbox.new() == []
    assert Invoice.objects.count() == 1

    # 6 February 16:30: a resize up to premium invoices the prorated difference for the rest of the period.
    with factories.moved_clock(at(2026, 2, 6, 16, 30)):
        resize = actions.resize_server(server, premium, customer)
    assert factories.run_operation(resize).status == "succeeded"
    server.refresh_from_db()
    assert server.plan == premium
    difference, unit = money.premium - money.basic, money.unit
    expected = prorate(difference, at(2026, 2, 6, 16, 30), at(2026, 1, 31, 10), at(2026, 2, 28, 10), unit)
    assert expected == money.upgrade
    upgrade = invoice(2)
    assert (upgrade.status, upgrade.total) == ("open", money.upgrade)
    assert (upgrade.issued_at, upgrade.due_at) == (at(2026, 2, 6, 16, 30), at(2026, 2, 13, 16, 30))
    [line] = upgrade.lines.all()
    assert (line.kind, line.amount) == ("proration", money.upgrade)
    assert (line.period_start, line.period_end) == (at(2026, 2, 6, 16, 30), at(2026, 2, 28, 10))
    sub = subscription()
    assert (sub.plan, sub.price, sub.paid_through) == (premium, money.premium, at(2026, 2, 28, 10))
    assert mailbox.new() == [f"Invoice {number(2)}"]
    assert check_books(customer) == (-money.basic - money.upgrade, 0)

    # Payments settle the open invoices oldest first: the upgrade's amount alone pays neither (the older,
    # larger invoice comes first); then the first invoice is paid, then the second.
    assert pay("BANK-0001", money.upgrade, at(2026, 2, 6, 17)) == (-money.basic, money.upgrade)
    assert statuses() == ["open", "open"]
    assert mailbox.new() == []
    pay("BANK-0002", money.basic - money.unit, at(2026, 2, 6, 17, 30))
    assert statuses() == ["paid", "open"]
    assert invoice(1).paid_at == at(2026, 2, 6, 17, 30)
    assert mailbox.new() == [f"Invoice {number(1)} is paid"]
    assert pay("BANK-0003", money.unit, at(2026, 2, 6, 18)) == (0, 0)
    assert statuses() == ["paid", "paid"]
    assert invoice(2).paid_at == at(2026, 2, 6, 18)
    assert mailbox.new() == [f"Invoice {number(2)} is paid"]

    # Renewals on each anniversary of the 31st, at the price of the plan of the moment.
    def renewal(n: int, moment, end, price: Decimal) -> Invoice:
        run(moment - timedelta(minutes=1))
        assert Invoice.objects.count() == n - 1, "renewed before the anniversary"
        run(moment)
        renewed = invoice(n)
        assert Invoice.objects.count() == n
        assert (renewed.total, renewed.issued_at) == (price, moment)
        assert renewed.due_at == moment + timedelta(days=7)
        [line] = renewed.lines.all()
        assert (line.kind, line.period_start, line.period_end, line.amount) == ("plan", moment, end, price)
        assert (subscription().period_start, subscription().paid_through) == (moment, end)
        return renewed

    third = renewal(3, at(2026, 2, 28, 10), at(2026, 3, 31, 10), money.premium)
    assert third.status == "open"
    assert mailbox.new() == [f"Invoice {number(3)}"]
    pay("BANK-0004", money.premium, at(2026, 3, 2, 9))
    assert statuses()[-1] == "paid"
    assert mailbox.new() == [f"Invoice {number(3)} is paid"]

    # 20 March 22:45: a resize down credits the difference for the rest of the period (no invoice).
    with factories.moved_clock(at(2026, 3, 20, 22, 45)):
        resize = actions.resize_server(server, basic, customer)
    assert factories.run_operation(resize).status == "succeeded"
    expected = prorate(difference, at(2026, 3, 20, 22, 45), at(2026, 2, 28, 10), at(2026, 3, 31, 10), unit)
    assert expected == money.downgrade
    credit = LedgerEntry.objects.filter(account=customer, kind="credit").get()
    assert (credit.amount, credit.invoice) == (money.downgrade, None)
    assert Invoice.objects.count() == 3
    assert (subscription().plan, subscription().price) == (basic, money.basic)
    assert check_books(customer) == (money.downgrade, money.downgrade)
    assert mailbox.new() == []

    # 31 March: the credit does not cover the renewal, which stays open until the rest is paid.
    assert renewal(4, at(2026, 3, 31, 10), at(2026, 4, 30, 10), money.basic).status == "open"
    assert check_books(customer) == (money.downgrade - money.basic, money.downgrade)
    pay("BANK-0005", money.basic - money.downgrade, at(2026, 4, 1, 8))
    assert statuses()[-1] == "paid"
    # (The invoice's own mail is sent by a worker, so it may come after the payment's.)
    assert sorted(mailbox.new()) == [f"Invoice {number(4)}", f"Invoice {number(4)} is paid"]

    renewal(5, at(2026, 4, 30, 10), at(2026, 5, 31, 10), money.basic)
    pay("BANK-0006", money.basic, at(2026, 5, 1, 8))
    renewal(6, at(2026, 5, 31, 10), at(2026, 6, 30, 10), money.basic)
    # Two months at once: the next renewal is paid from the credit the moment it is issued.
    assert pay("BANK-0007", 2 * money.basic, at(2026, 6, 1, 8)) == (money.basic, money.basic)
    seventh = renewal(7, at(2026, 6, 30, 10), at(2026, 7, 31, 10), money.basic)
    assert (seventh.status, seventh.paid_at) == ("paid", at(2026, 6, 30, 10))
    assert check_books(customer) == (0, 0)
    assert sorted(mailbox.new()) == [
        f"Invoice {number(5)}", f"Invoice {number(5)} is paid",
        f"Invoice {number(6)}", f"Invoice {number(6)} is paid",
        f"Invoice {number(7)}", f"Invoice {number(7)} is paid",
    ]  # fmt: skip

    # 31 July: this renewal is left unpaid. Reminder, overdue mail, suspension after the grace period.
    assert renewal(8, at(2026, 7, 31, 10), at(2026, 8, 31, 10), money.basic).status == "open"
    assert mailbox.new() == [f"Invoice {number(8)}"]
    run(at(2026, 8, 3, 10))
    assert mailbox.new() == []
    run(at(2026, 8, 4, 10))
    assert mailbox.new() == [f"Reminder: invoice {number(8)} is due soon"]
    run(at(2026, 8, 7, 10))
    assert mailbox.new() == [f"Invoice {number(8)} is overdue"]
    run(at(2026, 8, 10, 9, 59))
    assert subscription().status == "active" and not operations_of("suspend").exists()
    assert run(at(2026, 8, 10, 10)) == (-money.basic, 0)
    assert (subscription().status, subscription().suspended_at) == ("suspended", at(2026, 8, 10, 10))
    suspend = operations_of("suspend").get()
    assert suspend.status == "pending" and suspend.params["by"] == "billing"
    assert suspend.id in dispatched
    run(at(2026, 8, 10, 10))  # the same moment again asks for nothing more
    assert operations_of("suspend").count() == 1 and mailbox.new() == []
    assert factories.run_operation(suspend).status == "succeeded"
    server.refresh_from_db()
    assert (server.status, server.suspended_by, server.power_state) == ("suspended", "billing", "shutoff")
    assert "overdue" in server.status_reason
    with pytest.raises(actions.Conflict):
        actions.perform(server, "start", customer, {})

    # 11 August: the payment unsuspends at once (the unsuspend is requested by the payment itself).
    pay("BANK-0008", money.basic, at(2026, 8, 11, 12))
    assert statuses()[-1] == "paid"
    assert mailbox.new() == [f"Invoice {number(8)} is paid"]
    assert subscription().status == "active" and subscription().suspended_at is None
    unsuspend = operations_of("unsuspend").get()
    assert unsuspend.id in dispatched
    assert factories.run_operation(unsuspend).status == "succeeded"
    server.refresh_from_db()
    assert (server.status, server.suspended_by, server.status_reason) == ("running", "", None)

    # 31 August: left unpaid to the end. Suspended again, warned 3 days ahead, terminated after 14 days.
    assert renewal(9, at(2026, 8, 31, 10), at(2026, 9, 30, 10), money.basic).status == "open"
    assert mailbox.new() == [f"Invoice {number(9)}"]
    run(at(2026, 9, 4, 10))
    run(at(2026, 9, 7, 10))
    assert mailbox.new() == [f"Reminder: invoice {number(9)} is due soon", f"Invoice {number(9)} is overdue"]
    run(at(2026, 9, 10, 10))
    suspend = operations_of("suspend").get(status="pending")
    assert factories.run_operation(suspend).status == "succeeded"
    server.refresh_from_db()
    assert (server.status, server.suspended_by) == ("suspended", "billing")
    run(at(2026, 9, 18, 9, 59))
    assert mailbox.new() == []
    run(at(2026, 9, 18, 10))
    assert mailbox.new() == ["Your servers will be deleted on 21 Sep 2026"]
    assert "INV-2026-000009" in mail.outbox[-1].body
    run(at(2026, 9, 21, 9, 59))
    assert subscription().status == "suspended" and not operations_of("delete").exists()
    assert run(at(2026, 9, 21, 10)) == (-money.basic, 0)
    assert (subscription().status, subscription().ended_at) == ("ended", at(2026, 9, 21, 10))
    delete = operations_of("delete").get()
    assert delete.id in dispatched
    assert factories.run_operation(delete).status == "succeeded"
    server.refresh_from_db()
    assert server.status == "deleted"
    assert not Allocation.objects.filter(consumer_uuid=server.id).exists()
    assert subscription().status == "ended"

    # The rest of the year: nothing more is invoiced, mailed or done to the deleted server.
    operation_count = Operation.objects.count()
    for moment in [at(2026, 9, 30, 10), at(2026, 10, 31, 10), at(2026, 11, 30, 10), at(2026, 12, 31, 10)]:
        assert run(moment) == (-money.basic, 0)
    run(at(2027, 1, 31, 10))
    assert mailbox.new() == []
    assert Operation.objects.count() == operation_count

    numbers = list(Invoice.objects.order_by("number").values_list("number", flat=True))
    assert numbers == [number(n) for n in range(1, 10)]
    assert InvoiceSequence.objects.get(year=2026).last == 9
    assert not InvoiceSequence.objects.filter(year=2027).exists()
    assert statuses() == ["paid"] * 8 + ["open"]
    assert Payment.objects.filter(account=customer).count() == 8
    assert check_books(customer) == (-money.basic, 0)
    assert all(i.currency == money.code for i in Invoice.objects.all())
    assert Host.objects.get(pk=catalog["host"].pk).state == "ready"


# Dunning at the edges: moments when the panel cannot act on the servers, and a voided invoice.


@pytest.fixture
def overdue_account(customer, catalog, dispatched):
    """A server (a row as the worker leaves it) whose first invoice, due on 7 February, is unpaid, and a
    billing run after the grace period that suspended it (the worker finished the suspension)."""
    plan = factories.make_plan("basic", price_monthly=Decimal("150000"), price_hourly=Decimal("250"))
    server = factories.make_server(customer, catalog, "dunned1", plan=plan)
    open_subscription(customer, plan, str(server.id), server.name, at=at(2026, 1, 31, 10))
    billing_run(at(2026, 2, 10, 10))
    suspend = Operation.objects.get(server=server, type="suspend")
    operations.finish(suspend, status="suspended", suspended_by="billing", power_state="shutoff")
    return server


def host_down(catalog, down: bool = True) -> None:
    Host.objects.filter(pk=catalog["host"].pk).update(state=Host.State.DOWN if down else Host.State.READY)


def test_a_suspension_asked_while_the_host_was_down_is_asked_again(customer, catalog, dispatched):
    plan = factories.make_plan("basic", price_monthly=Decimal("150000"), price_hourly=Decimal("250"))
    server = factories.make_server(customer, catalog, "dunned2", plan=plan)
    open_subscription(customer, plan, str(server.id), server.name, at=at(2026, 1, 31, 10))
    host_down(catalog)
    billing_run(at(2026, 2, 10, 10))
    assert Subscription.objects.get(reference=str(server.id)).status == "suspended"
    assert not Operation.objects.filter(server=server).exists()
    host_down(catalog, False)
    billing_run(at(2026, 2, 10, 11))
    assert Operation.objects.filter(server=server, type="suspend").count() == 1
    check_books(customer)


def test_voiding_the_overdue_invoice_lifts_the_billing_suspension(customer, staff, overdue_account):
    [overdue] = Invoice.objects.filter(account=customer, status="open")
    with factories.moved_clock(at(2026, 2, 11, 9)):
        void_invoice(overdue, by=staff, reason="waived")
    assert check_books(customer) == (0, 0)
    assert Subscription.objects.get(reference=str(overdue_account.id)).status == "active"
    assert Operation.objects.filter(server=overdue_account, type="unsuspend").exists()


def test_a_payment_while_the_host_is_down_unsuspends_the_server_when_it_is_back(
    customer, catalog, overdue_account
):
    host_down(catalog)
    record_payment(customer, Decimal("150000"), "BANK-77", at=at(2026, 2, 11, 9))
    assert Subscription.objects.get(reference=str(overdue_account.id)).status == "active"
    assert not Operation.objects.filter(server=overdue_account, type="unsuspend").exists()
    host_down(catalog, False)
    billing_run(at(2026, 2, 11, 10))
    assert Operation.objects.filter(server=overdue_account, type="unsuspend").exists()


def test_a_termination_while_the_host_is_down_deletes_the_server_when_it_is_back(
    customer, catalog, overdue_account
):
    host_down(catalog)
    billing_run(at(2026, 2, 21, 10))
    assert Subscription.objects.get(reference=str(overdue_account.id)).status == "ended"
    assert not Operation.objects.filter(server=overdue_account, type="delete").exists()
    host_down(catalog, False)
    billing_run(at(2026, 2, 21, 11))
    assert Operation.objects.filter(server=overdue_account, type="delete").exists()


@pytest.mark.django_db  # no worker, no signals: the test's transaction is enough
@pytest.mark.parametrize(
    "code,basic,premium,expected",
    [
        # 150000 * 427 h / 672 h = 95312.5 exactly; 10.08 * 427 / 672 = 6.405 exactly.
        ("IDR", Decimal("150000"), Decimal("300000"), Decimal("95313")),
        ("USD", Decimal("10.00"), Decimal("20.08"), Decimal("6.41")),
    ],
)
def test_an_upgrade_worth_exactly_half_a_unit_rounds_half_up(
    settings, customer, code, basic, premium, expected
):
    settings.PANEL_CURRENCY = code
    small = factories.make_plan("basic", price_monthly=basic, price_hourly=Decimal("0.01"))
    big = factories.make_plan("premium", price_monthly=premium, price_hourly=Decimal("0.02"))
    open_subscription(customer, small, "srv-half", "half1", at=at(2026, 1, 31, 10))
    unit = Decimal("1") if code == "IDR" else Decimal("0.01")
    assert prorate(premium - basic, at(2026, 2, 10, 15), at(2026, 1, 31, 10), at(2026, 2, 28, 10), unit) == (
        expected
    )
    change_plan("srv-half", big, at=at(2026, 2, 10, 15))
    upgrade = Invoice.objects.get(number="INV-2026-000002")
    assert upgrade.total == expected


def test_a_failed_resize_gives_back_what_the_plan_change_charged_or_credited(
    customer, plans, money, server, dispatched
):
    """The worker's failure path (panel.servers.operations.on_failure) undoes the subscription's plan
    change: an open upgrade invoice is voided, a paid one credited back, a downgrade's credit taken back."""
    basic, premium = plans
    reference = str(server.id)
    record_payment(customer, money.basic, "BANK-0001", at=at(2026, 2, 1))
    assert check_books(customer) == (0, 0)

    def resize_at(moment, plan):
        with factories.moved_clock(moment):
            return actions.resize_server(server, plan, customer)

    def fails(resize) -> None:
        operations.on_failure(Operation.objects.get(pk=resize.pk), "simulated failure")
        assert Operation.objects.get(pk=resize.pk).status == "failed"

    def subscription() -> tuple:
        sub = Subscription.objects.get(reference=reference)
        return sub.plan, sub.price

    # An upgrade left unpaid, then the resize fails: its invoice is voided and credited.
    fails(resize_at(at(2026, 2, 6, 16, 30), premium))
    upgrade = invoice(2)
    assert (upgrade.status, upgrade.total) == ("void", money.upgrade)
    assert subscription() == (basic, money.basic)
    assert check_books(customer) == (0, 0)

    # An upgrade paid at once from credit, then the resize fails: the payment is credited back.
    record_payment(customer, money.premium, "BANK-0002", at=at(2026, 2, 6, 17))
    fails(resize_at(at(2026, 2, 6, 17, 30), premium))
    paid = invoice(3)
    expected = prorate(
        money.premium - money.basic,
        at(2026, 2, 6, 17, 30),
        at(2026, 1, 31, 10),
        at(2026, 2, 28, 10),
        money.unit,
    )
    assert (paid.status, paid.total) == ("paid", expected)
    assert subscription() == (basic, money.basic)
    assert check_books(customer) == (money.premium, money.premium)

    # A resize that works, then a downgrade that fails: the downgrade's credit is taken back.
    resize = resize_at(at(2026, 2, 6, 18), premium)
    assert factories.run_operation(resize).status == "succeeded"
    server.refresh_from_db()
    balance_on_premium, _ = check_books(customer)
    fails(resize_at(at(2026, 2, 10, 10), basic))
    credit, taken_back = LedgerEntry.objects.filter(account=customer).order_by("-id")[:2][::-1]
    assert (credit.kind, taken_back.kind, taken_back.amount) == ("credit", "adjustment", -credit.amount)
    assert credit.amount == prorate(
        money.premium - money.basic, at(2026, 2, 10, 10), at(2026, 1, 31, 10), at(2026, 2, 28, 10), money.unit
    )
    assert subscription() == (premium, money.premium)
    assert check_books(customer) == (balance_on_premium, balance_on_premium)
    server.refresh_from_db()
    assert (server.plan, server.task) == (premium, None)
