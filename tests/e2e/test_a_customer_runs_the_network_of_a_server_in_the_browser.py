"""A customer's server network in the browser, in English and in Indonesian: the server page shows its
MAC, its IPv4 address and its routed IPv6 /64; the customer adds an IPv4 address (priced per month) and
reads how to configure it, names the IPv6 address in reverse DNS, sets a firewall on the Firewall tab
(drop everything but SSH from one network) that a worker applies, and moves the additional address to
their other server. Screenshots of the Network card and the Firewall tab at 1280 and 390 px."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from billing import addons
from hypervisor import ipam
from hypervisor.models import IPAddress
from panel.models import Firewall, User
from panel.servers import firewall
from tests import factories
from tests.e2e import screens
from tests.e2e.screens import DESKTOP

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "kopi tubruk 2026!"
BOXES = ".card__header, .card__body, .address-block, .alert, .facts, .page-header"


def shoot(page, directory, name: str) -> None:
    screens.shoot(page, directory, name, BOXES)


@pytest.mark.parametrize("language", ["en", "id"])
def test_a_customer_runs_the_network_of_a_server(browser, live_server, screenshot_dir, language):
    region, plan, image = factories.make_catalog()
    host = factories.make_host(region=region)
    factories.make_pool(region, cidr="203.0.113.0/28", gateway="203.0.113.1")
    ipam.create_pool(region, "v6", "2001:db8:77::/56", "fe80::1")
    admin = factories.make_user(User.Role.ADMIN)
    addons.set_addon_price("ipv4", Decimal("35000"), admin)
    customer = factories.make_user(email=f"sari.{language}@example.com", password=PASSWORD, language=language)
    with factories.TidySimulatedHost(host.uri):
        web = factories.make_real_server(customer, plan=plan, image=image, region=region, name="web.toko.id")
        mail = factories.make_real_server(
            customer, plan=plan, image=image, region=region, name="mail.toko.id"
        )
        (ipv6,) = web.ipv6

        context = browser.new_context(viewport=DESKTOP, locale="en-US")
        page = context.new_page()
        page.set_default_timeout(20_000)
        try:
            page.goto(f"{live_server.url}/accounts/login/")
            page.fill("input[name=username]", customer.email)
            page.fill("input[name=password]", PASSWORD)
            page.locator("form button[type=submit]").last.click()
            expect(page).to_have_url(re.compile(r"/servers/"))

            page.goto(f"{live_server.url}/servers/{web.pk}/")
            expect(page.locator("html")).to_have_attribute("lang", language)
            card = page.locator("section[aria-labelledby=network-title]")
            expect(card).to_contain_text(web.mac)
            expect(card).to_contain_text(web.ipv4[0])
            expect(card).to_contain_text(ipv6)
            expect(card).to_contain_text("35.000" if language == "id" else "35,000")

            # One more IPv4 address, and how to set it up in the server.
            card.locator("form[action$='/addresses/add/'] button").click()
            extra = IPAddress.objects.get(consumer_uuid=web.pk, role="additional").address
            card = page.locator("section[aria-labelledby=network-title]")
            expect(card).to_contain_text(extra)
            card.locator("details.address-help summary").click()
            expect(card.locator("details.address-help pre").first).to_contain_text(
                f"ip address add {extra}/28 dev eth0"
            )

            # The IPv6 address gets a reverse DNS name.
            ptr_form = card.locator(f"form.ptr-form:has(input[name=address][value='{ipv6}'])")
            ptr_form.locator("input[name=ptr]").fill("web.toko.id")
            ptr_form.locator("button").click()
            expect(page.locator(".alert").first).to_contain_text("web.toko.id")
            assert IPAddress.objects.get(address=ipv6).ptr == "web.toko.id"
            shoot(page, screenshot_dir, f"network-card-{language}")

            # The firewall: drop what is not SSH from the office network.
            page.goto(f"{live_server.url}/servers/{web.pk}/firewall/")
            page.locator("input[name=default_inbound][value=drop]").check()
            page.select_option("select[name='rules-0-protocol']", "tcp")
            page.fill("input[name='rules-0-ports']", "22")
            page.fill("input[name='rules-0-sources']", "198.51.100.0/24, 2001:db8:1::/48")
            page.locator("form[action$='/firewall/'] button.btn--primary").click()
            saved = Firewall.objects.get(pk=web.pk)
            assert saved.default_inbound == "drop"
            assert saved.inbound == [
                {"protocol": "tcp", "ports": "22", "sources": ["198.51.100.0/24", "2001:db8:1::/48"]}
            ]
            assert saved.pending
            firewall.apply_pending(str(web.pk))  # what the worker does with the task sent after the save
            assert not Firewall.objects.get(pk=web.pk).pending
            page.reload()
            expect(page.locator("input[name='rules-0-ports']")).to_have_value("22")
            shoot(page, screenshot_dir, f"firewall-tab-{language}")

            # The additional address floats to the mail server.
            page.goto(f"{live_server.url}/servers/{web.pk}/")
            move = page.locator("form[action$='/addresses/move/']")
            move.locator("select[name=target]").select_option(str(mail.pk))
            move.locator("button").click()
            expect(page.locator(".alert").first).to_contain_text("mail.toko.id")
            assert IPAddress.objects.get(address=extra).consumer_uuid == mail.pk
            page.goto(f"{live_server.url}/servers/{mail.pk}/")
            expect(page.locator("section[aria-labelledby=network-title]")).to_contain_text(extra)
        finally:
            context.close()
