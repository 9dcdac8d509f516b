"""On real Postgres with real threads: invoices issued at once take the year's numbers 1..N with no gap or
repeat (a new year starts at 000001 again, in the installation's time zone); the same payment reference
recorded at once makes one payment credited once; different payments at once add up exactly."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection, transaction

from billing.errors import BillingError
from billing.invoices import Line, issue_invoice
from billing.models import Invoice, InvoiceLine, InvoiceSequence, LedgerEntry, Payment
from billing.payments import record_payment
from tests import factories
from tests.factories import check_books
from tests.factories import local_time as at

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def jakarta(settings):
    settings.TIME_ZONE = "Asia/Jakarta"
    settings.PANEL_CURRENCY = "USD"


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


def line(amount: str) -> Line:
    return Line(kind=InvoiceLine.Kind.MANUAL, description="Setup fee", unit_price=Decimal(amount))


def test_invoices_issued_at_once_take_the_numbers_of_the_year_in_order(db):
    customers = [factories.make_user(password=None) for _ in range(10)]

    def issue(i: int) -> str:
        return issue_invoice(customers[i], [line("12.34")], at=at(2026, 3, 1, 9)).number

    numbers = at_once(10, issue)
    assert sorted(numbers) == [f"INV-2026-{n:06d}" for n in range(1, 11)]
    assert InvoiceSequence.objects.get(year=2026).last == 10
    for customer in customers:
        assert check_books(customer) == (Decimal("-12.34"), 0)


def test_a_new_year_starts_at_one_again_in_the_installations_time_zone(db):
    customer = factories.make_user(password=None)
    issue_invoice(customer, [line("1.00")], at=at(2026, 12, 31, 23, 59))
    # 31 December 17:30 UTC is already 1 January 00:30 in Jakarta.
    new_year = datetime(2026, 12, 31, 17, 30, tzinfo=UTC)
    customers = [factories.make_user(password=None) for _ in range(6)]
    numbers = at_once(6, lambda i: issue_invoice(customers[i], [line("2.00")], at=new_year).number)
    assert sorted(numbers) == [f"INV-2027-{n:06d}" for n in range(1, 7)]
    late = issue_invoice(customer, [line("1.00")], at=at(2026, 12, 31, 23, 59, 59))
    assert late.number == "INV-2026-000002"
    assert dict(InvoiceSequence.objects.values_list("year", "last")) == {2026: 2, 2027: 6}
    assert Invoice.objects.count() == Invoice.objects.values("number").distinct().count() == 8


def test_the_same_payment_reference_recorded_at_once_is_credited_once(db):
    customer = factories.make_user(password=None)
    invoice = issue_invoice(customer, [line("30.00")], at=at(2026, 3, 1, 9))

    def record(i: int):
        return record_payment(customer, Decimal("45.50"), "BCA-20260302-0001", at=at(2026, 3, 2, 10))

    results = at_once(8, record)
    assert sorted(created for _, created in results) == [False] * 7 + [True]
    assert {payment.pk for payment, _ in results} == {Payment.objects.get().pk}
    assert LedgerEntry.objects.filter(account=customer, kind="payment").count() == 1
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_at) == ("paid", at(2026, 3, 2, 10))
    assert check_books(customer) == (Decimal("15.50"), Decimal("15.50"))


def test_different_payments_at_once_add_up_to_the_exact_sum(db):
    customer = factories.make_user(password=None)
    invoices = [issue_invoice(customer, [line("100.00")], at=at(2026, 3, 1, 9)) for _ in range(2)]
    amounts = [Decimal("10.01") * (i + 1) for i in range(8)]  # 360.36 in all

    def record(i: int):
        return record_payment(customer, amounts[i], f"BCA-{i}", at=at(2026, 3, 2, 10, i))

    results = at_once(8, record)
    assert all(created for _, created in results)
    assert Payment.objects.filter(account=customer).count() == 8
    assert sum(p.amount for p in Payment.objects.all()) == Decimal("360.36")
    for invoice in invoices:
        invoice.refresh_from_db()
        assert invoice.status == "paid"
    assert LedgerEntry.objects.filter(account=customer, kind="payment").count() == 8
    assert check_books(customer) == (Decimal("160.36"), Decimal("160.36"))


def test_a_reference_taken_meanwhile_by_another_customer_is_refused(db):
    first, second = factories.make_user(password=None), factories.make_user(password=None)
    inserted, answer = threading.Event(), {}

    def first_records() -> None:
        try:
            with transaction.atomic():  # the first payment is written but not committed yet ...
                record_payment(first, Decimal("20.00"), "BCA-SHARED", at=at(2026, 3, 2, 10))
                inserted.set()
                threading.Event().wait(1.5)  # ... while the second one waits on the reference's index
        finally:
            connection.close()

    def second_records() -> None:
        try:
            inserted.wait(10)
            answer["result"] = record_payment(second, Decimal("20.00"), "BCA-SHARED", at=at(2026, 3, 2, 10))
        except BillingError as exc:
            answer["error"] = exc.message
        finally:
            connection.close()

    threads = [threading.Thread(target=first_records), threading.Thread(target=second_records)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert Payment.objects.get(reference="BCA-SHARED").account == first
    assert check_books(second) == (0, 0)
    assert "result" not in answer, "the second customer was told their payment was recorded"
    assert "another customer" in answer["error"]
