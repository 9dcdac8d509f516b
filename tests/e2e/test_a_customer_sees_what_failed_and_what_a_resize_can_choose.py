"""A customer whose resize failed opens the server page, on a 1366x900 desktop and a 390x844 phone, in
English and in Indonesian (the account's language): a banner says what failed, the state the server is in
and what to do, with no hypervisor text; the power card agrees. The resize card greys out the plan the
host has no room for and says what the customer can do; the price reads "Rp". Power off asks first.
Nothing on the page scrolls sideways or overflows its card. Screenshots go to /tmp/shots/."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from hypervisor import claims, placement
from hypervisor.models import Allocation
from panel.models import Operation, Server
from panel.servers import operations
from tests import factories

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "kopi tubruk 2026!"
SIZES = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}
SHOTS = Path("/tmp/shots")
RAW = "qemu-img: Can't resize a v2 image which has snapshots"
WORDS = {
    "en": {
        "failed": "Resize to Basic-2 failed.",
        "state": "Your server is running.",
        "no_room": "No room on this host",
        "power_off": "Power off",
        "question": "Power off toko.example.com now?",
    },
    "id": {
        "failed": "Ganti paket ke Basic-2 gagal.",
        "state": "Server Anda sedang berjalan.",
        "no_room": "Host ini penuh",
        "power_off": "Matikan paksa",
        "question": "Matikan paksa toko.example.com sekarang?",
    },
}
# Every card's content stays inside the card (no chip or price sticking out).
NOTHING_OVERFLOWS = """() => [...document.querySelectorAll('.card, .option-card, .alert')].every(
  (el) => el.scrollWidth <= el.clientWidth + 1)"""


def _world(language: str) -> Server:
    region, plan, image = factories.make_catalog()
    host = factories.make_host(region=region)
    customer = factories.make_user(email=f"sari-{language}@example.com", password=PASSWORD)
    customer.language = language
    customer.save(update_fields=["language"])
    server = factories.make_server(
        customer, {"region": region, "plan": plan, "image": image, "host": host}, name="toko.example.com"
    )
    claims.claim(server.id, region, placement.Resources(1, 256, 1))
    factories.make_plan(slug="basic-2", vcpus=2, memory_mib=1024, disk_gib=2, price_monthly=Decimal("90000"))
    big = factories.make_plan(
        slug="big", vcpus=2, memory_mib=1024 * 1024, disk_gib=2, price_monthly=Decimal("9000000")
    )
    assert not placement.fits(
        type(host).objects.get(pk=host.pk),
        placement.Resources(big.vcpus, big.memory_mib, big.disk_gib),
    )
    Operation.objects.create(
        server=server,
        type="resize",
        params={"plan": "basic-2"},
        requested_by=customer,
        status=Operation.Status.FAILED,
        error=str(operations.FAILED_MESSAGE),
        detail=RAW,
        finished_at=timezone.now(),
    )
    assert Allocation.objects.filter(consumer_uuid=server.id).exists()
    return server


def _log_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form button[type=submit]").last.click()
    expect(page).to_have_url(re.compile(r"/servers/"))


@pytest.mark.parametrize("language", ["en", "id"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_a_customer_sees_what_failed_and_what_a_resize_can_choose(browser, live_server, language, size):
    words = WORDS[language]
    server = _world(language)
    context = browser.new_context(viewport=SIZES[size], locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        _log_in(page, live_server.url, server.owner.email)
        page.goto(f"{live_server.url}/servers/{server.pk}/")
        expect(page.locator("html")).to_have_attribute("lang", language)

        banner = page.locator(".failure-banner")
        expect(banner).to_contain_text(words["failed"])
        expect(banner).to_contain_text(words["state"])
        expect(page.locator("body")).not_to_contain_text(RAW)

        big = page.locator("label[for=resize-plan-big]")
        expect(big).to_contain_text(words["no_room"])
        expect(page.locator("#resize-plan-big")).to_be_disabled()
        expect(page.locator("#resize-plan-basic-2")).to_be_enabled()
        expect(page.locator("label[for=resize-plan-basic-2]")).to_contain_text("Rp")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert page.evaluate(NOTHING_OVERFLOWS), "a card's content overflows it"

        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / f"server-failed-{size}-{language}.png"), full_page=True)
        page.screenshot(path=str(SHOTS / f"server-failed-top-{size}-{language}.png"))
        page.locator("#resize").screenshot(path=str(SHOTS / f"server-resize-{size}-{language}.png"))

        questions: list[str] = []
        page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
        page.get_by_role("button", name=re.compile(f"^{words['power_off']}$", re.I)).click()
        expect(page.locator(".failure-banner")).to_be_visible()
        assert questions and words["question"] in questions[0]
        assert not server.operations.filter(type="power_off").exists()
    finally:
        context.close()


BUDGET = {
    "en": "Waiting for the guest to shut down; it is forced off after 60 seconds",
    "id": "Menunggu server mati. Setelah 60 detik, server dimatikan paksa",
}


@pytest.mark.parametrize("language", ["en", "id"])
def test_a_shutdown_in_flight_shows_its_step_and_budget(browser, live_server, language, settings):
    settings.SHUTDOWN_TIMEOUT = 60
    server = _world(language)
    Server.objects.filter(pk=server.pk).update(task="shutdown")
    started = timezone.now() - timedelta(seconds=20)
    Operation.objects.create(
        server=server,
        type="shutdown",
        status=Operation.Status.RUNNING,
        started_at=started,
        step="guest_shutdown",
        step_at=started,
    )
    context = browser.new_context(viewport=SIZES["phone"], locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        _log_in(page, live_server.url, server.owner.email)
        page.goto(f"{live_server.url}/servers/{server.pk}/")
        task = page.locator("#server-status .power__state")
        expect(task).to_contain_text(BUDGET[language])
        expect(page.locator(".failure-banner")).to_have_count(0)  # an action runs: no banner meanwhile
        assert page.evaluate(NOTHING_OVERFLOWS), "a card's content overflows it"
        SHOTS.mkdir(exist_ok=True)
        page.locator("#server-status section").first.screenshot(
            path=str(SHOTS / f"server-step-phone-{language}.png")
        )
    finally:
        context.close()
