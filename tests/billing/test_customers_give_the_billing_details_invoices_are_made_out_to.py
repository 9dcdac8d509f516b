"""Customers give the billing details their invoices are made out to on the billing page: a company's name,
its NPWP or their NIK, and the billing address (billing.buyer.save_details). New invoices carry them,
issued ones keep theirs; a bad tax ID or address is a form error that changes nothing."""

import re
from decimal import Decimal

import pytest

from billing import buyer, invoices
from billing.models import BillingProfile

pytestmark = pytest.mark.django_db

URL = "/billing/details/"
DETAILS = {
    "company_name": "PT Toko Budi Sejahtera",
    "tax_id_kind": "npwp",
    "tax_id": "01.234.567.8-901.000",
    "billing_address": "Jl. Gatot Subroto No. 10\r\nJakarta 12930",
}


def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())).replace("&#x27;", "'")


def issue(account):
    line = invoices.Line(kind="manual", description="Setup fee", unit_price=Decimal("100000"))
    return invoices.issue_invoice(account, [line])


def test_the_details_are_saved_and_new_invoices_carry_them(client, customer):
    before = issue(customer)
    client.force_login(customer)
    page = text(client.get("/billing/"))
    assert "Billing details" in page
    assert (
        "New invoices carry these details; invoices already issued keep the ones they were issued with."
        in page
    )
    response = client.post(URL, DETAILS)
    assert response.status_code == 302 and response["Location"] == "/billing/#billing-details"
    profile = BillingProfile.objects.get(account=customer)
    assert (profile.company_name, profile.tax_id_kind, profile.tax_id) == (
        "PT Toko Budi Sejahtera",
        "npwp",
        "012345678901000",
    )
    assert profile.billing_address == "Jl. Gatot Subroto No. 10\nJakarta 12930"
    page = client.get(response["Location"]).content.decode()
    assert "Your billing details were saved." in page
    assert 'value="PT Toko Budi Sejahtera"' in page and 'value="012345678901000"' in page
    assert '<option value="npwp" selected>' in page
    after = issue(customer)
    assert (after.buyer_name, after.buyer_tax_id_kind, after.buyer_tax_id) == (
        "PT Toko Budi Sejahtera",
        "npwp",
        "012345678901000",
    )
    before.refresh_from_db()
    assert before.buyer_name == customer.email and before.buyer_tax_id == ""


def test_an_individual_gives_a_nik_and_blank_details_are_allowed(client, customer):
    client.force_login(customer)
    client.post(
        URL,
        {"company_name": "", "tax_id_kind": "nik", "tax_id": "3171 0123 4567 0001", "billing_address": ""},
    )
    profile = buyer.profile_of(customer)
    assert (profile.company_name, profile.tax_id_kind, profile.tax_id) == ("", "nik", "3171012345670001")
    assert (
        client.post(
            URL, {"company_name": "", "tax_id_kind": "", "tax_id": "", "billing_address": ""}
        ).status_code
        == 302
    )
    profile.refresh_from_db()
    assert (profile.tax_id_kind, profile.tax_id) == ("", "")


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("tax_id", "01.234.567.8-901", "An NPWP has 15 or 16 digits."),
        ("tax_id", "01.234.567.8-901.00X", "A tax ID has only digits (dots and dashes are allowed)."),
        ("tax_id_kind", "", "Say whether the tax ID is an NPWP or a NIK."),
        ("tax_id_kind", "passport", "Select a valid choice. passport is not one of the available choices."),
        ("company_name", "P" * 201, "at most 200 characters"),
        ("billing_address", "\n".join(f"line {n}" for n in range(7)), "Give the address in at most 6 lines."),
    ],
)
def test_bad_details_are_a_form_error_and_change_nothing(client, customer, field, value, error):
    buyer.save_details(customer, {**DETAILS, "billing_address": "Jakarta"})
    before = BillingProfile.objects.values().get(account=customer)
    client.force_login(customer)
    response = client.post(URL, {**DETAILS, field: value})
    assert response.status_code == 200
    assert error in text(response)
    assert "field--invalid" in response.content.decode()
    assert 'id="billing-details"' in response.content.decode()
    assert BillingProfile.objects.values().get(account=customer) == before


def test_the_form_speaks_the_customers_language(client, customer):
    customer.language = "id"
    customer.save(update_fields=["language"])
    client.force_login(customer)
    response = client.get("/billing/")
    assert response.status_code == 200 and '<html lang="id">' in response.content.decode()
    assert 'name="tax_id"' in response.content.decode()
    response = client.post(URL, {**DETAILS, "tax_id": "123"})
    assert response.status_code == 200 and '<html lang="id">' in response.content.decode()
    assert not BillingProfile.objects.filter(account=customer).exists()


def test_only_a_logged_in_customer_posts_their_own_details(client, customer):
    response = client.post(URL, DETAILS)
    assert response.status_code == 302 and "/login/" in response["Location"]
    client.force_login(customer)
    assert client.get(URL).status_code == 405
    assert not BillingProfile.objects.exists()
