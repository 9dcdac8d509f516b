"""A billing run renews a batch of accounts in one transaction and takes the invoice numbers of the whole
batch last, in one statement (billing.invoice_numbers): the year's sequence row is not held while the
batch renews (an order's invoice is numbered and committed meanwhile), two batches at once share the
numbers without a gap or a repeat (a batch delivered twice at once renews once), a batch that fails even
after taking its numbers leaves nothing behind, and the questions a batch asks do not grow with its
accounts. A renewal paid from credit is mailed with its number."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection

from billing import cycle, invoice_numbers, payments
from billing.invoices import Line, issue_invoice
from billing.models import Invoice, InvoiceLine, InvoiceSequence, LedgerEntry, Subscription
from billing.subscriptions import open_subscription
from panel.models import User
from tests import factories
from tests.factories import check_books
from tests.factories import local_time as at

pytestmark = pytest.mark.django_db(transaction=True)

OPENED, DUE = at(2026, 1, 10, 10), at(2026, 2, 10, 10)


@pytest.fixture(autouse=True)
def jakarta(settings):
    settings.TIME_ZONE = "Asia/Jakarta"
    settings.PANEL_CURRENCY = "IDR"


def accounts_with(count: int, subscriptions: int) -> list[User]:
    """Accounts with monthly servers opened on 10 January (their first invoices numbered then)."""
    plan = factories.make_plan(f"plan{count}-{subscriptions}", price_monthly=Decimal("150000"))
    accounts = [factories.make_user(password=None) for _ in range(count)]
    for account in accounts:
        for index in range(subscriptions):
            open_subscription(account, plan, f"ref-{account.pk}-{index}", f"s{index}.example.com", at=OPENED)
    return accounts


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, dict]:
    """Run `work` in a thread of its own (its database connection closed at the end)."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:  # noqa: B036 - reported to the test
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def renewal_numbers(account: User) -> list[int]:
    renewed = Invoice.objects.filter(account=account, issued_at=DUE)
    return sorted(int(number.rsplit("-", 1)[1]) for number in renewed.values_list("number", flat=True))


def test_an_order_is_numbered_and_committed_while_a_batch_renews(monkeypatch):
    accounts, other = accounts_with(3, 2), factories.make_user(password=None)
    renewing, finish = threading.Event(), threading.Event()
    settle_locked = cycle.settle_locked

    def settle_then_wait(*args, **kwargs):
        paid = settle_locked(*args, **kwargs)
        renewing.set()  # the batch's invoices are written, not numbered yet
        assert finish.wait(20)
        return paid

    monkeypatch.setattr(cycle, "settle_locked", settle_then_wait)
    thread, outcome = in_thread(lambda: cycle.renew_accounts([a.pk for a in accounts], DUE))
    try:
        assert renewing.wait(20)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '5s'")  # waiting for the batch would fail here
        line = Line(kind=InvoiceLine.Kind.MANUAL, description="Setup fee", unit_price=Decimal("50000"))
        ordered = issue_invoice(other, [line], at=DUE)
    finally:
        finish.set()
        thread.join(30)
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")  # the connection serves the process's next tests
    assert "error" not in outcome, outcome
    assert outcome["result"] == 6
    assert ordered.number == "INV-2026-000007"  # after the six opening invoices, before the renewals
    assert Invoice.objects.get(pk=ordered.pk).number == ordered.number
    # The batch's renewals come after it, each account's together, in the order of the accounts.
    assert [renewal_numbers(account) for account in accounts] == [[8, 9], [10, 11], [12, 13]]
    assert InvoiceSequence.objects.get(year=2026).last == 13
    for account in [*accounts, other]:
        check_books(account)


def test_two_batches_at_once_share_the_numbers_and_a_batch_delivered_twice_renews_once():
    accounts = accounts_with(10, 3)
    first, second = [a.pk for a in accounts[:5]], [a.pk for a in accounts[5:]]
    barrier = threading.Barrier(3)

    def batch(ids: list[int]) -> Callable[[], int]:
        def work() -> int:
            barrier.wait(10)
            return cycle.renew_accounts(ids, DUE)

        return work

    runs = [in_thread(batch(first)), in_thread(batch(second)), in_thread(batch(first))]
    for thread, _outcome in runs:
        thread.join(60)
    assert not any(thread.is_alive() for thread, _ in runs), "a batch hung (a deadlock?)"
    assert [outcome.get("error") for _, outcome in runs] == [None] * 3
    assert sorted(outcome["result"] for _, outcome in runs) == [0, 15, 15]
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 61)]
    for account in accounts:
        renewed = renewal_numbers(account)
        assert renewed == list(range(renewed[0], renewed[0] + 3))  # an account's renewals together
        assert (
            list(Subscription.objects.filter(account=account).values_list("period_start", flat=True))
            == [DUE] * 3
        )
        check_books(account)


def books() -> dict:
    """What a renewal changes: the counts of invoices, ledger entries and lines, the year's last number and
    every subscription's period."""
    return {
        "invoices": Invoice.objects.count(),
        "ledger": LedgerEntry.objects.count(),
        "lines": InvoiceLine.objects.count(),
        "sequence": InvoiceSequence.objects.get(year=2026).last,
        "subscriptions": sorted(Subscription.objects.values_list("pk", "period_start", "paid_through")),
    }


@pytest.mark.parametrize("failing", ["settling", "numbering"])
def test_a_batch_that_fails_half_way_leaves_nothing_behind(monkeypatch, failing):
    accounts = accounts_with(2, 2)
    before = books()

    def fail(original):
        def failing_step(*args, **kwargs):
            original(*args, **kwargs)
            raise RuntimeError("the worker was lost")

        return failing_step

    if failing == "settling":
        monkeypatch.setattr(cycle, "settle_locked", fail(cycle.settle_locked))
    else:  # after the sequence row was taken and the numbers written
        monkeypatch.setattr(
            invoice_numbers, "_number_in_one_statement", fail(invoice_numbers._number_in_one_statement)
        )
    with pytest.raises(RuntimeError):
        cycle.renew_accounts([a.pk for a in accounts], DUE)
    after = books()
    assert after == before
    monkeypatch.undo()
    assert cycle.renew_accounts([a.pk for a in accounts], DUE) == 4  # the next run renews them
    assert InvoiceSequence.objects.get(year=2026).last == before["sequence"] + 4


def test_a_batch_asks_as_many_questions_for_six_accounts_as_for_two(settings):
    settings.BILLING_RENEWAL_BATCH = 10
    few, many = accounts_with(2, 2), accounts_with(6, 3)
    counts, prepared = [], []
    for accounts in (few, many):
        due = Subscription.objects.filter(account__in=accounts).count()
        with factories.questions() as sent:
            assert cycle.renew_accounts([a.pk for a in accounts], DUE) == due
        counts.append(len(sent.asked))
        prepared.append(sent.prepared)
    assert counts[0] == counts[1], counts
    assert prepared[1] == [], "the batch of six prepared statements of its own (a text that grows with it)"


def test_a_renewal_paid_from_credit_is_mailed_with_its_number():
    (account,) = accounts_with(1, 1)
    payments.record_payment(account, Decimal("1000000"), "BANK-CREDIT", at=OPENED)
    mail.outbox = []
    assert cycle.renew_accounts([account.pk], DUE) == 1
    renewed = Invoice.objects.get(account=account, issued_at=DUE)
    assert (renewed.status, renewed.paid_at) == ("paid", DUE)
    assert [message.subject for message in mail.outbox] == [f"Invoice {renewed.number} is paid"]
    charge = LedgerEntry.objects.get(invoice=renewed, kind=LedgerEntry.Kind.CHARGE)
    assert charge.reason == f"Invoice {renewed.number}"
    assert charge.reason_data == {"message": "Invoice %(number)s", "values": {"number": renewed.number}}
    check_books(account)


def test_an_account_that_cannot_be_renewed_holds_back_no_other_account_of_its_batch(monkeypatch):
    accounts = accounts_with(3, 1)
    broken = accounts[1]
    settle = cycle.settle_locked

    def settle_unless_broken(batch, *args, **kwargs):
        if any(account.pk == broken.pk for account in batch):
            raise RuntimeError("this account's renewal fails")
        return settle(batch, *args, **kwargs)

    monkeypatch.setattr(cycle, "settle_locked", settle_unless_broken)
    with pytest.raises(RuntimeError):
        cycle.renew_accounts([a.pk for a in accounts], DUE)
    # The other two were renewed, each in a transaction of its own; the broken one is still due.
    assert [len(renewal_numbers(account)) for account in accounts] == [1, 0, 1]
    monkeypatch.undo()
    assert cycle.renew_accounts([a.pk for a in accounts], DUE) == 1  # the retry renews only what is left
    for account in accounts:
        check_books(account)
