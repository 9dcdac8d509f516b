"""The first journey: sign up, verify the email address from the mailed link, order a server, watch it
become running, stop it."""

import re

import pytest
from django.core import mail
from playwright.sync_api import expect

from hypervisor import connection
from panel.models import Server
from tests import factories

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_customer_signs_up_orders_a_server_and_stops_it(page, live_server, celery_worker, screenshot_dir):
    region, plan, image = factories.make_catalog()
    host = factories.make_host(region=region)

    page.goto(f"{live_server.url}/accounts/signup/")
    page.fill("input[name=email]", "dewi@example.com")
    page.fill("input[name=password1]", "kopi tubruk 2026!")
    page.fill("input[name=password2]", "kopi tubruk 2026!")
    page.get_by_role("button", name=re.compile("sign up|create account", re.I)).click()

    # Until the address is verified, the order page says why the customer cannot order.
    expect(page).to_have_url(re.compile(r"/servers/new/$"))
    expect(page.locator("#verify-email-notice")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("create server", re.I))).to_be_disabled()
    # The live server runs in a thread of this process: its mails land in Django's test outbox.
    message = next(m for m in mail.outbox if m.to == ["dewi@example.com"])
    link = re.search(r"https?://\S+/accounts/verify/\S+/", message.body).group(0)
    page.goto(link)
    expect(page.get_by_role("heading", name=re.compile("email address verified", re.I))).to_be_visible()

    page.goto(f"{live_server.url}/servers/new/")
    expect(page.locator("#verify-email-notice")).to_have_count(0)
    page.fill("input[name=name]", "toko-online")
    page.locator(f"input[name=plan][value='{plan.pk}']").check(force=True)
    page.locator(f"input[name=image][value='{image.pk}']").check(force=True)
    # Without an SSH key or a password nobody could log in: the order is refused, saying so.
    page.get_by_role("button", name=re.compile("create server|order", re.I)).click()
    expect(page.get_by_text("Choose an SSH key or set a root password")).to_be_visible()
    assert not Server.objects.exists()
    page.locator(f"input[name=plan][value='{plan.pk}']").check(force=True)
    page.locator(f"input[name=image][value='{image.pk}']").check(force=True)
    page.fill("input[name=password]", "sate ayam 2026!")
    page.get_by_role("button", name=re.compile("create server|order", re.I)).click()

    expect(page).to_have_url(re.compile(r"/servers/[0-9a-f-]{36}/$"))
    server = Server.objects.get(name="toko-online")
    status = page.locator("#server-status")
    expect(status).to_contain_text("Running", timeout=30_000)
    assert connection.connection(host.uri).lookupByUUIDString(str(server.pk)).isActive()
    page.screenshot(path=str(screenshot_dir / "server-running.png"), full_page=True)

    # Power off asks first: dismissed, nothing happens; accepted, the server stops.
    questions = []

    def answer(dialog, accept: bool) -> None:
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, False))
    page.get_by_role("button", name=re.compile("^power off$", re.I)).click()
    page.wait_for_timeout(500)
    assert questions and "now? This cuts the power at once" in questions[0]
    assert not server.operations.filter(type="power_off").exists()
    page.once("dialog", lambda dialog: answer(dialog, True))
    page.get_by_role("button", name=re.compile("^power off$", re.I)).click()
    expect(status).to_contain_text("Stopped", timeout=30_000)
    expect(page.get_by_role("button", name=re.compile("^start$", re.I))).to_be_visible()
    server.refresh_from_db()
    assert server.status == Server.Status.STOPPED
    assert not connection.connection(host.uri).lookupByUUIDString(str(server.pk)).isActive()
    page.screenshot(path=str(screenshot_dir / "server-stopped.png"), full_page=True)

    page.goto(f"{live_server.url}/servers/")
    expect(page.get_by_text("toko-online")).to_be_visible()
    page.screenshot(path=str(screenshot_dir / "server-list.png"), full_page=True)
