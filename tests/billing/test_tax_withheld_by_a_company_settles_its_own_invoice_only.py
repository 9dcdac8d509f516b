"""A company customer withholds PPh 23 from an invoice and pays the rest: staff record the withholding slip,
which settles its part of that invoice (a ledger entry of kind `withholding`), and a payment of the rest
pays it. The tax withheld never pays another invoice, even an older one; a slip for more than the invoice
still needs is refused and changes nothing."""

from decimal import Decimal

import pytest

from billing import invoices, ledger, payments, withholding
from billing.errors import BillingError
from billing.models import Invoice, LedgerEntry, WithholdingSlip

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def law(settings):
    settings.TAX_RATE, settings.TAX_BASE_FRACTION, settings.PRICES_INCLUDE_TAX = "12", "11/12", False
    settings.WITHHOLDING_TAX_RATE = "2"


def issue(account, price: str) -> Invoice:
    line = invoices.Line(kind="plan", description="Small VPS", unit_price=Decimal(price))
    return invoices.issue_invoice(account, [line])


def status(invoice: Invoice) -> str:
    invoice.refresh_from_db()
    return invoice.status


def test_the_invoice_less_the_tax_withheld_paid_in_money_is_paid(customer, staff):
    invoice = issue(customer, "150000")
    assert invoice.total == Decimal("166500")
    withheld = withholding.suggested_amount(invoice)
    assert withheld == Decimal("3000")  # 2 % of the price before PPN
    slip = withholding.record_slip(invoice, "BP-2026-0001", withheld, None, by=staff)
    entry = LedgerEntry.objects.get(kind=LedgerEntry.Kind.WITHHOLDING)
    assert (entry.account, entry.invoice, entry.amount) == (customer, invoice, Decimal("3000"))
    assert slip.entry == entry and slip.invoice == invoice
    assert "BP-2026-0001" in entry.reason_text
    assert status(invoice) == Invoice.Status.OPEN
    assert invoices.amount_due(invoice) == Decimal("163500")

    payments.record_payment(customer, Decimal("163500"), "BCA-1")
    assert status(invoice) == Invoice.Status.PAID
    assert ledger.balance(customer) == Decimal("0")


def test_the_tax_withheld_does_not_pay_an_older_open_invoice(customer, staff):
    older = issue(customer, "2000")  # owes 2,220: less than the 3,000 withheld from the newer one
    newer = issue(customer, "150000")
    withholding.record_slip(newer, "BP-2026-0002", Decimal("3000"), None, by=staff)
    assert status(older) == Invoice.Status.OPEN
    assert status(newer) == Invoice.Status.OPEN
    assert invoices.amount_due(older) == older.total
    # Money pays the oldest first; the withholding waits for the rest of its own invoice.
    payments.record_payment(customer, older.total, "BCA-2")
    assert status(older) == Invoice.Status.PAID
    assert status(newer) == Invoice.Status.OPEN
    payments.record_payment(customer, newer.total - Decimal("3000"), "BCA-3")
    assert status(newer) == Invoice.Status.PAID


def test_a_slip_for_more_than_the_invoice_still_needs_is_refused_and_changes_nothing(customer, staff):
    invoice = issue(customer, "150000")
    withholding.record_slip(invoice, "BP-2026-0003", Decimal("3000"), None, by=staff)
    entries = LedgerEntry.objects.count()
    with pytest.raises(BillingError) as refused:
        withholding.record_slip(invoice, "BP-2026-0004", Decimal("163501"), None, by=staff)
    assert "needs only" in refused.value.message
    assert LedgerEntry.objects.count() == entries
    assert list(WithholdingSlip.objects.values_list("number", flat=True)) == ["BP-2026-0003"]
    assert status(invoice) == Invoice.Status.OPEN
    assert invoices.amount_due(invoice) == Decimal("163500")
