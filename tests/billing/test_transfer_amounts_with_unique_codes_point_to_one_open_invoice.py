"""With unique amount codes on, each new invoice gets a code from 1 to 999 that makes its amount to transfer
unique among open invoices (and unlike any open invoice's own total), so that a bank statement's amount
finds one invoice; with the setting off, invoices get none. Paid invoices free their amounts."""

from decimal import Decimal

import pytest

from billing import invoices, ledger, payments, transfer
from billing.models import Invoice, SellerProfile
from tests import factories

pytestmark = pytest.mark.django_db

PRICE = Decimal("150000")


@pytest.fixture
def codes_on(db):
    SellerProfile.objects.update_or_create(
        pk=SellerProfile.SINGLETON_PK, defaults={"unique_amount_codes": True}
    )


def issue(account, price: Decimal = PRICE) -> Invoice:
    line = invoices.Line(kind="manual", description="Setup fee", unit_price=price)
    return invoices.issue_invoice(account, [line])


def test_invoices_of_the_same_total_get_different_amounts_to_transfer(codes_on):
    issued = [issue(factories.make_user()) for _ in range(12)]
    assert all(1 <= invoice.unique_code <= 999 for invoice in issued)
    amounts = [invoice.transfer_amount for invoice in issued]
    assert len(set(amounts)) == len(amounts)
    for invoice in issued:
        invoice.refresh_from_db()  # the code is saved with the invoice
        assert invoice.transfer_amount == invoice.total + invoice.unique_code
        assert list(transfer.find_by_amount(invoice.transfer_amount)) == [invoice]


def test_without_the_setting_invoices_have_no_code(customer):
    invoice = issue(customer)
    assert invoice.unique_code is None and invoice.transfer_amount == invoice.total
    # A transfer of the total finds it.
    assert list(transfer.find_by_amount(invoice.total)) == [invoice]


def test_a_code_avoids_every_amount_an_open_invoice_could_be_paid_with(codes_on, customer):
    other = factories.make_user()
    # Open invoices owing 150,001 to 150,998 without codes, and one owing 140,000 + 999 with a code: a new
    # invoice of 150,000 can only get 999.
    Invoice.objects.bulk_create(
        [
            Invoice(account=other, currency="IDR", status=Invoice.Status.OPEN, total=PRICE + k)
            for k in range(1, 999)
        ]
    )
    new = Invoice(account=customer, currency="IDR", status=Invoice.Status.OPEN, total=PRICE)
    transfer.assign_codes([new])
    assert new.unique_code == 999
    # All taken: the invoice goes without a code rather than share an amount.
    Invoice.objects.create(account=other, currency="IDR", status=Invoice.Status.OPEN, total=PRICE + 999)
    crowded = Invoice(account=customer, currency="IDR", status=Invoice.Status.OPEN, total=PRICE)
    transfer.assign_codes([crowded])
    assert crowded.unique_code is None


def test_a_batch_of_a_thousand_invoices_of_one_total_uses_each_code_once(customer):
    batch = [
        Invoice(account=customer, currency="IDR", status=Invoice.Status.OPEN, total=PRICE)
        for _ in range(1000)
    ]
    transfer.assign_codes(batch)
    codes = [invoice.unique_code for invoice in batch]
    assert sorted(codes[:999]) == list(range(1, 1000))
    assert codes[999] is None
    transfer.assign_codes([])  # nothing to do is not an error


def test_a_paid_invoice_is_no_longer_found_and_frees_its_amount(codes_on, customer):
    invoice = issue(customer)
    payments.record_payment(customer, invoice.transfer_amount, "BCA-1")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert not transfer.find_by_amount(invoice.transfer_amount).exists()
    # The code's digits became credit on the account.
    assert ledger.balance(customer) == invoice.unique_code
