"""A host is down for good: an admin evacuates it through the API. On simulated hosts (libvirt's test driver
defines, starts and makes volumes; a backup kept on a simulated target is an empty disk): every server is
rebuilt on the other host of the region, a few at a time, from its latest backup when it has one and from
its image otherwise; it keeps its addresses, its plan and its subscription (nothing is billed); it comes
back as it was (running, stopped, suspended; a server in error runs again); its claim on the lost host is
released and one on the new host held; its owner gets a mail in their language and an activity line saying
which way it was made again. The host ends disabled by an admin and in maintenance."""

from __future__ import annotations

import pytest
from django.core import mail

from billing.models import Invoice, LedgerEntry, Subscription
from hypervisor import connection
from hypervisor.models import Allocation, Host
from panel.infrastructure import host_moves
from panel.models import ActivityEvent, HostMove, HostMoveItem, Server
from panel.servers import evacuation
from tests import factories
from tests.panel.backup_policy_support import give_backup_target, make_backup, now

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(customer, other_customer, tmp_path):
    region, plan, image = factories.make_catalog()
    factories.make_pool(region)
    uri = factories.node_uri(tmp_path, name="lost.xml")
    with factories.TidySimulatedHost(uri):
        lost = factories.make_host(uri, region=region, name="lost")
        made = {
            name: factories.make_real_server(owner, plan=plan, image=image, region=region, name=name)
            for owner, name in [
                (customer, "web.example"),
                (customer, "shop.example"),
                (other_customer, "db.example"),
                (other_customer, "held.example"),
                (other_customer, "broken.example"),
            ]
        }
        # As the panel last recorded them before the host was lost.
        Server.objects.filter(pk=made["db.example"].pk).update(status=Server.Status.STOPPED)
        Server.objects.filter(pk=made["held.example"].pk).update(
            status=Server.Status.SUSPENDED, suspended_by=Server.SuspendedBy.STAFF, status_reason="Suspended."
        )
        Server.objects.filter(pk=made["broken.example"].pk).update(status=Server.Status.ERROR)
        give_backup_target(region)
        backup = make_backup(made["shop.example"], now())
        spare = factories.make_host(
            factories.node_uri(tmp_path, name="spare.xml"), region=region, name="spare"
        )
        Host.objects.filter(pk=lost.pk).update(state=Host.State.DOWN)
        yield {"lost": lost, "spare": spare, "servers": made, "backup": backup}


def step_until_finished(move: HostMove, concurrency: int, capture) -> None:
    for _round in range(30):
        host_moves.advance(move.pk)
        moving = list(move.items.filter(status=HostMoveItem.Status.MOVING).select_related("operation"))
        assert len(moving) <= concurrency
        for item in moving:
            with capture(execute=True):  # the owner's mail goes when the operation's transaction commits
                operation = factories.run_operation(item.operation)
            assert operation.status == "succeeded", (operation.error, operation.detail)
        move.refresh_from_db()
        if move.status == HostMove.Status.FINISHED:
            return
    pytest.fail("the evacuation did not finish")


def test_an_evacuation_rebuilds_each_server_on_another_host_as_it_was(
    api, admin_user, customer, other_customer, world, settings, django_capture_on_commit_callbacks
):
    settings.HOST_MOVE_CONCURRENCY = 2
    other_customer.language = "id"
    other_customer.save(update_fields=["language"])
    lost, spare, servers = world["lost"], world["spare"], world["servers"]
    addresses = {name: sorted(server.ipv4) for name, server in servers.items()}
    assert all(addresses.values())
    subscriptions = {
        row.reference: (row.pk, row.status, row.plan_id, row.paid_through)
        for row in Subscription.objects.filter(reference__in=[str(s.pk) for s in servers.values()])
    }
    invoices, ledger = Invoice.objects.count(), LedgerEntry.objects.count()

    response = api(admin_user).post(f"/api/v1/admin/hosts/{lost.pk}/evacuate/", {}, format="json")

    assert response.status_code == 202, response.json()
    assert response.json()["move"]["kind"] == "evacuate" and response.json()["move"]["total"] == 5
    lost.refresh_from_db()
    assert (lost.enabled, lost.disabled_by, lost.maintenance) == (False, Host.DisabledBy.ADMIN, True)
    move = HostMove.objects.get(host=lost)

    step_until_finished(move, settings.HOST_MOVE_CONCURRENCY, django_capture_on_commit_callbacks)

    shown = api(admin_user).get(f"/api/v1/admin/hosts/{lost.pk}/").json()["move"]
    assert (shown["status"], shown["moved"], shown["failed"]) == ("finished", 5, [])
    expected = {
        "web.example": Server.Status.RUNNING,
        "shop.example": Server.Status.RUNNING,
        "db.example": Server.Status.STOPPED,
        "held.example": Server.Status.SUSPENDED,
        "broken.example": Server.Status.RUNNING,
    }
    conn = connection.connection(spare.uri)
    for name, server in servers.items():
        server = Server.objects.get(pk=server.pk)
        assert (server.host_id, server.status, server.task) == (spare.pk, expected[name], None), name
        assert sorted(server.ipv4) == addresses[name]  # the same addresses
        held = list(Allocation.objects.filter(consumer_uuid=server.pk))
        assert [(a.host_id, a.vcpus, a.memory_mib, a.disk_gib) for a in held] == [
            (spare.pk, server.vcpus, server.memory_mib, server.disk_gib)
        ]
        domain = conn.lookupByUUIDString(str(server.pk))
        assert bool(domain.isActive()) == (expected[name] == Server.Status.RUNNING), name
    assert Server.objects.get(pk=servers["held.example"].pk).status_reason == "Suspended."
    lost.refresh_from_db()
    spare.refresh_from_db()
    assert (lost.used_vcpus, lost.used_memory_mib, lost.used_disk_gib) == (0, 0, 0)
    assert spare.used_memory_mib == sum(server.memory_mib for server in servers.values())

    # Billing is untouched: the same subscriptions, nothing invoiced or credited.
    after = {
        row.reference: (row.pk, row.status, row.plan_id, row.paid_through)
        for row in Subscription.objects.filter(reference__in=list(subscriptions))
    }
    assert after == subscriptions
    assert (Invoice.objects.count(), LedgerEntry.objects.count()) == (invoices, ledger)

    # Which way each was made again: the server with a backup from it, the others from their image.
    shop = servers["shop.example"]
    assert shop.operations.get(type="evacuate").params["backup"] == world["backup"].pk
    assert servers["web.example"].operations.get(type="evacuate").params.get("backup") is None
    mails = {message.subject: message for message in mail.outbox}
    assert len(mail.outbox) == 5
    shop_mail = next(m for m in mail.outbox if "shop.example" in m.subject)
    web_mail = next(m for m in mail.outbox if "web.example" in m.subject)
    assert shop_mail.to == [customer.email] and "backup" in shop_mail.body
    assert "image" in web_mail.body and "lost" in web_mail.body
    db_mail = next(m for m in mails.values() if "db.example" in m.subject)
    assert db_mail.to == [other_customer.email] and db_mail.extra_headers["Content-Language"] == "id"
    summaries = dict(
        ActivityEvent.objects.filter(
            account=customer, target__in=[f"server:{shop.pk}", f"server:{servers['web.example'].pk}"]
        )
        .filter(summary__in=[evacuation.RESTORED_FROM_BACKUP, evacuation.REINSTALLED_FROM_IMAGE])
        .values_list("target", "summary")
    )
    assert summaries == {
        f"server:{shop.pk}": evacuation.RESTORED_FROM_BACKUP,
        f"server:{servers['web.example'].pk}": evacuation.REINSTALLED_FROM_IMAGE,
    }
