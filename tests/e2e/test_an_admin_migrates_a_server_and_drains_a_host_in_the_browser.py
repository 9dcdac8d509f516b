"""On two real libvirt daemons (the system daemon and host2, tests/second_libvirtd.py) with a real Celery
worker, an admin works in the browser: on a customer's running server's staff page they choose host2 in the
Migrate form and the server moves there live (the page says so, the server runs on host2 afterwards);
then, on host2's page, they drain it (confirming the question) and follow the drain's progress until the
server is back on the first host and host2 is in maintenance (the test takes the drain's steps as the beat
would). Meanwhile the owner's server page shows the
maintenance text and no host names. The host page with the finished drain fits a desktop and a phone, in
English and in Indonesian. Screenshots go to tests/.artifacts/ (host-drain-*.png, staff-migrate-*.png)."""

from __future__ import annotations

import re

import libvirt
import pytest
from playwright.sync_api import Page, expect

from hypervisor.driver import find_domain
from hypervisor.models import Host
from panel.infrastructure import host_moves
from panel.models import HostMove, Server, User
from tests import factories, real_workers
from tests.conftest import wait_for
from tests.e2e.screens import shoot
from tests.second_libvirtd import register_host2, second_libvirtd  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.kvm, pytest.mark.django_db(transaction=True)]

PASSWORD = "kopi tubruk 2026!"
# (The host page's wide tables scroll inside their .table-wrap on a phone, by design.)
BOXES = ", ".join([".card__header", ".card__body", ".chip", ".alert", ".page-header", ".topbar"])


@pytest.fixture
def libvirtd(transactional_db):
    with real_workers.real_libvirtd() as conn:
        yield conn


@pytest.fixture
def kvm_host(libvirtd, second_libvirtd):  # noqa: F811 (the fixture imported above)
    """The system daemon as a host, reachable by host2's daemon for migrations back to it."""
    return real_workers.kvm_host(
        migration_uri=second_libvirtd.system_migration_uri,
        migration_address=second_libvirtd.system_migration_address,
    )


def log_in(page: Page, base_url: str, user: User) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form button[type=submit]").last.click()
    if user.is_panel_staff:
        expect(page).to_have_url(re.compile(r"/accounts/login/code/"))
        page.fill("input[name=code]", factories.totp_code(user))
        page.locator("form button[type=submit]").last.click()
    expect(page).to_have_url(re.compile(r"/servers/$"))


def test_an_admin_migrates_a_server_and_drains_its_new_host(
    browser,
    live_server,
    libvirtd,
    kvm_host,
    second_libvirtd,  # noqa: F811 (the fixture imported above)
    celery_worker,
    screenshot_dir,
    settings,
):
    settings.MIGRATION_TIMEOUT_SECONDS = 300
    rig = second_libvirtd
    customer = factories.make_user(User.Role.CUSTOMER, email="dewi@example.com", password=PASSWORD)
    admin = factories.make_user(User.Role.ADMIN, email="agus.admin@example.com", password=PASSWORD)
    plan = factories.make_plan(slug="e2e-migrate-tiny", vcpus=1, memory_mib=128, disk_gib=1)
    server = factories.make_real_server(
        customer, plan=plan, image=factories.make_image(), region=kvm_host.region, name="toko.example"
    )
    host2 = register_host2(rig, kvm_host.region, "host2-e2e")
    other = libvirt.open(rig.uri)
    admin_context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    owner_context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page, owner = admin_context.new_page(), owner_context.new_page()
    for each in (page, owner):
        each.set_default_timeout(30_000)
    try:
        log_in(page, live_server.url, admin)
        log_in(owner, live_server.url, customer)

        # Migrate from the server's staff page.
        page.goto(f"{live_server.url}/staff/servers/{server.pk}/")
        form = page.locator("#migrate form")
        form.locator("select[name=host]").select_option(str(host2.pk))
        form.get_by_role("button", name="Migrate server").click()
        expect(page.locator(".alert").first).to_contain_text("toko.example is moving to host2-e2e")
        # The owner sees maintenance while it moves (or, when it was quicker than the page, that it runs).
        owner.goto(f"{live_server.url}/servers/{server.pk}/")
        body = owner.locator("main").inner_text()
        assert "Maintenance: moving your server" in body or "Running" in body
        assert "host2-e2e" not in body and kvm_host.name not in body

        moved = wait_for(
            lambda: Server.objects.filter(pk=server.pk, host=host2, task__isnull=True).first(),
            timeout=180,
            message="the server moved to host2",
        )
        assert moved.status == Server.Status.RUNNING
        assert find_domain(other, server.pk).isActive()
        page.reload()
        expect(page.locator("main")).to_contain_text("host2-e2e")
        page.screenshot(path=str(screenshot_dir / "staff-migrate-1280.png"), full_page=True)
        owner.reload()
        expect(owner.locator("main")).to_contain_text("Running")

        # Drain host2 from its page: the server goes back to the first host.
        page.goto(f"{live_server.url}/staff/hosts/{host2.pk}/")
        page.locator("#host-move summary").click()
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Drain host").click()
        expect(page.locator("#host-move")).to_contain_text("of 1 servers done", timeout=30_000)
        move = HostMove.objects.get(host=host2)

        def finished() -> bool:
            host_moves.advance(move.pk)  # what the beat's advance-host-moves does every 10 s
            return HostMove.objects.filter(pk=move.pk, status=HostMove.Status.FINISHED).exists()

        wait_for(finished, timeout=240, interval=2, message="the drain finished")
        back = Server.objects.get(pk=server.pk)
        assert (back.host_id, back.status, back.task) == (kvm_host.pk, Server.Status.RUNNING, None)
        assert find_domain(libvirtd, server.pk).isActive()
        assert Host.objects.get(pk=host2.pk).maintenance
        page.reload()
        expect(page.locator("#host-move")).to_contain_text("1 of 1 servers done")
        expect(page.locator("#host-move")).to_contain_text("1 moved")
        shoot(page, screenshot_dir, "host-drain-en", BOXES)

        with page.expect_navigation():
            page.select_option("#language-select", "id")
        expect(page.locator("html")).to_have_attribute("lang", "id")
        expect(page.locator("#host-move")).to_contain_text("1 dari 1 server selesai")
        shoot(page, screenshot_dir, "host-drain-id", BOXES)
    finally:
        admin_context.close()
        owner_context.close()
        real_workers.remove_leftovers(other, str(server.pk))
        other.close()
