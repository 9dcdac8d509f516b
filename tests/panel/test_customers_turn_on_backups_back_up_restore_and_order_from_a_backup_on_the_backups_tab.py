"""The server page's Backups tab (without JavaScript: plain form posts): the customer turns on daily
backups (seeing their monthly price), backs up now, sees the backup succeed with its size, restores it
after a confirmation page, and orders a new server from it, whose order page offers only the plans that
hold the backup. Bad input is a form error that changes nothing; refusals are messages; another
customer's server, backup or order from a backup is a 404. The server page shows a running copy's progress
and the staff server page lists the backups with their policy."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import addons
from panel.backups import policies
from panel.infrastructure import backup_targets
from panel.models import Backup, BackupPolicy, Operation, Server, User
from tests import factories

pytestmark = pytest.mark.django_db


def text(response) -> str:
    return response.content.decode()


@pytest.fixture
def shop(catalog):
    """The catalogue's region backing up to a storage pool on a second simulated host (taking no servers),
    backups priced at 20 % of the plan, a bigger plan besides the small one."""
    admin = factories.make_user(User.Role.ADMIN)
    store = factories.make_host(region=catalog["region"], name="store1", probe=False)
    target = backup_targets.create_target(
        admin, name="store1-pool", kind="host_pool", host=store, pool="default"
    )
    backup_targets.set_region_target(admin, catalog["region"], target)
    addons.set_backup_share(Decimal("20"), admin)
    big = factories.make_plan("big", disk_gib=2, price_monthly=Decimal("90000"))
    return {**catalog, "target": target, "big": big}


@pytest.fixture
def web(shop, customer):
    with factories.TidySimulatedHost(shop["host"].uri):
        yield factories.make_real_server(
            customer, plan=shop["plan"], image=shop["image"], region=shop["region"], name="web1"
        )


def test_a_customer_turns_on_backups_backs_up_restores_and_orders_from_the_backup(
    client, customer, web, shop
):
    client.force_login(customer)
    url = f"/servers/{web.pk}/backups/"
    page = text(client.get(url))
    assert 'id="backups-tab"' in page and 'aria-current="page"' in page
    assert "Rp10,000 per month" in page  # 20 % of the plan's Rp50,000
    assert "No backups yet." in page and "Back up now" not in page

    response = client.post(url, {"enabled": "on", "schedule": "daily", "retention": "3"}, follow=True)
    assert "Backups of web1 are on." in text(response)
    policy = BackupPolicy.objects.get(pk=web.pk)
    assert (policy.enabled, policy.schedule, policy.retention) == (True, "daily", 3)
    assert policy.next_run_at is not None and "Next backup:" in text(response)

    response = client.post(f"{url}now/", follow=True)
    assert "A backup of web1 has started." in text(response)
    backup = Backup.objects.get(server=web)
    assert backup.status == "pending"
    assert f'hx-get="/servers/{web.pk}/backups/list/"' in text(response)  # the list follows the backup
    operation = factories.run_operation(backup.operation)
    assert operation.status == Operation.Status.SUCCEEDED, (operation.error, operation.detail)
    backup.refresh_from_db()
    assert backup.status == "succeeded" and backup.size_bytes

    fragment = text(client.get(f"{url}list/"))
    assert "Succeeded" in fragment and "hx-get" not in fragment
    assert f"/servers/{web.pk}/backups/{backup.pk}/restore/" in fragment
    assert f"/servers/new/?backup={backup.pk}" in fragment

    # Restoring asks first (on a page of its own without JavaScript).
    asked = client.post(f"{url}{backup.pk}/restore/")
    assert "Please confirm" in text(asked) and "its disk is replaced by the backup" in text(asked)
    assert not Operation.objects.filter(server=web, type="restore_backup").exists()
    response = client.post(f"{url}{backup.pk}/restore/", {"confirmed": "yes"}, follow=True)
    assert "web1 is being restored from its backup." in text(response)
    restore = Operation.objects.get(server=web, type="restore_backup")
    assert restore.params["backup"] == backup.pk
    restore = factories.run_operation(restore)
    assert restore.status == Operation.Status.SUCCEEDED, restore.error

    # A new server from the backup.
    order = text(client.get(f"/servers/new/?backup={backup.pk}"))
    assert "From backup web1," in order and 'name="image"' not in order
    assert f'action="/servers/new/?backup={backup.pk}"' in order
    response = client.post(
        f"/servers/new/?backup={backup.pk}",
        {
            "name": "web2",
            "plan": shop["big"].pk,
            "region": shop["region"].pk,
            "password": "a long password 1",
        },
    )
    new = Server.objects.get(name="web2")
    assert response.status_code == 302 and response["Location"] == f"/servers/{new.pk}/"
    assert Operation.objects.get(server=new, type="create").params == {"backup": backup.pk}
    assert new.image == web.image


def test_the_order_page_offers_only_plans_that_hold_the_backup(client, customer, shop):
    server = factories.make_server(customer, shop, name="db1", disk_gib=2)
    backup = Backup.objects.create(server=server, target=shop["target"], status="succeeded", disk_gib=2)
    client.force_login(customer)
    page = text(client.get(f"/servers/new/?backup={backup.pk}"))
    assert ">Big<" in page and ">Small<" not in page
    response = client.post(
        f"/servers/new/?backup={backup.pk}",
        {
            "name": "db2",
            "plan": shop["plan"].pk,
            "region": shop["region"].pk,
            "password": "a long password 1",
        },
    )
    assert "Select a valid choice" in text(response)
    assert not Server.objects.filter(name="db2").exists()


def test_bad_input_is_a_form_error_and_refusals_are_messages(client, customer, shop):
    server = factories.make_server(customer, shop, name="web1")
    client.force_login(customer)
    url = f"/servers/{server.pk}/backups/"
    response = client.post(url, {"enabled": "on", "schedule": "daily", "retention": "99"})
    assert response.status_code == 422
    assert "Ensure this value is less than or equal to 14." in text(response)
    response = client.post(url, {"enabled": "on", "schedule": "hourly", "retention": "3"})
    assert response.status_code == 422 and "Select a valid choice" in text(response)
    assert not BackupPolicy.objects.filter(pk=server.pk, enabled=True).exists()

    # Backing up now with backups off, restoring a backup that is not complete: messages, nothing starts.
    response = client.post(f"{url}now/", follow=True)
    assert "Enable backups for this server first." in text(response)
    pending = Backup.objects.create(server=server, target=shop["target"], status="running", disk_gib=1)
    response = client.post(f"{url}{pending.pk}/restore/", {"confirmed": "yes"}, follow=True)
    assert f"This server has no complete backup {pending.pk}." in text(response)
    assert not Operation.objects.filter(server=server, type__in=["backup", "restore_backup"]).exists()
    assert client.get(f"/servers/new/?backup={pending.pk}").status_code == 404
    assert client.get("/servers/new/?backup=abc").status_code == 404


def test_a_region_without_a_target_says_backups_are_not_available(client, customer, shop):
    server = factories.make_server(customer, shop, name="web1")
    shop["region"].backup_target = None
    shop["region"].save()
    client.force_login(customer)
    url = f"/servers/{server.pk}/backups/"
    assert "Backups are not available in this server's region yet." in text(client.get(url))
    response = client.post(url, {"enabled": "on", "schedule": "weekly", "retention": "2"})
    assert response.status_code == 422 and "Backups are not available in this region" in text(response)
    assert not BackupPolicy.objects.filter(pk=server.pk, enabled=True).exists()


def test_another_customers_server_and_backups_are_not_found(client, customer, other_customer, shop):
    server = factories.make_server(customer, shop, name="web1")
    backup = Backup.objects.create(server=server, target=shop["target"], status="succeeded", disk_gib=1)
    client.force_login(other_customer)
    url = f"/servers/{server.pk}/backups/"
    assert client.get(url).status_code == 404
    assert client.get(f"{url}list/").status_code == 404
    assert client.post(url, {"enabled": "on", "schedule": "daily", "retention": "3"}).status_code == 404
    assert client.post(f"{url}now/").status_code == 404
    assert client.post(f"{url}{backup.pk}/restore/", {"confirmed": "yes"}).status_code == 404
    assert client.get(f"/servers/new/?backup={backup.pk}").status_code == 404
    assert not BackupPolicy.objects.filter(pk=server.pk).exists()
    assert not Operation.objects.filter(server=server).exists()


def test_the_server_pages_show_a_copys_progress_and_staff_see_the_backups(client, customer, staff, shop):
    server = factories.make_server(customer, shop, name="web1", task="backup")
    operation = Operation.objects.create(
        server=server,
        type="backup",
        status=Operation.Status.RUNNING,
        progress={"percent": 40, "bytes_done": 1288490189, "bytes_total": 3221225472},
    )
    Backup.objects.create(
        server=server, operation=operation, target=shop["target"], status="running", disk_gib=1
    )
    Backup.objects.create(
        server=server, target=shop["target"], status="succeeded", disk_gib=1, size_bytes=340 * 1024,
        sha256="ab12cd34ef56" + "0" * 52, kind="full",
    )  # fmt: skip
    Backup.objects.create(
        server=server, target=shop["target"], status="failed", disk_gib=1, error="ssh: boom"
    )
    policies.update_policy(server, customer, enabled=True, schedule="weekly", retention=4)

    client.force_login(customer)
    for url in (f"/servers/{server.pk}/", f"/servers/{server.pk}/status/", f"/servers/{server.pk}/backups/"):
        page = text(client.get(url))
        assert 'aria-valuenow="40"' in page, url
        assert "1.2 GiB of 3.0 GiB" in page, url
    assert "340.0 KiB" in text(client.get(f"/servers/{server.pk}/backups/"))

    client.force_login(staff)
    page = text(client.get(f"/staff/servers/{server.pk}/"))
    assert 'aria-valuenow="40"' in page and "1.2 GiB of 3.0 GiB" in page
    assert "On: weekly, keeping 4 backups." in page
    assert "sha256 ab12cd34ef56" in page and "ssh: boom" in page and "store1-pool" in page
