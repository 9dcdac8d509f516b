"""What billing writes in the background (invoice lines, ledger reasons) is stored as its message and values
and shown in the language of whoever reads it: the customer's pages and API in the customer's language,
the staff page in the staff member's. Dates inside are formatted when shown ("28 Des 2026"); the plain
columns keep the English text for the Django admin and old rows."""

from __future__ import annotations

import pytest
from django.utils import translation

from billing import subscriptions
from billing.models import InvoiceLine, LedgerEntry
from panel.models import User
from tests import factories

pytestmark = pytest.mark.django_db
# Ordered on 28 November 2026 (Jakarta): the first month runs to 28 December.
ORDERED = factories.local_time(2026, 11, 28, 10)


@pytest.fixture
def indonesian(customer) -> User:
    User.objects.filter(pk=customer.pk).update(language="id")
    customer.refresh_from_db()
    return customer


@pytest.fixture
def cancelled(indonesian, catalog):
    """A server's subscription opened and then cancelled (its create failed), all while the process runs
    in English: an invoice line and a credit on the ledger were written in the background."""
    server = factories.make_server(indonesian, catalog, name="web1")
    with translation.override("en"):
        subscriptions.open_subscription(indonesian, catalog["plan"], str(server.id), "web1", at=ORDERED)
        subscriptions.cancel_unused_subscription(str(server.id), at=ORDERED)
    line = InvoiceLine.objects.get()
    credit = LedgerEntry.objects.get(kind=LedgerEntry.Kind.CREDIT)
    return line, credit


def test_the_rows_keep_the_english_text_and_the_message_to_render_later(cancelled):
    line, credit = cancelled
    assert line.description == "Small for web1, 28 Nov 2026 to 28 Dec 2026"
    assert line.description_data["message"] == "%(plan)s for %(server)s, %(start)s to %(end)s"
    assert line.description_data["values"]["end"] == {"date": "2026-12-28"}
    assert credit.reason == "web1 could not be created"
    with translation.override("id"):
        assert line.description_text == "Small untuk web1, 28 Nov 2026 sampai 28 Des 2026"
        assert credit.reason_text == "web1 tidak dapat dibuat"
    with translation.override("en"):
        assert line.description_text == line.description and credit.reason_text == credit.reason


def test_the_indonesian_customer_reads_them_in_indonesian_on_the_pages(client, indonesian, cancelled):
    line, _credit = cancelled
    client.force_login(indonesian)
    page = client.get(f"/billing/invoices/{line.invoice_id}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Small untuk web1, 28 Nov 2026 sampai 28 Des 2026" in page
    assert "Small for web1" not in page
    overview = client.get("/billing/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "web1 tidak dapat dibuat" in overview and "could not be created" not in overview


def test_the_api_answers_in_the_token_owners_language(api, indonesian, cancelled):
    line, _credit = cancelled
    response = api(indonesian).get(f"/api/v1/invoices/{line.invoice_id}/", HTTP_ACCEPT_LANGUAGE="en")
    assert response["Content-Language"] == "id"
    (shown,) = response.json()["lines"]
    assert shown["description"] == "Small untuk web1, 28 Nov 2026 sampai 28 Des 2026"
    listed = api(indonesian).get("/api/v1/invoices/").json()["results"][0]["lines"][0]
    assert listed["description"] == shown["description"]


def test_staff_read_the_same_rows_in_their_own_language(client, staff, indonesian, cancelled):
    line, _credit = cancelled
    client.force_login(staff)
    page = client.get(f"/staff/customers/{indonesian.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "web1 could not be created" in page and "tidak dapat dibuat" not in page
    User.objects.filter(pk=staff.pk).update(language="id")
    page = client.get(f"/staff/customers/{indonesian.pk}/").content.decode()
    assert "web1 tidak dapat dibuat" in page
    invoice = client.get(f"/staff/invoices/{line.invoice_id}/").content.decode()
    assert "Small untuk web1, 28 Nov 2026 sampai 28 Des 2026" in invoice


def test_rows_without_a_message_show_their_plain_text(client, indonesian):
    from decimal import Decimal

    from billing import invoices

    line = invoices.Line(kind="manual", description="Setup fee", unit_price=Decimal("150000"))
    invoice = invoices.issue_invoice(indonesian, [line])
    client.force_login(indonesian)
    page = client.get(f"/billing/invoices/{invoice.pk}/").content.decode()
    assert "Setup fee" in page and "Rp150.000" in page
