"""An admin logs in with the password and the authenticator's code, on a 1366x900 desktop and on a 390x844
phone, in English and in Indonesian (chosen with the top bar's language select). Every page of the
navigation is reachable: the customer tabs are in view, the Staff menu opens (without scrolling sideways)
onto every staff and admin page, and the current page's tab (or the Staff menu's button, on a staff page) is
in view on each of them. The top bar's parts do not overlap and the language select shows its whole
label. From the staff server list the admin opens a customer's server and sees its owner, host and the
worker's raw error; on the desktop they power it off (declining the question first) and suspend it with a
reason. Screenshots of the navigation and the staff server page go to /tmp/shots/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from panel.models import Operation, Server, User
from tests import factories

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "kopi tubruk 2026!"
SIZES = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}
SHOTS = Path("/tmp/shots")
RAW_ERROR = "libvirtError: Requested operation is not valid: domain is not running"
# The customer tabs, then the Staff menu's pages (the last two only for admins).
TABS = ["/servers/", "/ssh-keys/", "/billing/", "/account/"]
STAFF_PAGES = [
    "/staff/servers/",
    "/staff/customers/",
    "/staff/overdue/",
    "/staff/hosts/",
    "/staff/ip-pools/",
    "/staff/images/",
    "/staff/billing-settings/",
    "/staff/audit/",
    "/django-admin/",
]
# The top bar's parts, which must not overlap one another.
TOPBAR_PARTS = [".brand", ".nav__tabs", ".nav-menu__toggle", ".topbar__tools"]
SELECT_SHOWS_ITS_LABEL = """(select) => {
  const style = getComputedStyle(select);
  const context = document.createElement("canvas").getContext("2d");
  context.font = style.font;
  const text = select.options[select.selectedIndex].text;
  const room = select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return context.measureText(text).width <= room + 1;
}"""
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


def _in_viewport(page: Page, locator: Locator, what: str) -> None:
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    viewport = page.viewport_size
    assert box is not None, what
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"] + 0.5, (what, box)
    assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"] + 0.5, (what, box)


def _overlap(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["x"] + b["width"] - 0.5
        and b["x"] < a["x"] + a["width"] - 0.5
        and a["y"] < b["y"] + b["height"] - 0.5
        and b["y"] < a["y"] + a["height"] - 0.5
    )


def _check_topbar(page: Page, where: str) -> None:
    boxes = {part: page.locator(part).bounding_box() for part in TOPBAR_PARTS}
    for i, first in enumerate(TOPBAR_PARTS):
        for second in TOPBAR_PARTS[i + 1 :]:
            assert not _overlap(boxes[first], boxes[second]), (where, first, second, boxes)
    select = page.locator("#language-select")
    _in_viewport(page, select, f"{where}: language select")
    assert select.evaluate(SELECT_SHOWS_ITS_LABEL), f"{where}: the language select cuts its label"
    _in_viewport(page, page.locator(".topbar__tools button[type=submit]:visible").last, f"{where}: log out")
    assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{where}: the page scrolls sideways"


def _check_current_tab(page: Page, path: str) -> None:
    """The page's own entry is marked and in view: a tab, or on a staff page the Staff menu's button (its
    entry inside the closed menu carries aria-current)."""
    current = page.locator("nav.nav [aria-current='page']")
    expect(current).to_have_count(1)
    if path in TABS:
        expect(current).to_have_attribute("href", path)
        _in_viewport(page, current, f"{path}: current tab")
    else:
        expect(page.locator(f".nav-menu__panel a[href='{path}']")).to_have_attribute("aria-current", "page")
        _in_viewport(page, page.locator(".nav-menu__toggle--current"), f"{path}: Staff menu button")


def _open_staff_menu(page: Page) -> Locator:
    page.locator(".nav-menu__toggle").click()
    panel = page.locator(".nav-menu__panel")
    expect(panel).to_be_visible()
    return panel


def _log_in(page: Page, base_url: str, user: User) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name=re.compile("^log in$", re.I)).click()
    expect(page).to_have_url(re.compile(r"/accounts/login/code/"))
    page.fill("input[name=code]", factories.totp_code(user))
    page.get_by_role("button", name=re.compile("verify", re.I)).click()
    expect(page).to_have_url(re.compile(r"/servers/$"))


@pytest.mark.parametrize("language", ["en", "id"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_staff_reach_every_staff_page_from_the_nav_and_open_a_customers_server(
    browser, live_server, size, language
):
    SHOTS.mkdir(parents=True, exist_ok=True)
    region, plan, image = factories.make_catalog()
    host = factories.make_host(region=region, name="kvm-jkt-01")
    catalog = {"region": region, "plan": plan, "image": image, "host": host}
    customer = factories.make_user(User.Role.CUSTOMER, email="dewi@example.com")
    server = factories.make_server(customer, catalog, "toko-online.example.com")
    Operation.objects.create(
        server=server,
        type=Operation.Type.SHUTDOWN,
        status=Operation.Status.FAILED,
        attempts=1,
        error="The server could not be shut down.",
        detail=RAW_ERROR,
        requested_by=customer,
    )
    admin = factories.make_user(User.Role.ADMIN, email="agus.admin@example.com", password=PASSWORD)

    context = browser.new_context(viewport=SIZES[size], locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        _log_in(page, live_server.url, admin)
        if language != "en":
            with page.expect_navigation():
                page.select_option("#language-select", language)
            expect(page.locator("html")).to_have_attribute("lang", language)
        base = live_server.url
        tag = f"{size}-{language}"

        # The customer tabs are in view, and each marks its page as the current one.
        for path in TABS:
            _in_viewport(page, page.locator(f".nav__tabs a[href='{path}']"), f"tab {path}")
        _check_topbar(page, "servers")
        page.screenshot(path=str(SHOTS / f"nav-{tag}.png"))
        for path in TABS:
            page.locator(f".nav__tabs a[href='{path}']").click()
            expect(page).to_have_url(re.compile(re.escape(path) + "$"))
            _check_current_tab(page, path)

        # The Staff menu opens onto every staff and admin page, all within the screen.
        panel = _open_staff_menu(page)
        for path in STAFF_PAGES:
            _in_viewport(page, panel.locator(f"a[href='{path}']"), f"menu entry {path}")
        page.screenshot(path=str(SHOTS / f"nav-menu-open-{tag}.png"))
        # Escape closes it and gives the focus back to its button.
        page.keyboard.press("Escape")
        expect(panel).to_be_hidden()
        expect(page.locator(".nav-menu__toggle")).to_be_focused()

        for path in STAFF_PAGES[:-1]:
            _open_staff_menu(page).locator(f"a[href='{path}']").click()
            expect(page).to_have_url(re.compile(re.escape(path) + "$"))
            _check_current_tab(page, path)
            _check_topbar(page, path)
            if path == "/staff/hosts/":
                page.screenshot(path=str(SHOTS / f"nav-staff-page-{tag}.png"))
        _open_staff_menu(page).locator("a[href='/django-admin/']").click()
        expect(page).to_have_url(re.compile(r"/django-admin/$"))
        expect(page.locator("#site-name")).to_be_visible()

        # The quota table of the staff customer page fits its card.
        page.goto(f"{base}/staff/customers/{customer.pk}/")
        quota = page.locator("section[aria-labelledby='quota-title'] .table-wrap")
        assert quota.evaluate("(wrap) => wrap.scrollWidth <= wrap.clientWidth"), "the quota table overflows"
        if size == "desktop":
            page.locator("section[aria-labelledby='quota-title']").screenshot(
                path=str(SHOTS / f"staff-customer-quota-{tag}.png")
            )

        # From the staff server list to the customer's server.
        page.goto(f"{base}/staff/servers/")
        page.get_by_role("link", name=server.name).click()
        expect(page).to_have_url(re.compile(rf"/staff/servers/{server.pk}/$"))
        expect(page.get_by_role("heading", level=1)).to_have_text(server.name)
        expect(page.locator("#server-owner")).to_have_text(customer.email)
        expect(page.locator("#server-host")).to_have_text(host.name)
        expect(page.locator("#operations")).to_contain_text(RAW_ERROR)
        _check_current_tab(page, "/staff/servers/")
        _check_topbar(page, "staff server page")
        page.screenshot(path=str(SHOTS / f"staff-server-{tag}.png"), full_page=True)
        page.screenshot(path=str(SHOTS / f"staff-server-top-{tag}.png"))

        if size == "desktop" and language == "en":
            _power_off_and_suspend(page, server)
    finally:
        context.close()


def _power_off_and_suspend(page: Page, server: Server) -> None:
    """Power off asks first: declined, nothing happens; a suspension with a reason, accepted, starts."""
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name=re.compile("^power off$", re.I)).click()
    expect(page.get_by_role("button", name=re.compile("^power off$", re.I))).to_be_visible()
    assert not Operation.objects.filter(server=server, type="power_off").exists()

    page.fill("#suspend-reason", "Phishing kit reported by CERT")
    questions = []

    def accept(dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_role("button", name=re.compile("^suspend server$", re.I)).click()
    expect(page.locator(".messages")).to_contain_text("is being suspended")
    assert questions and server.name in questions[0]
    operation = Operation.objects.get(server=server, type="suspend")
    assert operation.params["reason"] == "Phishing kit reported by CERT"
    expect(page.locator("#staff-server-state")).to_contain_text("Suspending")
    page.screenshot(path=str(SHOTS / "staff-server-suspending-desktop-en.png"), full_page=True)
