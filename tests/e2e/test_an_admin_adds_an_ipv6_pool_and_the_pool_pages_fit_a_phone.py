"""An admin adds an IPv6 pool of routed /64s in the browser (without any script doing the work: a plain
form post), lands on its page with its /64s listed and excludes one of them there; the pool list and the
pool page fit a 1366x900 desktop and a 390x844 phone without scrolling sideways and without a card, chip or
table spilling out of its box. Screenshots go to tests/.artifacts/ (ip-pool-*.png)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from hypervisor import ipam
from hypervisor.models import IPPool
from panel.models import User
from tests import factories

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "kopi tubruk 2026!"
SIZES = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}
BOXES = ", ".join(
    [".card__header", ".card__body", ".chip", ".alert", ".facts", ".page-header", ".topbar", ".table-wrap"]
)
OVERFLOWING = f"""() => [...document.querySelectorAll('{BOXES}')]
  .filter((el) => el.scrollWidth > el.clientWidth + 1)
  .map((el) => el.className + ': ' + el.textContent.trim().slice(0, 60))"""
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


def _fits(page, where: str) -> None:
    assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{where}: the page scrolls sideways"
    assert page.evaluate(OVERFLOWING) == [], where


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_an_admin_adds_an_ipv6_pool_and_the_pool_pages_fit(browser, live_server, screenshot_dir, size):
    region = factories.make_region()
    ipam.create_pool(
        region, "jkt-public-1", "203.0.113.0/24", "203.0.113.1", nameservers=["1.1.1.1", "8.8.8.8"]
    )
    admin = factories.make_user(User.Role.ADMIN, email="agus.admin@example.com", password=PASSWORD)

    context = browser.new_context(viewport=SIZES[size], locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("input[name=username]", admin.email)
        page.fill("input[name=password]", PASSWORD)
        page.get_by_role("button", name=re.compile("^log in$", re.I)).click()
        page.fill("input[name=code]", factories.totp_code(admin))
        page.get_by_role("button", name=re.compile("verify", re.I)).click()
        expect(page).to_have_url(re.compile(r"/servers/$"))

        page.goto(f"{live_server.url}/staff/ip-pools/")
        page.fill("input[name=name]", "jkt-v6-routed")
        page.fill("input[name=cidr]", "2001:db8:4400:ff00::/56")
        page.fill("input[name=gateway]", "fe80::1")
        page.select_option("select[name=assignment]", "prefix64")
        page.fill("input[name=nameservers]", "2606:4700:4700::1111, 2001:4860:4860::8888")
        page.get_by_role("button", name="Create pool").click()
        pool = IPPool.objects.get(name="jkt-v6-routed")
        expect(page).to_have_url(re.compile(rf"/staff/ip-pools/{pool.pk}/$"))
        expect(page.locator(".alert")).to_contain_text("created with 256 routed /64s")
        expect(page.locator("table")).to_contain_text("2001:db8:4400:ff01::/64")
        _fits(page, "pool page")
        page.screenshot(path=str(screenshot_dir / f"ip-pool-v6-{size}.png"), full_page=True)

        page.fill("textarea[name=excluded]", "2001:db8:4400:ff00::/64")
        page.get_by_role("button", name="Save pool").click()
        expect(page.locator(".alert")).to_contain_text("was saved")
        assert IPPool.objects.get(pk=pool.pk).excluded == ["2001:db8:4400:ff00::/64"]
        expect(page.locator(".badge--ip-reserved")).to_have_count(1)

        page.goto(f"{live_server.url}/staff/ip-pools/")
        expect(page.locator("table")).to_contain_text("2001:db8:4400:ff00::/56")
        _fits(page, "pool list")
        page.screenshot(path=str(screenshot_dir / f"ip-pool-list-{size}.png"), full_page=True)
    finally:
        context.close()
