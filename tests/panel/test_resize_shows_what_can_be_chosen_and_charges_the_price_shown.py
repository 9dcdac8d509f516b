"""The resize card greys out the plans the server cannot move to now (no room on its host, over the quota, an
old-format disk with snapshots), says what the customer can do, refuses such a resize before anything
changes, and charges an upgrade as quoted on the page for a few minutes."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import prices, subscriptions
from billing.models import Invoice, Subscription
from hypervisor import claims, placement
from hypervisor.models import Allocation
from panel.accounts import quotas
from panel.models import Operation, Server, Snapshot
from panel.servers import resize_quotes
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(customer, catalog) -> Server:
    server = factories.make_server(customer, catalog, name="shop")
    claims.claim(server.id, catalog["region"], placement.Resources(1, 256, 1))
    return server


@pytest.fixture
def bigger_plan(catalog):
    return factories.make_plan(
        slug="basic-2", vcpus=2, memory_mib=1024, disk_gib=2, price_monthly=Decimal("100000")
    )


@pytest.fixture
def web(client, customer):
    client.force_login(customer)
    return client


def page(web, server) -> str:
    return web.get(f"/servers/{server.pk}/").content.decode()


def test_a_plan_the_host_cannot_take_is_greyed_out_with_what_to_do(web, server, bigger_plan, catalog):
    # Another server fills the host but for what the resize would need.
    host = catalog["host"]
    free = placement.free(type(host).objects.get(pk=host.pk))
    Allocation.objects.create(
        consumer_uuid="00000000-0000-0000-0000-000000000001",
        host=host,
        vcpus=0,
        memory_mib=free.memory_mib - 100,
        disk_gib=0,
    )
    html = page(web, server)
    assert 'value="basic-2" id="resize-plan-basic-2" required disabled' in html
    assert "No room on this host" in html
    assert "contact support to have the server moved" in html


def test_a_plan_over_the_quota_is_greyed_out_with_what_to_do(web, customer, server, bigger_plan):
    quotas.set_limits(customer, {"servers": None, "vcpus": 1, "memory_mib": None, "disk_gib": None})
    html = page(web, server)
    assert 'value="basic-2" id="resize-plan-basic-2" required disabled' in html
    assert "Over your quota" in html and "ask support to raise your quota" in html


def test_a_plan_that_fits_is_offered(web, server, bigger_plan):
    html = page(web, server)
    assert 'value="basic-2" id="resize-plan-basic-2" required>' in html
    assert "No room on this host" not in html and "Over your quota" not in html


def test_an_old_disk_with_snapshots_is_refused_before_anything_changes(api, customer, server, bigger_plan):
    Server.objects.filter(pk=server.pk).update(disk_grows_with_snapshots=False)
    Snapshot.objects.create(server=server, name="before", libvirt_name="snap-1")
    subscriptions.open_subscription(customer, server.plan, str(server.id), server.name)
    response = api(customer).post(
        f"/api/v1/servers/{server.pk}/actions/", {"type": "resize", "plan": "basic-2"}, format="json"
    )
    assert response.status_code == 422
    assert "cannot grow while it has snapshots" in response.json()["error"]["message"]
    assert not Operation.objects.exists()
    assert Server.objects.get(pk=server.pk).task is None
    assert not Invoice.objects.filter(lines__kind="proration").exists()
    assert Subscription.objects.get(reference=str(server.id)).plan == server.plan
    assert Allocation.objects.get(consumer_uuid=server.id).vcpus == 1


def test_the_card_says_to_delete_snapshots_first_on_an_old_disk(web, server, bigger_plan, catalog):
    Server.objects.filter(pk=server.pk).update(disk_grows_with_snapshots=False)
    Snapshot.objects.create(server=server, name="before", libvirt_name="snap-1")
    same_disk = factories.make_plan(slug="cpu-2", vcpus=2, memory_mib=256, disk_gib=1)
    html = page(web, server)
    assert "Delete snapshots first" in html
    assert 'value="basic-2" id="resize-plan-basic-2" required disabled' in html
    assert f'value="{same_disk.slug}" id="resize-plan-{same_disk.slug}" required>' in html  # disk unchanged


def test_a_new_disk_grows_with_snapshots(api, customer, server, bigger_plan):
    """Disks made as qcow2 version 3 (every server since the field exists) can grow with snapshots."""
    assert Server.objects.get(pk=server.pk).disk_grows_with_snapshots
    Snapshot.objects.create(server=server, name="before", libvirt_name="snap-1")
    response = api(customer).post(
        f"/api/v1/servers/{server.pk}/actions/", {"type": "resize", "plan": "basic-2"}, format="json"
    )
    assert response.status_code == 202


def _subscribed(customer, server, days_ago: int = 10) -> Subscription:
    start = timezone.now() - timedelta(days=days_ago)
    subscriptions.open_subscription(customer, server.plan, str(server.id), server.name, at=start)
    return Subscription.objects.get(reference=str(server.id))


def test_an_upgrade_is_charged_as_quoted_on_the_page(web, customer, server, bigger_plan):
    subscription = _subscribed(customer, server)
    quoted_at = timezone.now() - timedelta(minutes=4)
    shown = prices.proration(subscription, bigger_plan, quoted_at)
    assert shown != prices.proration(subscription, bigger_plan)  # it shrinks by the minute
    quote = resize_quotes.make(server.id, "small", subscription.paid_through, {"basic-2": shown}, quoted_at)

    web.post(f"/servers/{server.pk}/action/", {"action": "resize", "plan": "basic-2", "quote": quote})
    invoice = Invoice.objects.get(account=customer, lines__kind="proration")
    assert invoice.total == shown


def test_the_page_carries_a_quote_of_the_prices_it_shows(web, customer, server, bigger_plan):
    subscription = _subscribed(customer, server)
    html = page(web, server)
    start = html.index('name="quote" value="') + len('name="quote" value="')
    quote = resize_quotes.read(
        html[start : html.index('"', start)], server.id, "small", subscription.paid_through
    )
    assert timezone.now() - quote.at < timedelta(seconds=30)
    assert quote.amounts == {"basic-2": prices.proration(subscription, bigger_plan, quote.at)}


def test_an_expired_quote_is_refused_and_nothing_changes(web, customer, server, bigger_plan):
    subscription = _subscribed(customer, server)
    old = timezone.now() - timedelta(seconds=resize_quotes.QUOTE_SECONDS + 60)
    quote = resize_quotes.make(server.id, "small", subscription.paid_through, {"basic-2": Decimal(1)}, old)
    response = web.post(
        f"/servers/{server.pk}/action/", {"action": "resize", "plan": "basic-2", "quote": quote}, follow=True
    )
    html = response.content.decode()
    assert "The prices shown have changed since the page was loaded." in html
    assert not Operation.objects.exists()
    assert not Invoice.objects.filter(lines__kind="proration").exists()


def test_a_quote_for_another_server_or_plan_is_refused(web, customer, server, bigger_plan, catalog):
    """A quote holds for the server on the plan it had: it cannot be replayed after the plan changed."""
    subscription = _subscribed(customer, server)
    other = factories.make_server(customer, catalog, name="other")
    for quote in (
        resize_quotes.make(other.id, "small", subscription.paid_through, {"basic-2": Decimal(1)}),
        resize_quotes.make(server.id, "basic-2", subscription.paid_through, {"basic-2": Decimal(1)}),
    ):
        web.post(f"/servers/{server.pk}/action/", {"action": "resize", "plan": "basic-2", "quote": quote})
        assert not Operation.objects.exists()


def test_a_resize_through_the_api_is_priced_now(api, customer, server, bigger_plan):
    subscription = _subscribed(customer, server)
    response = api(customer).post(
        f"/api/v1/servers/{server.pk}/actions/", {"type": "resize", "plan": "basic-2"}, format="json"
    )
    assert response.status_code == 202
    invoice = Invoice.objects.get(account=customer, lines__kind="proration")
    now = prices.proration(subscription, bigger_plan)
    assert abs(invoice.total - now) <= Decimal(1)  # priced at the request, to the rupiah


def test_sizes_are_in_gib(web, server, bigger_plan):
    html = page(web, server)
    assert " GB<" not in html and " GB " not in html
    assert "2 GiB</strong>" in html
