"""A buyer's tax ID is kept as digits: an NPWP of 15 digits (the old format, written with dots and dashes)
or 16, or a NIK of 16. Anything else is refused with the reason and saving it changes nothing."""

import pytest

from billing import buyer
from billing.errors import BillingError
from billing.models import BillingProfile

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "kind, written, digits",
    [
        ("npwp", "01.234.567.8-901.000", "012345678901000"),
        ("npwp", "0123 4567 8901 2345", "0123456789012345"),
        ("nik", "3171-2345-6789-0123", "3171234567890123"),
        ("npwp", "", ""),
        ("", "", ""),
    ],
)
def test_a_valid_tax_id_is_kept_as_its_digits(kind, written, digits):
    assert buyer.clean_tax_id(kind, written) == digits


@pytest.mark.parametrize(
    "kind, written, reason",
    [
        ("npwp", "01.234.567.8-901", "An NPWP has 15 or 16 digits."),
        ("npwp", "01234567890123456", "An NPWP has 15 or 16 digits."),
        ("nik", "012345678901000", "A NIK has 16 digits."),
        ("npwp", "01.234.567.8-9O1.000", "A tax ID has only digits (dots and dashes are allowed)."),
        ("npwp", "00.000.000.0-000.000", "A tax ID of only zeros is not a tax ID"),
        ("", "0123456789012345", "Say whether the tax ID is an NPWP or a NIK."),
        ("ktp", "3171234567890123", "Say whether the tax ID is an NPWP or a NIK."),
    ],
)
def test_a_wrong_tax_id_is_refused_with_the_reason_and_nothing_is_saved(customer, kind, written, reason):
    with pytest.raises(BillingError) as refused:
        buyer.clean_tax_id(kind, written)
    assert reason in refused.value.message
    details = {"company_name": "PT Contoh", "tax_id_kind": kind, "tax_id": written, "billing_address": "X"}
    with pytest.raises(BillingError):
        buyer.save_details(customer, details)
    assert not BillingProfile.objects.filter(account=customer).exists()


def test_saving_details_keeps_the_digits_and_drops_a_kind_without_a_number(customer):
    values = {"company_name": " PT Contoh ", "tax_id_kind": "npwp", "tax_id": "01.234.567.8-901.000"}
    profile = buyer.save_details(customer, {**values, "billing_address": " Jakarta "})
    assert (profile.company_name, profile.tax_id_kind, profile.tax_id, profile.billing_address) == (
        "PT Contoh",
        "npwp",
        "012345678901000",
        "Jakarta",
    )
    profile = buyer.save_details(customer, {**values, "tax_id": "", "billing_address": ""})
    assert (profile.tax_id_kind, profile.tax_id) == ("", "")
