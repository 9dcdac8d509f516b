"""An issued invoice records its tax breakdown and rule, the seller's name, address and NPWP from the seller's
profile and the buyer's company name, NPWP or NIK and address from their billing details, as they were
when it was issued: changing either profile afterwards changes the next invoice, not this one."""

from decimal import Decimal

import pytest

from billing import buyer, invoices, seller

pytestmark = pytest.mark.django_db

SELLER = {
    "legal_name": "PT Contoh Hosting Indonesia",
    "address": "Jl. Sudirman No. 1\nJakarta 10220",
    "tax_id": "0123456789012345",
}


def set_seller(by, **values) -> None:
    seller.save_profile({name: values.get(name, "") for name in seller.FIELDS}, by=by)


def issue(account):
    line = invoices.Line(kind="plan", description="Small VPS", unit_price=Decimal("150000"))
    return invoices.issue_invoice(account, [line])


def test_an_invoice_keeps_the_parties_and_breakdown_it_was_issued_with(settings, customer, admin_user):
    settings.TAX_RATE, settings.TAX_BASE_FRACTION, settings.PRICES_INCLUDE_TAX = "12", "11/12", False
    set_seller(admin_user, **SELLER)
    buyer.save_details(
        customer,
        {
            "company_name": "PT Pembeli Jaya",
            "tax_id_kind": "npwp",
            "tax_id": "01.234.567.8-901.000",
            "billing_address": "Jl. Thamrin 2, Jakarta",
        },
    )
    invoice = issue(customer)
    invoice.refresh_from_db()
    assert (invoice.subtotal, invoice.tax_base, invoice.tax, invoice.total) == (
        Decimal("150000"),
        Decimal("137500"),
        Decimal("16500"),
        Decimal("166500"),
    )
    assert (invoice.tax_rate, invoice.tax_base_fraction) == (Decimal("12"), "11/12")
    assert (invoice.seller_name, invoice.seller_address, invoice.seller_tax_id) == (
        SELLER["legal_name"],
        SELLER["address"],
        SELLER["tax_id"],
    )
    assert (invoice.buyer_name, invoice.buyer_tax_id_kind, invoice.buyer_tax_id, invoice.buyer_address) == (
        "PT Pembeli Jaya",
        "npwp",
        "012345678901000",
        "Jl. Thamrin 2, Jakarta",
    )

    # Both sides change their details: the issued invoice does not.
    set_seller(admin_user, legal_name="PT Nama Baru", address="Jl. Baru 3", tax_id="9999999999999999")
    buyer.save_details(
        customer,
        {"company_name": "", "tax_id_kind": "nik", "tax_id": "3171234567890123", "billing_address": "Depok"},
    )
    invoice.refresh_from_db()
    assert (invoice.seller_name, invoice.seller_tax_id) == (SELLER["legal_name"], SELLER["tax_id"])
    assert (invoice.buyer_name, invoice.buyer_tax_id_kind, invoice.buyer_tax_id) == (
        "PT Pembeli Jaya",
        "npwp",
        "012345678901000",
    )
    assert invoice.buyer_address == "Jl. Thamrin 2, Jakarta"

    later = issue(customer)
    assert (later.seller_name, later.seller_address, later.seller_tax_id) == (
        "PT Nama Baru",
        "Jl. Baru 3",
        "9999999999999999",
    )
    # An individual without a company is invoiced under the account's name (its email when it has none).
    assert (later.buyer_name, later.buyer_tax_id_kind, later.buyer_tax_id, later.buyer_address) == (
        customer.get_full_name() or customer.email,
        "nik",
        "3171234567890123",
        "Depok",
    )


def test_a_customer_without_billing_details_is_invoiced_under_their_account(customer):
    invoice = issue(customer)
    assert (invoice.buyer_name, invoice.buyer_tax_id_kind, invoice.buyer_tax_id, invoice.buyer_address) == (
        customer.get_full_name() or customer.email,
        "",
        "",
        "",
    )
