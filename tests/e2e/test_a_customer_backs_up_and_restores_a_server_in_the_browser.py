"""Backups in the browser, in English and in Indonesian: an admin adds a backup target (a storage pool on a
second simulated host that takes no servers), checks it and makes it the region's target; the customer
turns on daily backups of a server (seeing what they cost a month), backs up now, watches the backup
succeed once a worker has taken it (the page follows by itself), restores it after confirming, and opens
the order page for a new server from it. Screenshots of the backup targets pages, the Backups tab and the
order page at 1280 and 390 px (tests/.artifacts/backup-*.png)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from billing import addons
from hypervisor import backup_targets as targets_driver
from hypervisor.models import BackupTarget, Region
from panel.models import Backup, BackupPolicy, Operation, User
from tests import factories
from tests.e2e import screens
from tests.e2e.screens import DESKTOP

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "kopi tubruk 2026!"
BOXES = ".card__header, .card__body, .alert, .facts, .page-header, .table-wrap, .option-card, .summary"


def shoot(page, directory, name: str) -> None:
    screens.shoot(page, directory, name, BOXES)


def log_in(browser, live_server, user, *, code: bool = False):
    context = browser.new_context(viewport=DESKTOP, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form button[type=submit]").last.click()
    if code:
        page.fill("input[name=code]", factories.totp_code(user))
        page.locator("form button[type=submit]").last.click()
    expect(page).to_have_url(re.compile(r"/servers/$"))
    return context, page


@pytest.mark.parametrize("language", ["en", "id"])
def test_a_customer_backs_up_and_restores_a_server(browser, live_server, screenshot_dir, language):
    region, plan, image = factories.make_catalog()
    host = factories.make_host(region=region)
    factories.make_pool(region, cidr="203.0.113.0/28", gateway="203.0.113.1")
    # The backup host: a second row for the simulated host, never probed, so that it takes no servers.
    store = factories.make_host(region=region, name="store1", probe=False)
    admin = factories.make_user(
        User.Role.ADMIN, email=f"agus.{language}@example.com", password=PASSWORD, language=language
    )
    addons.set_backup_share(Decimal("20"), admin)
    customer = factories.make_user(email=f"sari.{language}@example.com", password=PASSWORD, language=language)

    with factories.TidySimulatedHost(host.uri):
        web = factories.make_real_server(customer, plan=plan, image=image, region=region, name="web.toko.id")

        # The admin adds the target, checks it and gives it to the region.
        context, page = log_in(browser, live_server, admin, code=True)
        try:
            page.goto(f"{live_server.url}/staff/backup-targets/")
            expect(page.locator("html")).to_have_attribute("lang", language)
            form = page.locator("form[action$='/staff/backup-targets/']")
            form.locator("input[name=name]").fill("store1-pool")
            form.locator("input[name=kind][value=host_pool]").check()
            form.locator("select[name=host]").select_option(str(store.pk))
            form.locator("input[name=pool]").fill("default")  # the simulated host's pool
            form.locator("button[type=submit]").click()
            target = BackupTarget.objects.get(name="store1-pool")
            expect(page).to_have_url(re.compile(rf"/staff/backup-targets/{target.pk}/$"))
            page.locator("form[action$='/check/'] button").click()
            expect(page.locator(".alert--info")).to_contain_text("store1-pool")
            targets_driver.record_check(target.pk)  # what the worker the button sent the check to does
            page.reload()
            expect(page.locator(".badge--op-succeeded")).to_be_visible()
            shoot(page, screenshot_dir, f"backup-target-{language}")

            page.goto(f"{live_server.url}/staff/backup-targets/")
            page.select_option(f"#region-target-{region.pk}", str(target.pk))
            page.locator(f"form.region-target-form:has(#region-target-{region.pk}) button").click()
            expect(page.locator(".alert--success")).to_contain_text("store1-pool")
            assert Region.objects.get(pk=region.pk).backup_target == target
            shoot(page, screenshot_dir, f"backup-targets-{language}")
        finally:
            context.close()

        # The customer turns backups on, backs up now and restores.
        context, page = log_in(browser, live_server, customer)
        page.on("dialog", lambda dialog: dialog.accept())
        try:
            page.goto(f"{live_server.url}/servers/{web.pk}/")
            page.locator("#backups-tab").click()
            expect(page).to_have_url(re.compile(rf"/servers/{web.pk}/backups/$"))
            price = "Rp10.000" if language == "id" else "Rp10,000"  # 20 % of the plan's Rp50,000
            expect(page.locator("#backup-price")).to_contain_text(price)
            policy_form = page.locator("form.backup-policy-form")
            policy_form.locator("input[name=enabled]").check()
            policy_form.locator("input[name=schedule][value=daily]").check()
            policy_form.locator("input[name=retention]").fill("7")
            policy_form.locator("button[type=submit]").click()
            expect(page.locator(".alert--success")).to_contain_text("web.toko.id")
            policy = BackupPolicy.objects.get(pk=web.pk)
            assert (policy.enabled, policy.schedule, policy.retention) == (True, "daily", 7)

            page.locator("form[action$='/backups/now/'] button").click()
            expect(page.locator(".alert--success")).to_contain_text("web.toko.id")
            backup = Backup.objects.get(server=web)
            expect(page.locator(f"#backup-{backup.pk}")).to_be_visible()
            # A worker takes the backup (the simulated host moves no data); the list follows by itself.
            done = factories.run_operation(backup.operation)
            assert done.status == Operation.Status.SUCCEEDED, done.error
            expect(page.locator(f"#backup-{backup.pk} .badge--op-succeeded").last).to_be_visible()
            expect(page.locator("#backup-list")).not_to_have_attribute("hx-get", re.compile("."))
            shoot(page, screenshot_dir, f"backup-tab-{language}")

            page.locator(f"form[action$='/backups/{backup.pk}/restore/'] button").click()
            expect(page.locator(".alert--success")).to_contain_text("web.toko.id")
            restore = Operation.objects.get(server=web, type="restore_backup")
            assert factories.run_operation(restore).status == Operation.Status.SUCCEEDED
            page.reload()
            expect(page.locator("form[action$='/backups/now/']")).to_be_visible()

            page.locator(f"a[href$='/servers/new/?backup={backup.pk}']").click()
            expect(page).to_have_url(re.compile(rf"/servers/new/\?backup={backup.pk}$"))
            expect(page.locator("#order-backup")).to_contain_text("web.toko.id")
            expect(page.locator("input[name=image]")).to_have_count(0)
            shoot(page, screenshot_dir, f"backup-order-{language}")
        finally:
            context.close()
