"""While staff migrate a customer's server, its owner's server page says "Maintenance: moving your server"
with the move's progress bar, in English and in Indonesian, on a desktop and a phone, and names no host
(neither the one it leaves nor the one it goes to). The server is still running: that is what the status
says. Screenshots go to tests/.artifacts/ (customer-moving-*.png)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from panel.models import Operation, Server, User
from panel.servers.states import Task
from tests import factories
from tests.e2e.screens import shoot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "kopi tubruk 2026!"
BOXES = ", ".join([".card__header", ".card__body", ".chip", ".alert", ".page-header", ".topbar"])
TEXTS = {"en": "Maintenance: moving your server", "id": "Pemeliharaan: server Anda sedang dipindahkan"}


@pytest.mark.parametrize("language", ["en", "id"])
def test_the_owner_sees_maintenance_and_the_progress_but_no_host(
    browser, live_server, screenshot_dir, language
):
    region, plan, image = factories.make_catalog()
    source = factories.make_host(region=region, name="kvm-jkt-01")
    target = factories.make_host(region=region, name="kvm-jkt-02")
    customer = factories.make_user(
        User.Role.CUSTOMER, email="dewi@example.com", password=PASSWORD, language=language
    )
    catalog = {"region": region, "plan": plan, "image": image, "host": source}
    server = factories.make_server(customer, catalog, "toko-online.example.com", task=Task.MIGRATE)
    params = {
        "source_host": source.pk,
        "source": source.name,
        "target_host": target.pk,
        "target": target.name,
    }
    Operation.objects.create(  # the migration as its worker leaves it halfway
        server=server,
        type=Operation.Type.MIGRATE,
        status=Operation.Status.RUNNING,
        attempts=1,
        params={**params, "live": True},
        progress={
            "percent": 40,
            "bytes_done": 40 << 20,
            "bytes_total": 100 << 20,
            "bytes_remaining": 60 << 20,
        },
    )

    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("input[name=username]", customer.email)
        page.fill("input[name=password]", PASSWORD)
        page.locator("form button[type=submit]").last.click()
        expect(page).to_have_url(re.compile(r"/servers/$"))
        page.goto(f"{live_server.url}/servers/{server.pk}/")
        main = page.locator("main")
        expect(main).to_contain_text(TEXTS[language])
        expect(main.locator("[role=progressbar]").first).to_have_attribute("aria-valuenow", "40")
        text = main.inner_text()
        assert source.name not in text and target.name not in text
        assert Server.objects.get(pk=server.pk).status == Server.Status.RUNNING
        shoot(page, screenshot_dir, f"customer-moving-{language}", BOXES)
    finally:
        context.close()
