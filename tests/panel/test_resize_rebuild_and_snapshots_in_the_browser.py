"""Resize, rebuild and snapshots from the server page: each records an operation, or says why not."""

from decimal import Decimal

import pytest

from hypervisor import claims, placement
from hypervisor.cloudinit import _crypt
from panel.models import Operation, Server, Snapshot
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(customer, catalog) -> Server:
    server = factories.make_server(customer, catalog, name="shop")
    # What the order left behind: the server's resources claimed on its host (a resize claims the change).
    claims.claim(server.id, catalog["region"], placement.Resources(1, 256, 1))
    return server


@pytest.fixture
def bigger_plan(catalog):
    return factories.make_plan(
        slug="basic-2", vcpus=2, memory_mib=2048, disk_gib=20, price_monthly=Decimal("100000")
    )


@pytest.fixture
def web(client, customer):
    client.force_login(customer)
    return client


def act(web, server, **data):
    return web.post(f"/servers/{server.pk}/action/", data, follow=True)


def page(web, server) -> str:
    return web.get(f"/servers/{server.pk}/").content.decode()


def only_operation(server) -> Operation:
    return Operation.objects.get(server=server)


# ---------- Resize ----------


def test_the_page_offers_the_other_plans_with_what_changes(web, server, bigger_plan):
    html = page(web, server)
    assert 'value="resize"' in html
    assert 'value="basic-2"' in html
    assert 'value="small"' not in html  # the server's own plan
    assert ">Rp</span>100,000<" in html and "+Rp50,000" in html
    assert "1 →" in html and "256 MiB →" in html  # from the current size to the plan's
    assert "graceful" in html


def test_resizing_in_the_browser_records_a_resize_operation(web, customer, server, bigger_plan):
    response = act(web, server, action="resize", plan="basic-2")
    operation = only_operation(server)
    assert operation.type == "resize" and operation.params["plan"] == "basic-2"
    assert operation.requested_by == customer
    assert Server.objects.get(pk=server.pk).task == "resize"
    assert "Resize to Basic-2: started" in response.content.decode()


def test_a_plan_with_a_smaller_disk_is_shown_disabled_and_refused(web, server, catalog):
    factories.make_plan(slug="tiny", vcpus=2, memory_mib=512, disk_gib=1)
    Server.objects.filter(pk=server.pk).update(disk_gib=10)
    html = page(web, server)
    assert "Disks only grow" in html
    assert 'value="tiny" id="resize-plan-tiny" required disabled' in html

    response = act(web, server, action="resize", plan="tiny")
    assert "Disks only grow: Tiny has 1 GiB, the server has 10 GiB." in response.content.decode()
    assert not Operation.objects.exists()
    assert Server.objects.get(pk=server.pk).task is None


def test_an_htmx_resize_returns_the_fragment_with_the_message(web, server, bigger_plan):
    response = web.post(
        f"/servers/{server.pk}/action/", {"action": "resize", "plan": "basic-2"}, HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert response.status_code == 200 and 'id="server-status"' in html and "<html" not in html
    assert 'id="server-messages" class="server-messages" hx-swap-oob="true"' in html
    assert "Resize to Basic-2: started" in html
    assert "Resizing…" in html
    assert only_operation(server).type == "resize"


# ---------- Rebuild ----------


def test_rebuild_needs_the_hostname_typed(web, server, catalog):
    response = act(web, server, action="rebuild", image="debian-12", confirm="wrong")
    assert "Type the server&#x27;s hostname to confirm the rebuild." in response.content.decode()
    assert not Operation.objects.exists()

    act(web, server, action="rebuild", image="debian-12", confirm="shop")
    operation = only_operation(server)
    assert operation.type == "rebuild" and operation.params == {"image": "debian-12"}
    assert Server.objects.get(pk=server.pk).task == "rebuild"


def test_the_rebuild_card_explains_what_is_kept_and_what_is_lost(web, server):
    Snapshot.objects.create(server=server, name="before upgrade", libvirt_name="snap-1")
    html = page(web, server)
    assert 'value="rebuild"' in html and 'name="image"' in html
    assert "keeps its hostname, IP address" in html
    assert "snapshot is deleted too" in html


# ---------- Snapshots ----------


def test_taking_a_snapshot_records_an_operation(web, server):
    act(web, server, action="snapshot", name="before upgrade")
    operation = only_operation(server)
    assert operation.type == "snapshot" and operation.params == {"name": "before upgrade"}


def test_a_bad_snapshot_name_is_refused_with_a_message(web, server):
    response = act(web, server, action="snapshot", name="a/b")
    assert "A snapshot name has 1 to 64 letters" in response.content.decode()
    assert not Operation.objects.exists()


def test_at_the_limit_taking_a_snapshot_is_refused_and_the_form_is_gone(web, server, settings):
    settings.SNAPSHOT_LIMIT = 2
    for n in range(2):
        Snapshot.objects.create(server=server, name=f"snap {n}", libvirt_name=f"snap-{n}")
    html = page(web, server)
    assert "2 of 2 used" in html
    assert 'value="snapshot"' not in html
    assert "keeps at most 2 snapshots" in html

    response = act(web, server, action="snapshot", name="one more")
    assert "A server keeps at most 2 snapshots; delete one first." in response.content.decode()
    assert not Operation.objects.exists()
    assert Server.objects.get(pk=server.pk).task is None


def test_snapshots_are_listed_with_restore_and_delete(web, server):
    snapshot = Snapshot.objects.create(server=server, name="before upgrade", libvirt_name="snap-1")
    html = page(web, server)
    assert "before upgrade" in html and "1 of 3 used" in html
    assert 'value="restore"' in html and 'value="delete_snapshot"' in html
    assert f'name="snapshot" value="{snapshot.pk}"' in html


def test_restoring_a_snapshot_records_an_operation_with_its_id(web, server):
    snapshot = Snapshot.objects.create(server=server, name="before upgrade", libvirt_name="snap-1")
    act(web, server, action="restore", snapshot=str(snapshot.pk))
    operation = only_operation(server)
    assert operation.type == "restore" and operation.params["snapshot"] == snapshot.pk


def test_deleting_a_snapshot_records_an_operation_with_its_id(web, server):
    snapshot = Snapshot.objects.create(server=server, name="before upgrade", libvirt_name="snap-1")
    act(web, server, action="delete_snapshot", snapshot=str(snapshot.pk))
    operation = only_operation(server)
    assert operation.type == "delete_snapshot" and operation.params["snapshot"] == snapshot.pk


def test_a_snapshot_of_another_server_is_refused(web, customer, catalog, server):
    other = factories.make_server(customer, catalog, name="blog")
    snapshot = Snapshot.objects.create(server=other, name="theirs", libvirt_name="snap-1")
    response = act(web, server, action="restore", snapshot=str(snapshot.pk))
    assert f"This server has no snapshot {snapshot.pk}." in response.content.decode()
    assert not Operation.objects.exists()


# ---------- Activity, ownership and when the controls show ----------


def test_the_activity_list_names_the_parameters(web, server, bigger_plan):
    act(web, server, action="resize", plan="basic-2")
    Server.objects.filter(pk=server.pk).update(task=None)
    act(web, server, action="snapshot", name="before upgrade")
    html = page(web, server)
    assert "Resize to Basic-2" in html
    assert "Snapshot “before upgrade”" in html


@pytest.mark.parametrize(
    "data",
    [
        {"action": "resize", "plan": "small"},
        {"action": "rebuild", "image": "debian-12", "confirm": "shop"},
        {"action": "snapshot", "name": "mine now"},
    ],
)
def test_another_customer_gets_404(client, other_customer, server, data):
    client.force_login(other_customer)
    assert client.post(f"/servers/{server.pk}/action/", data).status_code == 404
    assert client.get(f"/servers/{server.pk}/").status_code == 404
    assert not Operation.objects.exists()


CONTROLS = tuple(
    f'value="{action}"' for action in ("resize", "rebuild", "snapshot", "restore", "delete_snapshot")
)


def test_the_controls_show_only_when_the_action_is_allowed(web, server, bigger_plan):
    Snapshot.objects.create(server=server, name="before upgrade", libvirt_name="snap-1")
    html = page(web, server)
    assert all(control in html for control in CONTROLS)

    Server.objects.filter(pk=server.pk).update(task="reboot")
    html = web.get(f"/servers/{server.pk}/status/", HTTP_HX_REQUEST="true").content.decode()
    assert not any(control in html for control in CONTROLS)
    assert "when the current action has finished" in html
    assert "before upgrade" in html  # the list stays, without its buttons

    Server.objects.filter(pk=server.pk).update(task=None, status=Server.Status.ERROR)
    html = page(web, server)
    assert 'value="rebuild"' in html  # a broken server can still be rebuilt…
    assert 'value="resize"' not in html and 'value="snapshot"' not in html  # …not resized or snapshotted

    Server.objects.filter(pk=server.pk).update(status=Server.Status.PENDING, task="create")
    html = page(web, server)
    assert not any(control in html for control in CONTROLS)
    assert 'id="resize-title"' not in html and 'id="rebuild-title"' not in html


def test_the_cards_keep_their_key_while_nothing_changes(web, server, bigger_plan):
    """The polled fragment preserves the cards (and what the customer typed) until their content changes."""

    def key(html, card="snapshots"):
        return html.split(f'id="server-{card}-')[1].split('"')[0]

    poll = f"/servers/{server.pk}/status/"
    first = web.get(poll, HTTP_HX_REQUEST="true").content.decode()
    again = web.get(poll, HTTP_HX_REQUEST="true").content.decode()
    assert key(again) == key(first) and key(again, "resize") == key(first, "resize")
    Snapshot.objects.create(server=server, name="new", libvirt_name="snap-1")
    changed = web.get(poll, HTTP_HX_REQUEST="true").content.decode()
    assert key(changed) != key(first) and key(changed, "resize") != key(first, "resize")


def test_only_the_resize_card_is_drawn_anew_for_a_fresh_quote(web, server, bigger_plan, monkeypatch):
    """The price quote is renewed every few minutes: the resize card is drawn anew, the other cards keep
    what the customer is typing (a hostname to confirm, a snapshot name)."""
    from panel.servers import resize_quotes

    def keys(html):
        return {card: html.split(f'id="server-{card}-')[1].split('"')[0] for card in ("resize", "snapshots")}

    poll = f"/servers/{server.pk}/status/"
    first = keys(web.get(poll, HTTP_HX_REQUEST="true").content.decode())
    later = resize_quotes.window() + 1
    monkeypatch.setattr(resize_quotes, "window", lambda: later)
    then = keys(web.get(poll, HTTP_HX_REQUEST="true").content.decode())
    assert then["resize"] != first["resize"] and then["snapshots"] == first["snapshots"]


def test_the_status_fragment_refreshes_the_details_after_a_resize(web, server, bigger_plan):
    Server.objects.filter(pk=server.pk).update(plan=bigger_plan, vcpus=2, memory_mib=2048, disk_gib=20)
    html = web.get(f"/servers/{server.pk}/status/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="server-details" aria-labelledby="details-title" hx-swap-oob="true"' in html
    assert "<dd>20 GiB</dd>" in html


# ---------- Ordering with a root password ----------


def order(web, catalog, **extra):
    data = {
        "name": "web1",
        "plan": catalog["plan"].pk,
        "image": catalog["image"].pk,
        "region": catalog["region"].pk,
    }
    return web.post("/servers/new/", {**data, **extra})


def test_an_order_with_a_password_stores_only_its_sha512_crypt_hash(web, catalog):
    response = order(web, catalog, password="kopi tubruk 2026!")
    assert response.status_code == 302
    server = Server.objects.get()
    assert server.password_hash.startswith("$6$")
    assert _crypt.crypt("kopi tubruk 2026!", server.password_hash) == server.password_hash
    # The plain text is nowhere: not on the server row, not in its create operation.
    row = Server.objects.filter(pk=server.pk).values().get()
    assert not any("kopi tubruk" in str(value) for value in row.values())
    assert "kopi tubruk" not in str(Operation.objects.get(server=server).params)


def test_an_order_with_a_key_and_without_a_password_stores_no_hash(web, customer, catalog):
    key = factories.make_ssh_key(customer)
    assert order(web, catalog, ssh_keys=[key.pk]).status_code == 302
    assert Server.objects.get().password_hash == ""


def test_a_short_password_is_refused_and_never_echoed(web, catalog):
    response = order(web, catalog, name="bad_name!", password="short12")
    html = response.content.decode()
    assert response.status_code == 200 and not Server.objects.exists()
    assert "short12" not in html
    assert "at least 8 characters" in html

    response = order(web, catalog, name="bad_name!", password="long enough secret")
    assert "long enough secret" not in response.content.decode()
    assert 'type="password" name="password"' in response.content.decode()
