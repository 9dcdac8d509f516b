"""Billing through REST API v1 (api-v1.md), in IDR and in USD: customers read their own invoices and balance;
staff record payments, idempotent on the reference, and see every customer's balance; with the prepaid
order policy an order needs credit for its first month (422 insufficient_credit, nothing created) and is
paid from it at once."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils.dateparse import parse_datetime

from billing import invoices, ledger, payments, subscriptions
from billing.models import BillingProfile, Invoice, InvoiceLine, LedgerEntry, Payment, Subscription
from hypervisor.models import Allocation, IPAddress
from panel.models import Operation, Server
from tests import factories
from tests.factories import local_time as at

pytestmark = pytest.mark.django_db

PRICE = {"IDR": Decimal("150000"), "USD": Decimal("10.00")}
UNIT = {"IDR": Decimal("1"), "USD": Decimal("0.01")}
INVOICE_FIELDS = {"id", "number", "status", "issued_at", "due_at", "total", "currency", "lines"}


@pytest.fixture(autouse=True)
def jakarta(settings):
    settings.TIME_ZONE = "Asia/Jakarta"


@pytest.fixture(params=["IDR", "USD"])
def code(request, settings) -> str:
    settings.PANEL_CURRENCY = request.param
    return request.param


@pytest.fixture
def plan(code, catalog):
    return factories.make_plan(
        "basic", price_monthly=PRICE[code], price_hourly=(PRICE[code] / 600).quantize(Decimal("0.0001"))
    )


def money(amount: Decimal, code: str) -> str:
    """How the API writes an amount: a string with the currency's precision."""
    return str(amount.quantize(UNIT[code]))


def test_customers_read_their_own_invoices(api, customer, other_customer, plan, code):
    subscriptions.open_subscription(
        customer, plan, "00000000-0000-0000-0000-000000000001", "web1", at=at(2026, 1, 31, 10)
    )
    payments.record_payment(customer, PRICE[code], "BCA-1", at=at(2026, 2, 1, 9))
    fee = invoices.Line(
        kind=InvoiceLine.Kind.MANUAL, description="Setup", unit_price=Decimal("12.5"), quantity=2
    )
    invoices.issue_invoice(customer, [fee], at=at(2026, 2, 3, 14, 15))
    Invoice.objects.create(account=customer, currency=code)  # a draft is not shown
    theirs = invoices.issue_invoice(other_customer, [fee], at=at(2026, 2, 3, 15))

    response = api(customer).get("/api/v1/invoices/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 2 and len(body["results"]) == 2
    by_number = {invoice["number"]: invoice for invoice in body["results"]}
    assert set(by_number) == {"INV-2026-000001", "INV-2026-000002"}
    for invoice in body["results"]:
        assert INVOICE_FIELDS <= set(invoice)
        assert invoice["currency"] == code

    first = by_number["INV-2026-000001"]
    assert (first["status"], first["total"]) == ("paid", money(PRICE[code], code))
    assert parse_datetime(first["issued_at"]) == at(2026, 1, 31, 10)
    assert parse_datetime(first["due_at"]) == at(2026, 2, 7, 10)
    [line] = first["lines"]
    assert (line["kind"], line["amount"]) == ("plan", money(PRICE[code], code))
    assert (parse_datetime(line["period_start"]), parse_datetime(line["period_end"])) == (
        at(2026, 1, 31, 10), at(2026, 2, 28, 10)
    )  # fmt: skip
    second = by_number["INV-2026-000002"]
    assert (second["status"], second["total"]) == ("open", money(Decimal(25), code))  # 2 x 12.5
    assert [(line["kind"], line["description"], line["amount"]) for line in second["lines"]] == [
        ("manual", "Setup", money(Decimal(25), code))
    ]

    detail = api(customer).get(f"/api/v1/invoices/{second['id']}/")
    assert detail.status_code == 200
    assert detail.json() == second

    for path in (
        f"/api/v1/invoices/{theirs.pk}/",
        f"/api/v1/invoices/{Invoice.objects.get(status='draft').pk}/",
    ):
        response = api(customer).get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert api(other_customer).get("/api/v1/invoices/").json()["count"] == 1
    assert api(None).get("/api/v1/invoices/").status_code == 401


def payments_url(customer) -> str:
    return f"/api/v1/admin/customers/{customer.pk}/payments/"


def test_staff_record_a_payment_once_per_reference(api, staff, customer, plan, code):
    subscriptions.open_subscription(
        customer, plan, "00000000-0000-0000-0000-000000000002", "web2", at=at(2026, 1, 31, 10)
    )
    amount = money(PRICE[code] + 5 * UNIT[code], code)

    created = api(staff).post(
        payments_url(customer), {"amount": amount, "reference": " BCA-777 "}, format="json"
    )
    assert created.status_code == 201, created.content
    payment = created.json()
    assert {"id", "amount", "currency", "reference", "method", "received_at"} <= set(payment)
    assert (payment["amount"], payment["currency"], payment["reference"], payment["method"]) == (
        amount, code, "BCA-777", "bank_transfer"
    )  # fmt: skip
    assert Invoice.objects.get(account=customer).status == "paid"

    for body in ({"amount": amount, "reference": "BCA-777"}, {"amount": "1.00", "reference": "BCA-777"}):
        again = api(staff).post(payments_url(customer), body, format="json")
        assert again.status_code == 200, again.content
        assert again.json() == payment
    assert Payment.objects.count() == 1
    assert LedgerEntry.objects.filter(account=customer, kind="payment").count() == 1
    assert Payment.objects.get().recorded_by == staff
    account = api(customer).get("/api/v1/account/").json()
    assert (account["balance"], account["currency"]) == (money(5 * UNIT[code], code), code)


@pytest.mark.parametrize("amount", ["abc", "-5", "0", "", None, "1.001", "1e400"])
def test_a_bad_amount_is_a_400_and_records_nothing(api, staff, customer, amount):
    body = {"reference": "BCA-BAD"}
    if amount is not None:
        body["amount"] = amount
    response = api(staff).post(payments_url(customer), body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid" and "amount" in error["fields"]
    missing_reference = api(staff).post(payments_url(customer), {"amount": "10.00"}, format="json")
    assert missing_reference.status_code == 400
    assert "reference" in missing_reference.json()["error"]["fields"]
    assert not Payment.objects.exists() and not LedgerEntry.objects.exists()


def test_an_amount_finer_than_the_currency_is_a_400(api, staff, customer, settings):
    settings.PANEL_CURRENCY = "IDR"
    response = api(staff).post(
        payments_url(customer), {"amount": "1000.50", "reference": "BCA-X"}, format="json"
    )
    assert response.status_code == 400, response.content
    assert not Payment.objects.exists()


def test_payments_are_for_staff_only(api, customer, other_customer):
    response = api(customer).post(payments_url(customer), {"amount": "5", "reference": "MINE"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert api(customer).get("/api/v1/admin/customers/").status_code == 403
    assert (
        api(None).post(payments_url(customer), {"amount": "5", "reference": "X"}, format="json").status_code
        == 401
    )
    assert not Payment.objects.exists()


def test_a_reference_of_another_customers_payment_is_refused(api, staff, customer, other_customer):
    payments.record_payment(other_customer, Decimal("20000"), "BCA-THEIRS")
    response = api(staff).post(
        payments_url(customer), {"amount": "20000", "reference": "BCA-THEIRS"}, format="json"
    )
    assert response.status_code in (409, 422), response.content
    assert ledger.balance(customer) == 0 and Payment.objects.count() == 1
    assert api(staff).post("/api/v1/admin/customers/999999/payments/", {"amount": "1", "reference": "Y"},
                           format="json").status_code == 404  # fmt: skip


def test_balances_are_written_with_the_currencys_precision(api, staff, customer, other_customer, plan, code):
    assert api(customer).get("/api/v1/account/").json()["balance"] == money(Decimal(0), code)
    subscriptions.open_subscription(
        customer, plan, "00000000-0000-0000-0000-000000000003", "web3", at=at(2026, 1, 31, 10)
    )
    payments.record_payment(other_customer, Decimal("1234.5") if code == "USD" else Decimal("1234"), "BCA-2")
    account = api(customer).get("/api/v1/account/").json()
    assert (account["balance"], account["currency"]) == (money(-PRICE[code], code), code)
    assert account["balance"] == ("-150000" if code == "IDR" else "-10.00")

    listing = api(staff).get("/api/v1/admin/customers/")
    assert listing.status_code == 200
    rows = {row["id"]: row for row in listing.json()["results"]}
    assert {"id", "email", "role", "balance", "created_at"} <= set(rows[customer.pk])
    assert rows[customer.pk]["balance"] == account["balance"]
    assert rows[other_customer.pk]["balance"] == ("1234" if code == "IDR" else "1234.50")
    assert rows[staff.pk]["balance"] == money(Decimal(0), code)


def counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Server, Allocation, IPAddress, Subscription, Invoice, LedgerEntry, Operation)
    }


def order(api, customer, catalog, plan, name: str = "web1"):
    body = {"name": name, "plan": plan.slug, "image": catalog["image"].slug, "region": catalog["region"].slug}
    return api(customer).post("/api/v1/servers/", body, format="json")


def test_a_prepaid_order_needs_credit_for_its_first_month(
    api, settings, staff, customer, catalog, plan, code
):
    settings.BILLING_ORDER_POLICY = "prepaid"
    price = PRICE[code]
    before = counts()
    refused = order(api, customer, catalog, plan)
    assert refused.status_code == 422, refused.content
    assert refused.json()["error"]["code"] == "insufficient_credit"
    assert counts() == before

    payments.record_payment(customer, price - UNIT[code], "BCA-SHORT", by=staff)
    assert order(api, customer, catalog, plan).status_code == 422
    assert counts() == {**before, "LedgerEntry": before["LedgerEntry"] + 1}

    payments.record_payment(customer, UNIT[code] + 7 * UNIT[code], "BCA-REST", by=staff)
    accepted = order(api, customer, catalog, plan)
    assert accepted.status_code == 202, accepted.content
    server = Server.objects.get(pk=accepted.json()["id"])
    subscription = Subscription.objects.get(reference=str(server.id))
    assert (subscription.plan, subscription.price, subscription.status) == (plan, price, "active")
    invoice = Invoice.objects.get(account=customer)
    assert (invoice.status, invoice.total) == ("paid", price)
    assert ledger.balance(customer) == 7 * UNIT[code]
    assert api(customer).get("/api/v1/account/").json()["balance"] == money(7 * UNIT[code], code)
    assert Allocation.objects.filter(consumer_uuid=server.id).exists()

    # The next order is refused again: the balance no longer covers a month.
    after = counts()
    assert order(api, customer, catalog, plan, "web2").status_code == 422
    assert counts() == after


def test_a_prepaid_order_is_priced_with_the_customers_discount(api, settings, customer, catalog, plan, code):
    settings.BILLING_ORDER_POLICY = "prepaid"
    BillingProfile.objects.create(account=customer, discount_percent=Decimal("12.5"))
    discounted = Decimal("131250") if code == "IDR" else Decimal("8.75")
    payments.record_payment(customer, discounted, "BCA-DISCOUNTED")
    accepted = order(api, customer, catalog, plan)
    assert accepted.status_code == 202, accepted.content
    invoice = Invoice.objects.get(account=customer)
    assert (invoice.status, invoice.total) == ("paid", discounted)
    assert api(customer).get("/api/v1/account/").json()["balance"] == money(Decimal(0), code)


def test_the_invoice_first_policy_creates_the_server_and_an_open_invoice(
    api, settings, customer, catalog, plan, code
):
    settings.BILLING_ORDER_POLICY = "invoice_first"
    accepted = order(api, customer, catalog, plan)
    assert accepted.status_code == 202, accepted.content
    invoice = Invoice.objects.get(account=customer)
    assert (invoice.status, invoice.total) == ("open", PRICE[code])
    assert api(customer).get("/api/v1/account/").json()["balance"] == money(-PRICE[code], code)
