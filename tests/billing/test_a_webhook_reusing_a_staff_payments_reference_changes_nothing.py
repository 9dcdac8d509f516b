"""A provider's notification whose reference another customer's staff-recorded payment already holds gets a
clear 409, not a server error, and credits nobody."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal

import pytest

from billing import ledger, payments, providers
from billing.models import Payment

pytestmark = pytest.mark.django_db
SECRET = b"test-webhook-secret"


class SignedGateway(providers.PaymentProvider):
    """A provider for this test: notifications are JSON signed with HMAC-SHA256 of a shared secret."""

    name = "signedpay"
    label = "SignedPay"

    def verify_webhook(self, request):
        expected = hmac.new(SECRET, request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Signature", "")):
            raise providers.InvalidSignature
        body = json.loads(request.body)
        return providers.ProviderPayment(body["account"], Decimal(body["amount"]), body["reference"])


@pytest.fixture
def gateway(settings):
    settings.PAYMENT_PROVIDERS = [f"{__name__}.SignedGateway"]
    providers._load.cache_clear()
    yield
    providers._load.cache_clear()


def notify(client, account, reference: str, amount: str = "100000"):
    body = json.dumps({"account": account.pk, "amount": amount, "reference": reference}).encode()
    signature = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    return client.post(
        "/billing/webhooks/signedpay/", body, content_type="application/json", HTTP_X_SIGNATURE=signature
    )


def test_the_reference_of_another_customers_payment_is_a_409(
    client, customer, other_customer, staff, gateway
):
    payments.record_payment(other_customer, Decimal("100000"), "TRX-1", by=staff)

    response = notify(client, customer, "TRX-1")

    assert response.status_code == 409
    assert ledger.balance(customer) == 0
    assert Payment.objects.filter(reference="TRX-1").count() == 1


def test_a_new_reference_is_credited_once(client, customer, gateway):
    assert notify(client, customer, "TRX-2").status_code == 200
    assert notify(client, customer, "TRX-2").status_code == 200
    assert ledger.balance(customer) == Decimal("100000")
