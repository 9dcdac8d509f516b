"""API v1 top-ups (`account/top-ups/`): POST `amount`, `provider?` (the first configured without it) and
optionally `invoice` starts a checkout at the provider: 201 with `id, amount, currency, status,
checkout_url, provider` (and `invoice, created_at, expires_at, paid_at`); 400 for a malformed amount, an
unknown provider or no such invoice; 422 `no_payment_provider` with none configured and
`provider_unavailable` when the provider refuses. GET lists them newest first, paginated as the other
lists, and GET `{id}/` shows one; another account's is a 404, for staff tokens too."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import checkouts, invoices, ledger
from billing.models import Checkout, Invoice
from tests.billing.conftest import midtrans, xendit  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def local_midtrans(request):
    """The local Midtrans the panel is configured to use (the `midtrans` fixture of tests/billing)."""
    return request.getfixturevalue("midtrans")


@pytest.fixture
def local_xendit(request):
    """The local Xendit the panel is configured to use (the `xendit` fixture of tests/billing)."""
    return request.getfixturevalue("xendit")


URL = "/api/v1/account/top-ups/"
FIELDS = {
    "id",
    "amount",
    "currency",
    "status",
    "checkout_url",
    "provider",
    "invoice",
    "created_at",
    "expires_at",
    "paid_at",
}


def invoice_for(account, price: str = "150000") -> Invoice:
    line = invoices.Line(kind="manual", description="Setup fee", unit_price=Decimal(price))
    return invoices.issue_invoice(account, [line])


def error(response) -> dict:
    return response.json()["error"]


def test_a_top_up_is_created_listed_shown_and_paid(api, customer, local_midtrans):
    client = api(customer)
    response = client.post(URL, {"amount": "250000", "provider": "midtrans"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    checkout = Checkout.objects.get(account=customer)
    assert set(body) == FIELDS
    assert body["id"] == checkout.pk and body["amount"] == "250000" and body["currency"] == "IDR"
    assert (body["status"], body["provider"], body["invoice"], body["paid_at"]) == (
        "pending",
        "midtrans",
        None,
        None,
    )
    assert body["checkout_url"] == checkout.checkout_url and body["checkout_url"].startswith(
        local_midtrans.url
    )
    assert body["created_at"] and body["expires_at"]
    # The provider sends the payer back to the checkout's page in the panel.
    assert (
        local_midtrans.created(checkout.reference)["callbacks"]["finish"]
        == f"http://testserver/billing/checkouts/{checkout.pk}/"
    )
    listed = client.get(URL).json()
    assert set(listed) == {"count", "next", "previous", "results"}
    assert listed["count"] == 1 and listed["results"] == [body]
    assert client.get(f"{URL}{checkout.pk}/").json() == body
    local_midtrans.pay(checkout.reference)
    shown = client.get(f"{URL}{checkout.pk}/").json()
    assert shown["status"] == "paid" and shown["paid_at"]
    assert ledger.balance(customer) == Decimal("250000")


def test_without_a_provider_the_first_configured_is_used(api, customer, local_midtrans, local_xendit):
    response = api(customer).post(URL, {"amount": "100000"}, format="json")
    assert response.status_code == 201 and response.json()["provider"] == "midtrans"
    response = api(customer).post(URL, {"amount": "100000", "provider": "xendit"}, format="json")
    assert response.status_code == 201 and response.json()["checkout_url"].startswith(local_xendit.url)


@pytest.mark.parametrize(
    "body, field, message",
    [
        ({}, "amount", "Give the amount to add."),
        ({"amount": "lots"}, "amount", "A valid number is required."),
        ({"amount": "10000.5"}, "amount", "The amount is more precise than the currency allows."),
        ({"amount": "9999"}, "amount", "A top-up is from Rp10,000 to Rp100,000,000."),
        ({"amount": "100000001"}, "amount", "A top-up is from Rp10,000 to Rp100,000,000."),
        (
            {"amount": "100000", "provider": "paypal"},
            "provider",
            "Unknown payment provider; use one of: midtrans.",
        ),
        ({"amount": "100000", "invoice": "first"}, "invoice", "A valid integer is required."),
        ({"invoice": 999999}, "invoice", "No such invoice."),
    ],
)
def test_malformed_requests_are_400_with_field_errors_and_start_nothing(
    api, customer, local_midtrans, body, field, message
):
    response = api(customer).post(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert error(response)["code"] == "invalid"
    assert error(response)["fields"][field] == [message]
    assert not Checkout.objects.exists() and not local_midtrans.requests


def test_with_no_provider_configured_it_is_422_no_payment_provider(api, customer):
    response = api(customer).post(URL, {"amount": "100000"}, format="json")
    assert response.status_code == 422
    assert error(response)["code"] == "no_payment_provider"
    assert "bank transfer" in error(response)["message"]
    # A malformed body is still a 400.
    assert api(customer).post(URL, {"amount": "x"}, format="json").status_code == 400
    assert not Checkout.objects.exists()


def test_a_provider_that_refuses_is_422_provider_unavailable(api, customer, local_midtrans):
    with local_midtrans.outage():
        response = api(customer).post(URL, {"amount": "100000", "provider": "midtrans"}, format="json")
    assert response.status_code == 422
    assert error(response) == {
        "code": "provider_unavailable",
        "message": "Midtrans could not start the payment. Please try again in a moment.",
    }
    assert not Checkout.objects.filter(status=Checkout.Status.PENDING).exists()
    assert ledger.balance(customer) == 0


def test_an_open_invoice_is_paid_for_what_it_still_needs(api, customer, other_customer, local_xendit):
    invoice = invoice_for(customer)
    client = api(customer)
    response = client.post(URL, {"invoice": invoice.pk, "provider": "xendit"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["invoice"], body["amount"]) == (invoice.pk, "150000")
    # Again while that checkout is pending: the same one, 200.
    again = client.post(URL, {"invoice": invoice.pk, "amount": "150000", "provider": "xendit"}, format="json")
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    wrong = client.post(URL, {"invoice": invoice.pk, "amount": "100000", "provider": "xendit"}, format="json")
    assert wrong.status_code == 400 and "leave the amount out" in error(wrong)["fields"]["amount"][0]
    theirs = invoice_for(other_customer)
    response = client.post(URL, {"invoice": theirs.pk}, format="json")
    assert response.status_code == 400 and error(response)["fields"] == {"invoice": ["No such invoice."]}
    local_xendit.pay(Checkout.objects.get(pk=body["id"]).reference)
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    response = client.post(URL, {"invoice": invoice.pk}, format="json")
    assert response.status_code == 422 and error(response)["message"] == "Only open invoices can be paid."
    assert Checkout.objects.count() == 1


def test_nobody_sees_another_accounts_top_ups_staff_neither(
    api, customer, other_customer, staff, local_midtrans
):
    theirs = checkouts.start(
        other_customer, "midtrans", amount=Decimal("100000"), return_url=lambda c: "http://x/"
    )
    for user in (customer, staff):
        client = api(user)
        assert client.get(f"{URL}{theirs.pk}/").status_code == 404
        assert error(client.get(f"{URL}{theirs.pk}/"))["code"] == "not_found"
        assert client.get(URL).json()["count"] == 0
    # A staff token tops up the staff member's own account.
    response = api(staff).post(URL, {"amount": "100000"}, format="json")
    assert response.status_code == 201
    assert Checkout.objects.get(pk=response.json()["id"]).account == staff


def test_the_list_is_newest_first_and_paginated(api, customer):
    now = timezone.now()
    Checkout.objects.bulk_create(
        Checkout(
            account=customer, provider="midtrans", amount=Decimal(10000 + n), currency="IDR",
            reference=f"mid-test-{n}", checkout_url="https://pay.example/",
            created_at=now - timedelta(minutes=n), expires_at=now + timedelta(days=1),
        )
        for n in range(51)
    )  # fmt: skip
    client = api(customer)
    first = client.get(URL).json()
    assert first["count"] == 51 and first["previous"] is None and first["next"].endswith("?page=2")
    assert [row["amount"] for row in first["results"][:3]] == ["10000", "10001", "10002"]
    assert len(first["results"]) == 50
    second = client.get(first["next"]).json()
    assert [row["amount"] for row in second["results"]] == ["10050"] and second["next"] is None


def test_tokens_and_methods(api, customer, local_midtrans):
    assert api(None).get(URL).status_code == 401
    assert api(None).post(URL, {"amount": "100000"}, format="json").status_code == 401
    raw = api(customer).post("/api/v1/tokens/", {"scope": "read"}, format="json").json()["token"]
    reader = api(None)
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert reader.get(URL).status_code == 200
    response = reader.post(URL, {"amount": "100000"}, format="json")
    assert response.status_code == 403 and error(response)["code"] == "read_only_token"
    assert api(customer).delete(URL).status_code == 405
    assert not Checkout.objects.exists()


def test_the_schema_documents_top_ups(client):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert {"get", "post"} <= set(schema["paths"]["/api/v1/account/top-ups/"])
    assert "get" in schema["paths"]["/api/v1/account/top-ups/{id}/"]
    post = schema["paths"]["/api/v1/account/top-ups/"]["post"]
    assert {"201", "400", "422"} <= set(post["responses"])
