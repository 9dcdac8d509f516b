"""Every customer page, at 1366x900 and at 390x844, in English and in Indonesian (the account's language):
the page does not scroll sideways, no card, chip or alert is wider than its box, and the page is in the
account's language. Full-page screenshots go to /tmp/shots/ (customer-<page>-<size>-<language>.png)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from billing import seller, subscriptions
from billing.models import Invoice
from hypervisor import claims, placement
from panel.models import ApiToken, Snapshot
from tests import factories

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "kopi tubruk 2026!"
SIZES = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}
SHOTS = Path("/tmp/shots")
# Boxes whose content must stay inside them, tables too (an invoice's lines may scroll in their own box).
BOXES = ", ".join(
    [".card__header", ".card__body", ".option-card", ".chip", ".alert", ".facts", ".page-header", ".topbar"]
    + [".table-wrap:not(.table-wrap--document)"]
)
OVERFLOWING = f"""() => [...document.querySelectorAll('{BOXES}')]
  .filter((el) => el.scrollWidth > el.clientWidth + 1)
  .map((el) => el.className + ': ' + el.textContent.trim().slice(0, 60))"""


@pytest.mark.parametrize("language", ["en", "id"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_every_customer_page_fits(browser, live_server, language, size):
    region, plan, image = factories.make_catalog()
    host = factories.make_host(region=region)
    admin = factories.make_user("admin")
    seller.save_profile(
        {
            "legal_name": "PT Awan Nusantara Sejahtera Abadi",
            "address": "Jl. Jenderal Sudirman Kav. 52-53\nJakarta Selatan 12190",
            "tax_id": "01.234.567.8-901.000",
            "email": "tagihan@awan-nusantara.co.id",
            "phone": "",
            "bank_name": "Bank Central Asia (BCA)",
            "account_number": "123-456-7890",
            "account_holder": "PT Awan Nusantara Sejahtera Abadi",
            "payment_note": "",
        },
        by=admin,
    )
    customer = factories.make_user(email="budi.santoso@example.com", password=PASSWORD)
    customer.language = language
    customer.save(update_fields=["language"])
    server = factories.make_server(
        customer,
        {"region": region, "plan": plan, "image": image, "host": host},
        name="toko-online-budi.example.com",
    )
    claims.claim(server.id, region, placement.Resources(1, 256, 1))
    factories.make_plan(slug="menengah", vcpus=2, memory_mib=2048, disk_gib=40)
    Snapshot.objects.create(server=server, name="sebelum upgrade", libvirt_name="snap-1")
    subscriptions.open_subscription(customer, plan, str(server.id), server.name)
    factories.make_ssh_key(customer)
    ApiToken.issue(customer, "deploy")
    invoice = Invoice.objects.get(account=customer)
    pages = {
        "servers": "/servers/",
        "order": "/servers/new/",
        "server": f"/servers/{server.pk}/",
        "keys": "/ssh-keys/",
        "billing": "/billing/",
        "invoice": f"/billing/invoices/{invoice.pk}/",
        "account": "/account/",
        "activity": "/account/activity/",
    }

    context = browser.new_context(viewport=SIZES[size], locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("input[name=username]", customer.email)
        page.fill("input[name=password]", PASSWORD)
        page.locator("form button[type=submit]").last.click()
        expect(page).to_have_url(re.compile(r"/servers/"))
        SHOTS.mkdir(exist_ok=True)
        for name, path in pages.items():
            page.goto(live_server.url + path)
            expect(page.locator("html")).to_have_attribute("lang", language)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
            assert page.evaluate(OVERFLOWING) == [], name
            page.screenshot(path=str(SHOTS / f"customer-{name}-{size}-{language}.png"), full_page=True)
    finally:
        context.close()
