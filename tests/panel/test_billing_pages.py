"""The billing pages: customers see their balance, servers' prices, invoices and payments and top up; invoices
print; staff record payments, adjust, void and set terms on the customer page; overdue and settings pages;
the resize card previews the prorated price. Money always goes through billing's service modules."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import dunning, invoices, ledger, payments, prices, subscriptions
from billing.models import BillingProfile, Invoice, LedgerEntry, Payment
from tests import factories

pytestmark = pytest.mark.django_db


def invoice_for(account, price: str = "150000", at=None) -> Invoice:
    line = invoices.Line(kind="manual", description="Setup fee", unit_price=Decimal(price))
    return invoices.issue_invoice(account, [line], at=at)


# The customer's pages.


def test_the_billing_page_shows_balance_servers_invoices_and_payments(client, customer, catalog):
    server = factories.make_server(customer, catalog, name="web1.example.com")
    subscriptions.open_subscription(customer, catalog["plan"], str(server.id), server.name)
    invoice = invoice_for(customer)
    payments.record_payment(customer, Decimal("50000"), "BCA-0001")
    client.force_login(customer)
    page = client.get("/billing/").content.decode()
    assert "You owe" in page  # the plan's 50,000 and the 150,000 invoice, less the 50,000 paid
    assert "150,000" in page
    assert "web1.example.com" in page and f"/servers/{server.pk}/" in page
    assert "Rp50,000" in page and "per month" in page
    assert invoice.number in page and f"/billing/invoices/{invoice.pk}/" in page
    assert "BCA-0001" in page and "Bank transfer" in page
    assert "Credits and adjustments" not in page
    payments.adjust(
        customer, Decimal("10000"), "Goodwill credit: network incident", by=factories.make_user("staff")
    )
    page = client.get("/billing/").content.decode()
    assert "Credits and adjustments" in page and "Goodwill credit: network incident" in page
    # No provider is configured: customers are told how to pay by bank transfer.
    assert "Pay by bank transfer" in page and customer.email in page


def test_the_nav_links_to_billing_for_everyone(client, customer, staff, admin_user):
    client.force_login(customer)
    page = client.get("/billing/").content.decode()
    assert 'href="/billing/"' in page
    assert "/staff/overdue/" not in page and "/staff/billing-settings/" not in page
    client.force_login(staff)
    assert "/staff/overdue/" in client.get("/billing/").content.decode()
    # Staff see the billing settings read-only (admins change the seller's details there).
    assert "/staff/billing-settings/" in client.get("/staff/overdue/").content.decode()
    client.force_login(admin_user)
    assert "/staff/billing-settings/" in client.get("/staff/overdue/").content.decode()


def test_the_account_page_links_to_billing(client, customer):
    client.force_login(customer)
    assert 'href="/billing/"' in client.get("/account/").content.decode()


def test_bank_transfer_instructions_come_from_the_settings(client, customer, settings):
    settings.BANK_TRANSFER_INSTRUCTIONS = "Bank Central Asia, account 123-456-7890, PT Contoh Hosting"
    client.force_login(customer)
    assert "account 123-456-7890" in client.get("/billing/").content.decode()


def test_an_invoice_page_is_printable_and_complete(client, customer, settings):
    settings.BILLING_COMPANY_NAME = "PT Contoh Hosting"
    invoice = invoice_for(customer)
    client.force_login(customer)
    page = client.get(f"/billing/invoices/{invoice.pk}/").content.decode()
    assert "PT Contoh Hosting" in page
    assert invoice.number in page and customer.email in page
    assert "Setup fee" in page and "Rp150,000" in page
    assert "Open" in page and "Please pay by" in page
    css = (settings.BASE_DIR / "static" / "css" / "panel.css").read_text()
    assert "@media print" in css and ".topbar" in css.split("@media print")[-1]


def test_the_seller_name_defaults_to_vps_panel(client, customer, settings):
    if hasattr(settings, "BILLING_COMPANY_NAME"):
        del settings.BILLING_COMPANY_NAME
    invoice = invoice_for(customer)
    client.force_login(customer)
    assert (
        'invoice__seller-name">VPS Panel<' in client.get(f"/billing/invoices/{invoice.pk}/").content.decode()
    )


def test_customers_never_see_another_customers_invoice(client, customer, other_customer, staff):
    invoice = invoice_for(other_customer)
    client.force_login(customer)
    assert client.get(f"/billing/invoices/{invoice.pk}/").status_code == 404
    assert client.get(f"/staff/invoices/{invoice.pk}/").status_code == 403
    assert invoice.number not in client.get("/billing/").content.decode()
    # Staff open any invoice on the staff address, never through the customer one.
    client.force_login(staff)
    assert client.get(f"/billing/invoices/{invoice.pk}/").status_code == 404
    page = client.get(f"/staff/invoices/{invoice.pk}/").content.decode()
    assert invoice.number in page and other_customer.email in page


def test_idr_amounts_have_no_decimals_and_group_thousands(client, customer):
    invoice = invoice_for(customer, "1500000")
    client.force_login(customer)
    for url in ("/billing/", f"/billing/invoices/{invoice.pk}/"):
        page = client.get(url).content.decode()
        assert "Rp1,500,000" in page, url
        assert "1,500,000.00" not in page and "1500000" not in page, url


def test_usd_amounts_keep_their_cents(client, customer, settings):
    settings.PANEL_CURRENCY = "USD"
    invoice = invoice_for(customer, "12.5")
    client.force_login(customer)
    page = client.get(f"/billing/invoices/{invoice.pk}/").content.decode()
    assert "USD 12.50" in page


def test_staff_record_a_payment_that_pays_the_invoice(client, customer, staff):
    invoice = invoice_for(customer)
    client.force_login(staff)
    page = client.get(f"/staff/customers/{customer.pk}/").content.decode()
    assert 'id="billing"' in page and invoice.number in page and "Record payment" in page
    response = client.post(
        f"/staff/customers/{customer.pk}/payments/",
        {"amount": "150000", "reference": "BCA-123", "method": "bank_transfer"},
    )
    assert response.status_code == 302 and response["Location"].endswith("#billing")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert ledger.balance(customer) == 0
    payment = Payment.objects.get(reference="BCA-123")
    assert payment.recorded_by == staff and payment.method == "bank_transfer"
    page = client.get(response["Location"]).content.decode()
    assert "Payment BCA-123 of Rp150,000 recorded." in page
    client.force_login(customer)
    page = client.get("/billing/").content.decode()
    assert "badge--inv-paid" in page and "Nothing is owed." in page


def test_the_same_reference_twice_is_recorded_once(client, customer, staff):
    client.force_login(staff)
    url = f"/staff/customers/{customer.pk}/payments/"
    data = {"amount": "100000", "reference": "BCA-777", "method": "bank_transfer"}
    client.post(url, data)
    response = client.post(url, data, follow=True)
    assert "already recorded" in response.content.decode()
    assert ledger.balance(customer) == Decimal("100000")
    assert Payment.objects.filter(reference="BCA-777").count() == 1


def test_a_reference_of_another_customer_is_a_form_error(client, customer, other_customer, staff):
    payments.record_payment(other_customer, Decimal("1000"), "BCA-555")
    client.force_login(staff)
    response = client.post(
        f"/staff/customers/{customer.pk}/payments/",
        {"amount": "1000", "reference": "BCA-555", "method": "cash"},
    )
    assert response.status_code == 200
    assert "belongs to another customer" in response.content.decode()
    assert ledger.balance(customer) == 0


def test_htmx_swaps_the_billing_section_in_place(client, customer, staff):
    client.force_login(staff)
    response = client.post(
        f"/staff/customers/{customer.pk}/payments/",
        {"amount": "25000", "reference": "BCA-1", "method": "cash"},
        HTTP_HX_REQUEST="true",
    )
    page = response.content.decode()
    assert response.status_code == 200 and page.startswith('<section id="billing"')
    assert "Payment BCA-1 of Rp25,000 recorded." in page
    assert 'id="customer-balance" hx-swap-oob="true">Rp25,000<' in page


def test_staff_void_an_open_invoice(client, customer, staff):
    invoice = invoice_for(customer)
    client.force_login(staff)
    response = client.post(f"/staff/invoices/{invoice.pk}/void/", follow=True)
    assert "was voided" in response.content.decode()
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.VOID
    assert ledger.balance(customer) == 0
    credit = LedgerEntry.objects.get(invoice=invoice, kind=LedgerEntry.Kind.CREDIT)
    assert credit.created_by == staff
    # A void invoice cannot be voided again: the service refuses, the page says so.
    response = client.post(f"/staff/invoices/{invoice.pk}/void/", follow=True)
    assert "Only open invoices can be voided." in response.content.decode()
    assert LedgerEntry.objects.filter(invoice=invoice, kind=LedgerEntry.Kind.CREDIT).count() == 1


def test_voiding_from_the_invoice_page_returns_there(client, customer, staff):
    invoice = invoice_for(customer)
    client.force_login(staff)
    url = f"/staff/invoices/{invoice.pk}/"
    assert "Void invoice" in client.get(url).content.decode()
    response = client.post(f"{url}void/", {"next": url})
    assert response["Location"] == url


def test_an_adjustment_needs_a_reason(client, customer, staff):
    client.force_login(staff)
    url = f"/staff/customers/{customer.pk}/adjustments/"
    response = client.post(url, {"amount": "-20000", "reason": "  "})
    assert response.status_code == 200 and "field--invalid" in response.content.decode()
    assert not LedgerEntry.objects.filter(account=customer).exists()
    client.post(url, {"amount": "-20000", "reason": "Extra IPv4 address, March"})
    entry = LedgerEntry.objects.get(account=customer)
    assert (entry.kind, entry.amount, entry.created_by) == ("adjustment", Decimal("-20000"), staff)
    assert ledger.balance(customer) == Decimal("-20000")
    page = client.get(f"/staff/customers/{customer.pk}/").content.decode()
    assert "Extra IPv4 address, March" in page and staff.email in page


def test_the_discount_and_custom_prices_are_saved(client, customer, staff, catalog):
    bigger = factories.make_plan(
        "medium", vcpus=2, memory_mib=1024, disk_gib=20, price_monthly=Decimal("100000")
    )
    client.force_login(staff)
    response = client.post(
        f"/staff/customers/{customer.pk}/billing-terms/",
        {"discount_percent": "10", f"price_{bigger.slug}": "80000", f"price_{catalog['plan'].slug}": ""},
    )
    assert response.status_code == 302
    profile = BillingProfile.objects.get(account=customer)
    assert profile.discount_percent == Decimal("10")
    assert profile.custom_prices == {"medium": "80000"}
    assert prices.monthly_price(customer, bigger) == Decimal("80000")
    assert prices.monthly_price(customer, catalog["plan"]) == Decimal("45000")
    page = client.get(f"/staff/customers/{customer.pk}/").content.decode()
    assert 'value="80000"' in page
    # A discount over 100 % is refused.
    response = client.post(f"/staff/customers/{customer.pk}/billing-terms/", {"discount_percent": "150"})
    assert response.status_code == 200
    assert BillingProfile.objects.get(account=customer).discount_percent == Decimal("10")


# Roles, overdue and settings.


def test_customers_get_403_on_staff_billing_pages(client, customer, other_customer):
    invoice = invoice_for(other_customer)
    client.force_login(customer)
    for path in ("/staff/overdue/", "/staff/billing-settings/", f"/staff/invoices/{invoice.pk}/"):
        assert client.get(path).status_code == 403, path
    for path, data in (
        (f"/staff/customers/{customer.pk}/payments/", {"amount": "1", "reference": "x", "method": "cash"}),
        (f"/staff/customers/{customer.pk}/adjustments/", {"amount": "1000000", "reason": "free money"}),
        (f"/staff/customers/{customer.pk}/billing-terms/", {"discount_percent": "100"}),
        (f"/staff/invoices/{invoice.pk}/void/", {}),
    ):
        assert client.post(path, data).status_code == 403, path
    assert ledger.balance(customer) == 0
    assert not BillingProfile.objects.exists()
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN


def test_the_billing_settings_page_is_for_staff_and_only_admins_change_it(client, staff, admin_user):
    client.force_login(staff)
    page = client.get("/staff/billing-settings/").content.decode()
    assert "PANEL_CURRENCY" in page and "Only admins can change these." in page
    assert client.post("/staff/billing-settings/", {"legal_name": "PT Staff"}).status_code == 403
    client.force_login(admin_user)
    page = client.get("/staff/billing-settings/").content.decode()
    for name in ("PANEL_CURRENCY", "BILLING_ORDER_POLICY", "INVOICE_DUE_DAYS", "BILLING_GRACE_DAYS",
                 "BILLING_TERMINATE_DAYS", "PRORATE_DOWNGRADE_CREDIT", "PAYMENT_PROVIDERS"):  # fmt: skip
        assert name in page, name
    assert "IDR" in page and "Invoice first" in page and "None is configured" in page


def test_the_overdue_page_lists_invoices_past_due(client, customer, other_customer, staff):
    late = invoice_for(customer, at=timezone.now() - timedelta(days=30))
    current = invoice_for(other_customer)
    client.force_login(staff)
    page = client.get("/staff/overdue/").content.decode()
    assert late.number in page and customer.email in page
    assert current.number not in page
    days = (timezone.now() - late.due_at).days
    assert days == 23 and '<span class="days-overdue days-overdue--critical">23</span>' in page
    assert "Not suspended" in page


def test_the_overdue_page_shows_suspended_accounts(client, customer, staff, catalog):
    # Due five days ago: past the three days' grace, not yet at the fourteen days of termination.
    server = factories.make_server(customer, catalog)
    subscriptions.open_subscription(
        customer, catalog["plan"], str(server.id), server.name, at=timezone.now() - timedelta(days=12)
    )
    dunning.dun(timezone.now())
    client.force_login(staff)
    page = client.get("/staff/overdue/").content.decode()
    assert "badge--suspended" in page and "deleted on" in page


# The resize card.


def test_the_resize_card_previews_the_prorated_price(client, customer, catalog):
    factories.make_plan("medium", vcpus=2, memory_mib=1024, disk_gib=20, price_monthly=Decimal("100000"))
    server = factories.make_server(customer, catalog, disk_gib=1)
    client.force_login(customer)
    assert "now for the rest of this period" not in client.get(f"/servers/{server.pk}/").content.decode()
    subscriptions.open_subscription(customer, catalog["plan"], str(server.id), server.name)
    page = client.get(f"/servers/{server.pk}/").content.decode()
    assert "You pay <strong>Rp" in page and "now for the rest of this period" in page
    amount = prices.proration(
        subscriptions.active_subscription(str(server.id)), factories.make_plan("medium")
    )
    assert Decimal("49000") < amount <= Decimal("50000")


def test_the_resize_card_previews_a_downgrade_credit(client, customer, catalog):
    factories.make_plan("tiny", vcpus=1, memory_mib=128, disk_gib=1, price_monthly=Decimal("20000"))
    server = factories.make_server(customer, catalog, disk_gib=1)
    subscriptions.open_subscription(customer, catalog["plan"], str(server.id), server.name)
    client.force_login(customer)
    page = client.get(f"/servers/{server.pk}/").content.decode()
    assert "is credited for the rest of this period" in page


def _queries(client, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200, url
    return len(queries)


def test_billing_pages_ask_as_many_queries_for_many_rows_as_for_few(client, customer, staff, catalog):
    """Nothing on the billing pages is looked up once per invoice, payment, server or ledger entry."""
    past = timezone.now() - timedelta(days=30)

    def grow(count: int) -> None:
        for _n in range(count):
            invoice_for(customer, "1000", at=past)
            payments.record_payment(customer, Decimal("1"), f"REF-{Payment.objects.count()}")
            server = factories.make_server(customer, catalog, name=f"web{Invoice.objects.count()}")
            subscriptions.open_subscription(customer, catalog["plan"], str(server.id), server.name, at=past)

    pages = {
        "customer": ["/billing/"],
        "staff": [f"/staff/customers/{customer.pk}/", "/staff/overdue/"],
    }
    grow(2)
    few = {}
    for who, urls in pages.items():
        client.force_login(customer if who == "customer" else staff)
        few.update({url: _queries(client, url) for url in urls})
    grow(10)
    for who, urls in pages.items():
        client.force_login(customer if who == "customer" else staff)
        for url in urls:
            assert _queries(client, url) == few[url], url


def test_money_inputs_step_by_the_currencys_smallest_unit(client, customer, staff, settings):
    """A number input's steps count from its min: min 0.01 with step 1 would refuse every whole rupiah."""
    client.force_login(staff)
    page = client.get(f"/staff/customers/{customer.pk}/").content.decode()
    assert 'name="amount" min="1" step="1"' in page
    settings.PANEL_CURRENCY = "USD"
    page = client.get(f"/staff/customers/{customer.pk}/").content.decode()
    assert 'name="amount" min="0.01" step="0.01"' in page
