"""Money, sizes and times as each language writes them, in pages and in Python-built texts alike: rupiah
with their symbol ("Rp45.000" in Indonesian, "Rp45,000" in English; never "IDR 45.000"), other currencies
with their code ("USD 12,50"), sizes with a decimal comma in Indonesian ("1,5 GiB"), and one time style per
language ("14.05" in Indonesian, also inside dates with a time; "14:05" in English)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.template import Context, Template
from django.utils import formats, translation

from billing import errors, subscriptions
from panel.models import ActivityEvent, User
from tests import factories

pytestmark = pytest.mark.django_db
AT = factories.local_time(2026, 12, 1, 14, 5)


def render(source: str, language: str, **context) -> str:
    with translation.override(language):
        return Template("{% load billing_tags usage %}" + source).render(Context(context))


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("id", "Rp45.000|−Rp1.500.000|USD 12,50|Rp74,4048|Rp|45.000"),
        ("en", "Rp45,000|−Rp1,500,000|USD 12.50|Rp74.4048|Rp|45,000"),
    ],
)
def test_money(settings, language, expected):
    settings.PANEL_CURRENCY = "IDR"
    source = (
        "{{ a|money:'IDR' }}|{{ b|money:'IDR' }}|{{ c|money:'USD' }}|{{ d|rate:'IDR' }}|"
        "{{ 'IDR'|currency_symbol }}|{{ a|amount:'IDR' }}"
    )
    text = render(source, language, a=Decimal(45000), b=Decimal(-1500000), c=Decimal("12.5"), d="74.40476")
    assert text == expected
    assert "IDR 45" not in text


def test_the_billing_pages_write_rupiah_the_indonesian_way(client, customer):
    from billing import invoices

    User.objects.filter(pk=customer.pk).update(language="id")
    line = invoices.Line(kind="manual", description="Setup fee", unit_price=Decimal("45000"))
    invoice = invoices.issue_invoice(customer, [line])
    client.force_login(customer)
    for url in ("/billing/", f"/billing/invoices/{invoice.pk}/"):
        page = client.get(url).content.decode()
        assert "Rp45.000" in page, url
        assert "IDR 45.000" not in page and "45,000" not in page, url


def test_an_insufficient_credit_error_formats_its_amounts_for_the_reader(catalog, customer, settings):
    settings.PANEL_CURRENCY = "IDR"
    for language, price in (("id", "Rp50.000"), ("en", "Rp50,000")):
        with translation.override(language), pytest.raises(errors.InsufficientCredit) as refused:
            subscriptions.require_credit(customer, catalog["plan"])
        assert price in refused.value.message and "Rp0" in refused.value.message


@pytest.mark.parametrize(
    ("language", "expected"), [("id", "1,5 GiB|512 MiB|2 GiB|85,00"), ("en", "1.5 GiB|512 MiB|2 GiB|85.00")]
)
def test_sizes(language, expected):
    source = "{{ a|mib_size }}|{{ b|mib_size }}|{{ c|mib_size }}|{{ d|gib }}"
    assert render(source, language, a=1536, b=512, c=2048, d=85 * 1024**3) == expected


def test_the_server_page_shows_memory_with_a_decimal_comma(client, customer, catalog):
    User.objects.filter(pk=customer.pk).update(language="id")
    server = factories.make_server(customer, catalog, memory_mib=1536)
    client.force_login(customer)
    page = client.get(f"/servers/{server.pk}/").content.decode()
    assert "1,5 GiB" in page and "1.5 GiB" not in page


def test_one_time_style_per_language():
    with translation.override("id"):
        assert formats.date_format(AT, "TIME_FORMAT") == "14.05"
        assert formats.date_format(AT, "DATETIME_FORMAT") == "1 Des 2026, 14.05"
        assert formats.date_format(AT, "SHORT_DATETIME_FORMAT") == "1 Des 2026 14.05"
        assert formats.date_format(AT, "DATE_FORMAT") == "1 Des 2026"
    with translation.override("en"):
        assert formats.date_format(AT, "TIME_FORMAT") == "14:05"
        assert formats.date_format(AT, "DATETIME_FORMAT") == "1 Dec 2026, 14:05"
        assert formats.date_format(AT, "DATE_FORMAT") == "1 Dec 2026"


def test_the_activity_page_shows_times_in_the_readers_style(client, customer):
    ActivityEvent.objects.create(
        type=ActivityEvent.Type.LOGIN, summary="Logged in.", account=customer, actor=customer, at=AT
    )
    client.force_login(customer)
    english = client.get("/account/activity/").content.decode()
    assert ">1 Dec 2026 14:05<" in english
    User.objects.filter(pk=customer.pk).update(language="id")
    indonesian = client.get("/account/activity/").content.decode()
    assert ">1 Des 2026 14.05<" in indonesian and "2026 14:05" not in indonesian
