"""Every status an invoice goes through on billing's real paths is a move billing.invoice_states allows,
and every move of the table is one billing makes: invoices are issued open; a payment pays them, or the
credit at hand pays them as they are issued; staff void one; billing voids the invoice of a server that
was never created and of an upgrade whose resize failed; renewals are issued open and paid later. A paid
or void invoice is never voided."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from billing import cycle, invoice_states, invoices, payments, subscriptions
from billing.errors import BillingError
from billing.invoice_states import Status
from billing.models import Invoice
from tests import factories
from tests.column_history import ColumnHistory
from tests.factories import check_books
from tests.factories import local_time as at

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def rupiah(settings):
    settings.TIME_ZONE = "Asia/Jakarta"
    settings.PANEL_CURRENCY = "IDR"


def test_every_status_is_in_the_table_and_the_model_uses_the_vocabulary():
    assert set(invoice_states.TRANSITIONS) == set(Status)
    assert {value for value, _label in Invoice._meta.get_field("status").choices} == set(
        invoice_states.TRANSITIONS
    )
    assert Invoice.Status is Status
    assert not invoice_states.may_move(Status.PAID, Status.VOID)
    assert not invoice_states.may_move(Status.VOID, Status.OPEN)


def test_invoices_move_only_along_the_table_and_make_every_move_of_it(customer, staff):
    basic = factories.make_plan("basic", price_monthly=Decimal("150000"))
    premium = factories.make_plan("premium", price_monthly=Decimal("250000"))

    def order(moment) -> str:
        reference = str(uuid.uuid4())
        subscriptions.open_subscription(customer, basic, reference, f"web-{reference[:4]}", at=moment)
        return reference

    def latest() -> Invoice:
        return Invoice.objects.filter(account=customer).latest("id")

    with ColumnHistory(Invoice, "status") as history:
        first = order(at(2026, 1, 10, 9))  # no credit: issued open
        paid = latest()
        assert paid.status == Status.OPEN
        payments.record_payment(customer, Decimal("150000"), "BANK-1", at=at(2026, 1, 11, 9))
        paid.refresh_from_db()
        assert paid.status == Status.PAID

        payments.record_payment(customer, Decimal("150000"), "BANK-2", at=at(2026, 1, 12, 9))
        order(at(2026, 1, 12, 10))  # the credit pays it as it is issued
        assert latest().status == Status.PAID

        order(at(2026, 1, 13, 9))
        voided = invoices.void_invoice(latest(), by=staff, reason="ordered by mistake")
        assert voided.status == Status.VOID
        for settled in (voided, paid):
            with pytest.raises(BillingError):
                invoices.void_invoice(settled, by=staff)

        never_created = order(at(2026, 1, 14, 9))
        assert subscriptions.cancel_unused_subscription(never_created, at=at(2026, 1, 14, 9, 5))
        assert latest().status == Status.VOID

        undo = subscriptions.change_plan(first, premium, at=at(2026, 1, 20, 9))
        upgrade = Invoice.objects.get(pk=undo["invoice"])
        assert upgrade.status == Status.OPEN
        subscriptions.undo_plan_change(first, undo)  # the resize failed
        upgrade.refresh_from_db()
        assert upgrade.status == Status.VOID

        assert cycle.renew(at(2026, 2, 14, 9)) == 3  # every subscription but the one never created
        renewals = list(Invoice.objects.filter(account=customer, issued_at=at(2026, 2, 14, 9)))
        assert {invoice.status for invoice in renewals} == {Status.OPEN}
        payments.record_payment(customer, Decimal("450000"), "BANK-3", at=at(2026, 2, 15, 9))
        assert {Invoice.objects.get(pk=invoice.pk).status for invoice in renewals} == {Status.PAID}

    check_books(customer)
    assert set(history.inserted()) == {Status.OPEN}, "invoices are issued open"
    assert len(history.inserted()) == Invoice.objects.filter(account=customer).count() == 8
    for old, new in history.moves():
        assert invoice_states.may_move(old, new), f"{old} -> {new}"
    every_move = {(old, new) for old, targets in invoice_states.TRANSITIONS.items() for new in targets}
    assert set(history.moves()) == every_move
