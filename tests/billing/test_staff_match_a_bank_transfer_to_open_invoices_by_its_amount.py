"""Staff match a bank transfer (staff/bank-transfers/, linked from the overdue page): the amount read on a
bank statement lists the open invoices whose amount to transfer (with its unique code) or total it is, each
with its customer and a link to record the payment on the customer's page. Customers never reach it."""

import re
from decimal import Decimal

import pytest

from billing import invoices
from billing.models import Invoice, SellerProfile

pytestmark = pytest.mark.django_db

URL = "/staff/bank-transfers/"


def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())).replace("&#x27;", "'")


def issue(account, price: str = "150000") -> Invoice:
    line = invoices.Line(kind="manual", description="Setup fee", unit_price=Decimal(price))
    return invoices.issue_invoice(account, [line])


def test_the_overdue_page_links_to_it(client, staff):
    client.force_login(staff)
    assert f'href="{URL}"' in client.get("/staff/overdue/").content.decode()


def test_an_amount_with_its_code_finds_the_one_invoice(client, staff, customer, other_customer):
    SellerProfile.objects.update_or_create(
        pk=SellerProfile.SINGLETON_PK, defaults={"unique_amount_codes": True}
    )
    mine, theirs = issue(customer), issue(other_customer)
    assert mine.transfer_amount != theirs.transfer_amount
    client.force_login(staff)
    page = client.get(URL).content.decode()
    assert (
        'name="amount"' in page
        and "transfer-matches" not in page
        and "Unique amount codes are off" not in page
    )
    response = client.get(URL, {"amount": str(mine.transfer_amount)})
    assert response.status_code == 200
    page = response.content.decode()
    assert mine.number in page and theirs.number not in page
    assert customer.email in page and other_customer.email not in page
    assert f'href="/staff/customers/{customer.pk}/#billing-payment-title"' in page
    assert f'href="/staff/invoices/{mine.pk}/"' in page
    assert f"with its unique code {mine.unique_code}" in text(response)
    # A transfer of the total without the code finds both invoices of that total.
    response = client.get(URL, {"amount": "150000"})
    assert mine.number in response.content.decode() and theirs.number in response.content.decode()
    assert "the total, without a unique code" in text(response)
    assert "More than one invoice has this amount" in text(response)


def test_no_match_paid_invoices_and_bad_amounts(client, staff, customer):
    invoice = issue(customer)
    client.force_login(staff)
    assert "Unique amount codes are off" in text(client.get(URL))
    response = client.get(URL, {"amount": "150001"})
    assert (
        "No open invoice is for this amount." in text(response)
        and invoice.number not in response.content.decode()
    )
    invoices.void_invoice(invoice)
    assert invoice.number not in client.get(URL, {"amount": "150000"}).content.decode()
    for amount, error in [
        ("abc", "Enter a number."),
        ("0", "Ensure this value is greater than or equal to 0.01."),
        ("150000.5", "IDR has no minor unit: give a whole amount."),
    ]:
        response = client.get(URL, {"amount": amount})
        assert response.status_code == 200 and error in text(response), amount
        assert "transfer-matches" not in response.content.decode()


def test_only_staff_reach_it(client, customer, admin_user):
    client.force_login(customer)
    assert client.get(URL).status_code == 403
    assert client.get(URL, {"amount": "150000"}).status_code == 403
    client.force_login(admin_user)
    assert client.get(URL, {"amount": "150000"}).status_code == 200
    client.logout()
    assert client.get(URL).status_code == 302


def test_the_page_speaks_the_staff_members_language(client, staff, customer):
    invoice = issue(customer, "1500000")
    staff.language = "id"
    staff.save(update_fields=["language"])
    client.force_login(staff)
    response = client.get(URL, {"amount": "1500000"})
    page = response.content.decode()
    assert '<html lang="id">' in page and invoice.number in page and "Rp1.500.000" in page
