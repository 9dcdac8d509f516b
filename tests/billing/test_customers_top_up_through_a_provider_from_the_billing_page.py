"""Customers top up on the billing page: an amount within the top-up limits (with quick amounts and what
pays everything owed) and a provider, each saying what it offers; the page sends them to the provider's
payment page, which sends them back to the checkout's page. Bad input and a provider that is down are form
errors that change nothing; with no provider configured, the page shows only the bank transfer."""

import re
from decimal import Decimal

import pytest

from billing import invoices, ledger, seller
from billing.models import Checkout, Payment

pytestmark = pytest.mark.django_db


def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def owe(account, price: str = "150000"):
    line = invoices.Line(kind="manual", description="Setup fee", unit_price=Decimal(price))
    return invoices.issue_invoice(account, [line])


def test_without_a_provider_the_page_offers_only_the_bank_transfer(client, customer):
    client.force_login(customer)
    response = client.get("/billing/")
    page = response.content.decode()
    assert 'id="top-up"' in page and "Pay by bank transfer" in page
    assert 'name="provider"' not in page and "Continue to payment" not in page
    # A stale form posted anyway: told to pay by bank transfer, nothing started.
    response = client.post("/billing/top-up/", {"amount": "100000", "provider": "midtrans"}, follow=True)
    assert "Online payment is not available" in response.content.decode()
    assert not Checkout.objects.exists()


def test_the_form_offers_each_provider_with_what_it_offers_and_quick_amounts(
    client, customer, midtrans, xendit
):
    owe(customer)
    client.force_login(customer)
    response = client.get("/billing/")
    page = response.content.decode()
    assert 'type="radio" name="provider" value="midtrans"' in page
    assert 'type="radio" name="provider" value="xendit"' in page
    flat = text(response)
    assert "Midtrans Virtual account BCA, BNI, BRI, Mandiri QRIS E-wallets GoPay, ShopeePay" in flat
    assert (
        "Xendit Virtual account BCA, BNI, BRI, Mandiri QRIS E-wallets OVO, DANA, ShopeePay, LinkAja" in flat
    )
    assert "From Rp10,000 to Rp100,000,000." in flat
    assert "Rp150,000 pays everything that is owed." in flat
    # What is owed is filled in, and offered with round amounts a click away (links that work without
    # JavaScript too).
    assert re.search(r'name="amount" value="150000"', page)
    assert 'href="?amount=150000#top-up"' in page and "Everything owed" in flat
    assert 'href="?amount=500000#top-up"' in page
    assert re.search(r'name="amount" value="500000"', client.get("/billing/?amount=500000").content.decode())


@pytest.mark.parametrize("provider", ["midtrans", "xendit"])
def test_a_top_up_goes_to_the_providers_page_and_comes_back_to_its_checkout(
    client, customer, provider, request
):
    server = request.getfixturevalue(provider)
    client.force_login(customer)
    response = client.post("/billing/top-up/", {"amount": "250000", "provider": provider})
    checkout = Checkout.objects.get(account=customer)
    assert response.status_code == 302 and response["Location"] == checkout.checkout_url
    assert checkout.checkout_url.startswith(server.url)
    assert (checkout.status, checkout.amount, checkout.provider) == ("pending", Decimal("250000"), provider)
    asked = server.created(checkout.reference)
    back = f"http://testserver/billing/checkouts/{checkout.pk}/"
    if provider == "midtrans":
        assert asked["callbacks"]["finish"] == back
        assert asked["transaction_details"]["gross_amount"] == 250000
    else:
        assert asked["success_redirect_url"] == asked["failure_redirect_url"] == back
        assert asked["amount"] == 250000
    assert ledger.balance(customer) == 0 and not Payment.objects.exists()  # credited only once confirmed
    server.pay(checkout.reference)
    assert ledger.balance(customer) == Decimal("250000")
    assert "Payment received" in client.get(back).content.decode()


@pytest.mark.parametrize(
    "data, error",
    [
        ({"amount": "", "provider": "midtrans"}, "This field is required."),
        ({"amount": "lots", "provider": "midtrans"}, "Enter a number."),
        ({"amount": "10000.50", "provider": "midtrans"}, "IDR has no minor unit: give a whole amount."),
        ({"amount": "9999", "provider": "midtrans"}, "A top-up is from Rp10,000 to Rp100,000,000."),
        ({"amount": "100000001", "provider": "midtrans"}, "A top-up is from Rp10,000 to Rp100,000,000."),
        (
            {"amount": "100000", "provider": "paypal"},
            "This payment provider is not available; choose another.",
        ),
        ({"amount": "100000"}, "Choose how to pay."),
    ],
)
def test_bad_input_is_a_form_error_and_changes_nothing(client, customer, midtrans, data, error):
    client.force_login(customer)
    response = client.post("/billing/top-up/", data)
    assert response.status_code == 200
    assert error in text(response).replace("&#x27;", "'")
    assert "field--invalid" in response.content.decode() or "alert--error" in response.content.decode()
    assert not Checkout.objects.exists() and not midtrans.requests
    assert ledger.balance(customer) == 0


def test_a_provider_that_is_down_is_a_form_error_and_nothing_is_charged(client, customer, midtrans):
    client.force_login(customer)
    with midtrans.outage():
        response = client.post("/billing/top-up/", {"amount": "100000", "provider": "midtrans"})
    assert response.status_code == 200
    assert "Midtrans could not start the payment. Please try again in a moment." in text(response)
    assert 'value="100000"' in response.content.decode()  # the form keeps what was typed
    assert not Checkout.objects.filter(status=Checkout.Status.PENDING).exists()
    assert ledger.balance(customer) == 0 and not Payment.objects.exists()


def test_the_page_is_in_the_customers_language(client, customer, midtrans):
    owe(customer)
    customer.language = "id"
    customer.save(update_fields=["language"])
    client.force_login(customer)
    response = client.get("/billing/")
    page = response.content.decode()
    assert response.status_code == 200 and '<html lang="id">' in page
    assert "Isi saldo" in page  # "Top up"
    assert "Rp150.000" in page and 'href="?amount=150000#top-up"' in page  # links are not localised
    response = client.post("/billing/top-up/", {"amount": "9999", "provider": "midtrans"})
    assert response.status_code == 200 and "Rp10.000" in text(response)
    assert not Checkout.objects.exists()


def test_a_refused_amount_still_offers_the_bank_transfer(client, customer, admin_user, midtrans):
    values = {name: "" for name in seller.FIELDS}
    values.update(bank_name="Bank Central Asia", account_number="123-456-7890", account_holder="PT Contoh")
    seller.save_profile(values, by=admin_user)
    client.force_login(customer)
    response = client.post("/billing/top-up/", {"amount": "10000.50", "provider": "midtrans"})
    page = text(response)
    assert response.status_code == 200 and "IDR has no minor unit" in page
    assert "Or pay by bank transfer" in page and "Account number 123-456-7890" in page
