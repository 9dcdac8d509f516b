"""A new staff member logs in with the password, is sent to two-factor enrolment, scans the QR code (here:
reads the secret from the page), confirms with the app's code, saves the recovery codes and reaches the
staff servers page; the next login asks for the code. Screenshots of the enrolment and code pages, on a
desktop and a phone, in English and Indonesian, go to the artifacts directory."""

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from panel.accounts import totp
from panel.models import User
from tests import factories

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
PASSWORD = "kopi tubruk 2026!"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
# The page's content (not the top bar's navigation, which scrolls on its own) fits the screen's width.
FITS = "document.querySelector('#main').scrollWidth <= window.innerWidth"


def _log_in(page, base_url: str, email: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name=re.compile("^(log in|masuk)$", re.I)).click()


def _shot(page, directory: Path, name: str) -> None:
    page.screenshot(path=str(directory / f"{name}.png"), full_page=True)


def test_a_staff_member_enrols_two_factor_and_reaches_the_staff_pages(page, live_server, screenshot_dir):
    staff = factories.make_user(User.Role.STAFF, email="agus@example.com", password=PASSWORD, totp=False)

    _log_in(page, live_server.url, staff.email)
    expect(page).to_have_url(re.compile(r"/account/two-factor/\?next="))
    expect(page.locator(".qr svg")).to_be_visible()
    expect(page.get_by_text("must use two-factor authentication")).to_be_visible()
    _shot(page, screenshot_dir, "two-factor-setup-desktop-en")

    # Any other page sends them back here.
    page.goto(f"{live_server.url}/staff/customers/")
    expect(page).to_have_url(re.compile(r"/account/two-factor/"))

    secret = page.locator("#totp-secret").inner_text()
    page.fill("input[name=code]", totp.current_code(secret))
    page.get_by_role("button", name=re.compile("turn on", re.I)).click()
    expect(page.get_by_role("heading", name=re.compile("recovery codes", re.I))).to_be_visible()
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    _shot(page, screenshot_dir, "two-factor-recovery-codes-desktop-en")
    page.get_by_role("link", name=re.compile("continue", re.I)).click()
    expect(page).to_have_url(re.compile(r"/staff/customers/$"))
    page.goto(f"{live_server.url}/staff/servers/")
    expect(page).to_have_url(re.compile(r"/staff/servers/$"))
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    page.goto(f"{live_server.url}/account/")
    expect(page.locator("#two-factor")).to_contain_text("10 unused recovery codes")
    page.locator("#two-factor").screenshot(path=str(screenshot_dir / "two-factor-account-section-en.png"))

    # The next login asks for the code.
    page.get_by_role("button", name=re.compile("^log out$", re.I)).click()
    _log_in(page, live_server.url, staff.email)
    expect(page).to_have_url(re.compile(r"/accounts/login/code/"))
    _shot(page, screenshot_dir, "two-factor-code-desktop-en")
    page.fill("input[name=code]", factories.totp_code(staff, steps_ahead=1))
    page.get_by_role("button", name=re.compile("verify", re.I)).click()
    expect(page).to_have_url(re.compile(r"/servers/$"))
    page.goto(f"{live_server.url}/staff/servers/")
    expect(page).to_have_url(re.compile(r"/staff/servers/$"))


@pytest.mark.parametrize("language", ["en", "id"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_the_two_factor_pages_on_a_desktop_and_a_phone(browser, live_server, screenshot_dir, language, size):
    context = browser.new_context(viewport=SIZES[size], locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        email = f"staff-{size}-{language}@example.com"
        factories.make_user(User.Role.STAFF, email=email, password=PASSWORD, totp=False)
        page.goto(f"{live_server.url}/accounts/login/")
        if language != "en":
            with page.expect_navigation():
                page.select_option("#language-select", language)
        _log_in(page, live_server.url, email)
        expect(page.locator(".qr svg")).to_be_visible()
        _shot(page, screenshot_dir, f"two-factor-setup-{size}-{language}")
        assert page.evaluate(FITS)

        enrolled = factories.make_user(User.Role.STAFF, email=f"enrolled-{email}", password=PASSWORD)
        page.get_by_role("button", name=re.compile("log out|keluar", re.I)).click()
        _log_in(page, live_server.url, enrolled.email)
        expect(page).to_have_url(re.compile(r"/accounts/login/code/"))
        assert page.evaluate(FITS)
        _shot(page, screenshot_dir, f"two-factor-code-{size}-{language}")
    finally:
        context.close()
