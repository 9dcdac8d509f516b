"""Staff cannot move money on, or set the terms of, their own account: the service refuses, so the page and
the API both do, and nothing changes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import errors, payments, prices
from billing.models import BillingProfile, LedgerEntry, Payment

pytestmark = pytest.mark.django_db


def test_the_services_refuse_ones_own_account(staff):
    with pytest.raises(errors.OwnAccount):
        payments.adjust(staff, Decimal("1000000"), "bonus", by=staff)
    with pytest.raises(errors.OwnAccount):
        payments.record_payment(staff, Decimal("1000000"), "self-1", by=staff)
    with pytest.raises(errors.OwnAccount):
        prices.set_billing_terms(staff, Decimal("100"), {}, by=staff)
    assert not LedgerEntry.objects.filter(account=staff).exists()
    assert not BillingProfile.objects.filter(account=staff).exists()


def test_the_pages_refuse(client, staff):
    client.force_login(staff)
    client.post(f"/staff/customers/{staff.pk}/adjustments/", {"amount": "1000000", "reason": "bonus"})
    client.post(f"/staff/customers/{staff.pk}/billing-terms/", {"discount_percent": "100"})
    client.post(
        f"/staff/customers/{staff.pk}/payments/",
        {"amount": "1000000", "reference": "self-2", "method": "bank_transfer"},
    )
    assert not LedgerEntry.objects.filter(account=staff).exists()
    assert not BillingProfile.objects.filter(account=staff).exists()


def test_the_api_refuses_with_403(api, staff, customer):
    response = api(staff).post(
        f"/api/v1/admin/customers/{staff.pk}/payments/",
        {"amount": "1000", "reference": "self-3"},
        format="json",
    )
    assert response.status_code == 403
    assert not Payment.objects.exists()
    # Another customer's account is fine.
    response = api(staff).post(
        f"/api/v1/admin/customers/{customer.pk}/payments/",
        {"amount": "1000", "reference": "c-1"},
        format="json",
    )
    assert response.status_code == 201
