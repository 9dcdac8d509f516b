"""Metering arithmetic with a moved clock: exact 64-bit deltas, counter resets, anniversary periods,
notifications and the over-limit policies (on libvirt's simulated host, which supports shaping)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from lxml import etree

from hypervisor import connection, shaping
from hypervisor.counters import Counters
from panel.models import MeterState, Operation, Server, TransferPeriod, UsageSample
from panel.servers import operations
from panel.usage import metering
from tests import factories

pytestmark = pytest.mark.django_db
UTC = UTC
GIB = 1024**3
TB6 = 6 * 1000**4


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def reading(domain_id=1, rx=0, tx=0, cpu=0, rd=0, wr=0, vcpus=1) -> Counters:
    return Counters(domain_id, rx, tx, cpu, rd, wr, vcpus)


@pytest.fixture
def server(customer, catalog):
    server = factories.make_server(customer, catalog, "meter1")
    Server.objects.filter(pk=server.pk).update(created_at=at(2026, 1, 31, 10, 0))
    server.refresh_from_db()
    return server


@pytest.mark.parametrize(
    "anchor,moment,start,end",
    [
        (at(2026, 1, 31, 10), at(2026, 2, 15), at(2026, 1, 31, 10), at(2026, 2, 28, 10)),
        (at(2026, 1, 31, 10), at(2026, 2, 28, 11), at(2026, 2, 28, 10), at(2026, 3, 31, 10)),
        (at(2026, 1, 31, 10), at(2024 + 4, 2, 29, 12), at(2028, 2, 29, 10), at(2028, 3, 31, 10)),
        (at(2026, 1, 15, 0), at(2026, 12, 20), at(2026, 12, 15), at(2027, 1, 15)),
        (at(2026, 1, 15, 0), at(2026, 1, 15, 0), at(2026, 1, 15, 0), at(2026, 2, 15, 0)),
    ],
)
def test_periods_follow_the_monthly_anniversary(settings, anchor, moment, start, end):
    settings.TIME_ZONE = "UTC"
    assert metering.period_bounds(anchor, moment) == (start, end)


def test_the_first_reading_is_a_baseline_and_later_ones_count_exact_deltas(server):
    assert metering.record(server, reading(rx=TB6, tx=5), at(2026, 2, 1, 0, 0)) is None
    deltas = metering.record(server, reading(rx=TB6 + 123_456_789_012, tx=5 + 7), at(2026, 2, 1, 0, 5))
    assert deltas["rx_bytes"] == 123_456_789_012 and deltas["tx_bytes"] == 7
    period = metering.current_period(server, at(2026, 2, 1, 0, 5))
    assert (period.in_bytes, period.out_bytes) == (123_456_789_012, 7)
    sample = UsageSample.objects.get(server=server)
    assert sample.rx_bytes == 123_456_789_012 and sample.resolution == 300


def test_six_terabytes_are_stored_to_the_byte(server):
    metering.record(server, reading(rx=0), at(2026, 2, 1))
    metering.record(server, reading(rx=TB6), at(2026, 2, 1, 0, 5))
    metering.record(server, reading(rx=TB6 * 2 + 1), at(2026, 2, 1, 0, 10))
    assert metering.current_period(server, at(2026, 2, 2)).in_bytes == TB6 * 2 + 1


def test_a_restarted_domain_counts_from_zero_without_losing_or_double_counting(server):
    metering.record(server, reading(domain_id=7, rx=1000, tx=2000), at(2026, 2, 1, 0, 0))
    metering.record(server, reading(domain_id=7, rx=1500, tx=2600), at(2026, 2, 1, 0, 5))
    # The domain was restarted: a new id, counters from zero again.
    metering.record(server, reading(domain_id=9, rx=300, tx=40), at(2026, 2, 1, 0, 10))
    metering.record(server, reading(domain_id=9, rx=310, tx=45), at(2026, 2, 1, 0, 15))
    period = metering.current_period(server, at(2026, 2, 1, 1))
    assert (period.in_bytes, period.out_bytes) == (500 + 300 + 10, 600 + 40 + 5)


def test_a_counter_that_went_backwards_is_a_reset_too(server):
    metering.record(server, reading(rx=10_000), at(2026, 2, 1, 0, 0))
    metering.record(server, reading(rx=200), at(2026, 2, 1, 0, 5))  # same id, smaller: recreated
    assert metering.current_period(server, at(2026, 2, 1, 1)).in_bytes == 200


def test_traffic_lands_in_the_period_it_happened_in(server):
    metering.record(server, reading(rx=0), at(2026, 2, 28, 9, 50))
    metering.record(server, reading(rx=100), at(2026, 2, 28, 9, 55))  # before the anniversary (10:00)
    metering.record(server, reading(rx=250), at(2026, 2, 28, 10, 5))  # after it
    periods = list(TransferPeriod.objects.filter(server=server).order_by("start"))
    assert [(p.start, p.in_bytes) for p in periods] == [
        (at(2026, 1, 31, 10), 100),
        (at(2026, 2, 28, 10), 150),
    ]


def test_notifications_at_80_90_and_100_percent_go_out_once_each(server, settings):
    plan = server.plan
    plan.transfer_gib, plan.transfer_direction, plan.over_limit_policy = 1, "out", "notify"
    plan.save()
    settings.TIME_ZONE = "UTC"
    now = at(2026, 2, 2)
    metering.record(server, reading(tx=0), now)
    for percent in (50, 81, 85, 91, 99, 100, 120):
        metering.record(server, reading(tx=GIB * percent // 100), now)
        metering.enforce(server, now)
    subjects = [m.subject for m in mail.outbox]
    assert [s.split()[-5] for s in subjects] == ["80%", "90%", "100%"]
    assert all(m.to == [server.owner.email] for m in mail.outbox)
    period = metering.current_period(server, now)
    assert period.notified_percent == 100 and not period.throttled


@pytest.fixture
def live_server_on_simulated_host(customer, catalog):
    """A server whose domain really runs on the simulated host (so shaping can be checked)."""
    from panel.servers import actions

    plan = catalog["plan"]
    plan.transfer_gib, plan.transfer_direction, plan.throttle_mbps, plan.port_speed_mbps = 1, "both", 8, 100
    plan.save()
    server = actions.order_server(
        customer, name="shaped", plan=plan, image=catalog["image"], region=catalog["region"]
    )
    operations.execute(str(Operation.objects.get(server=server).pk))
    server.refresh_from_db()
    yield server
    domain = connection.connection(catalog["host"].uri).lookupByUUIDString(str(server.id))
    if domain.isActive():
        domain.destroy()
    domain.undefine()


def inbound_average(server) -> int:
    domain = connection.connection(server.host.uri).lookupByUUIDString(str(server.id))
    interface = etree.fromstring(domain.XMLDesc().encode()).find("devices/interface/target").get("dev")
    return domain.interfaceParameters(interface, 0)["inbound.average"]


def test_the_plan_port_speed_is_applied_at_create(live_server_on_simulated_host):
    assert inbound_average(live_server_on_simulated_host) == shaping.kib_per_second(100)


def test_over_the_allowance_the_port_is_throttled_until_a_traffic_block_or_the_next_period(
    live_server_on_simulated_host,
):
    server = live_server_on_simulated_host
    now = metering.current_period(server).start + timedelta(days=3)
    metering.record(server, reading(rx=0), now)
    metering.record(server, reading(rx=GIB // 2, tx=GIB // 2 + 1), now)
    metering.enforce(server, now)
    assert metering.current_period(server, now).throttled
    assert inbound_average(server) == shaping.kib_per_second(8)
    assert metering.usage_report(server, now)["throttled"] is True

    metering.add_traffic_block(server, 1, now)
    metering.enforce(server, now)  # what the enforce_transfer task then does in a worker
    assert not metering.current_period(server, now).throttled
    assert inbound_average(server) == shaping.kib_per_second(100)

    metering.record(server, reading(rx=GIB, tx=GIB + 1), now)  # past 2 GiB now
    metering.enforce(server, now)
    assert inbound_average(server) == shaping.kib_per_second(8)
    later = metering.current_period(server, now).end + timedelta(hours=1)
    metering.enforce(server, later)  # a new period began
    assert inbound_average(server) == shaping.kib_per_second(100)
    assert not TransferPeriod.objects.filter(server=server, throttled=True).exists()


def test_an_unlimited_plan_is_never_throttled(live_server_on_simulated_host):
    server = live_server_on_simulated_host
    server.plan.transfer_gib = None
    server.plan.save()
    now = metering.current_period(server).start + timedelta(days=1)
    metering.record(server, reading(rx=0), now)
    metering.record(server, reading(rx=TB6), now)
    metering.enforce(server, now)
    assert not metering.current_period(server, now).throttled
    assert metering.usage_report(server, now)["transfer"]["allowance_bytes"] is None
    assert inbound_average(server) == shaping.kib_per_second(100)


def test_the_suspend_policy_suspends_and_a_new_period_unsuspends(live_server_on_simulated_host):
    server = live_server_on_simulated_host
    server.plan.over_limit_policy = "suspend"
    server.plan.save()
    now = metering.current_period(server).start + timedelta(days=2)
    metering.record(server, reading(rx=0), now)
    metering.record(server, reading(rx=2 * GIB), now)
    metering.enforce(server, now)
    suspend = Operation.objects.get(server=server, type="suspend")
    operations.execute(str(suspend.pk))
    server.refresh_from_db()
    assert server.status == "suspended" and "transfer" in server.status_reason
    later = metering.current_period(server, now).end + timedelta(minutes=1)
    metering.enforce(server, later)
    operations.execute(str(Operation.objects.get(server=server, type="unsuspend").pk))
    server.refresh_from_db()
    assert server.status == "running"


def test_a_host_that_cannot_shape_traffic_is_recorded_not_a_crash(server):
    # The row has no domain on the host: applying the speed fails like a kernel without sch_htb would.
    assert metering.apply_port_speed(server, 100) is False
    server.refresh_from_db()
    assert "port speed could not be applied" in server.bandwidth_error


def test_metering_a_host_reads_its_running_domains_in_one_go(live_server_on_simulated_host):
    server = live_server_on_simulated_host
    assert metering.meter_host(server.host) == 1
    assert MeterState.objects.filter(server=server).exists()
    assert metering.meter_host(server.host) == 1
    assert metering.current_period(server).in_bytes > 0  # the simulated counters grow with time


def test_the_usage_endpoint_reports_the_period(api, customer, other_customer, server):
    server.plan.transfer_gib, server.plan.transfer_direction = 10, "out"
    server.plan.save()
    period = metering.current_period(server)
    TransferPeriod.objects.filter(pk=period.pk).update(in_bytes=5, out_bytes=7)
    body = api(customer).get(f"/api/v1/servers/{server.pk}/usage/").json()
    expected = {
        "in_bytes": 5,
        "out_bytes": 7,
        "counted_bytes": 7,
        "allowance_bytes": 10 * GIB,
        "direction": "out",
        "extra_bytes": 0,
    }
    assert body["transfer"] == expected
    assert body["throttled"] is False
    assert body["period_start"] and body["period_end"]
    assert api(other_customer).get(f"/api/v1/servers/{server.pk}/usage/").status_code == 404


def test_old_samples_roll_up_into_hours_keeping_every_byte(server):
    start = at(2026, 1, 1, 10, 0)
    for minute in range(0, 60, 5):
        UsageSample.objects.create(server=server, resolution=300, start=start + timedelta(minutes=minute),
                                   rx_bytes=1000 + minute, cpu_ns=10**9)  # fmt: skip
    recent = UsageSample.objects.create(server=server, resolution=300, start=at(2026, 1, 5, 10), rx_bytes=1)
    metering.rollup(at(2026, 1, 5, 12))
    hourly = UsageSample.objects.get(server=server, resolution=3600)
    assert hourly.start == start
    assert hourly.rx_bytes == sum(1000 + m for m in range(0, 60, 5))
    assert hourly.cpu_ns == 12 * 10**9
    assert list(UsageSample.objects.filter(resolution=300)) == [recent]


def test_a_metering_cycle_enforces_the_allowance_of_servers_past_it(live_server_on_simulated_host):
    server = live_server_on_simulated_host
    metering.meter_host(server.host)  # the baseline reading
    period = metering.current_period(server)
    TransferPeriod.objects.filter(pk=period.pk).update(in_bytes=2 * GIB)
    assert metering.meter_host(server.host) == 1
    period.refresh_from_db()
    assert period.in_bytes > 2 * GIB  # this cycle's traffic was added to what was there
    assert period.throttled and period.notified_percent == 100
    assert inbound_average(server) == shaping.kib_per_second(8)
    assert UsageSample.objects.filter(server=server, resolution=300).count() == 1


def test_a_metering_cycle_leaves_servers_far_from_their_allowance_alone(live_server_on_simulated_host):
    server = live_server_on_simulated_host
    metering.meter_host(server.host)
    metering.meter_host(server.host)
    period = metering.current_period(server)
    assert not period.throttled and period.notified_percent == 0
    assert not mail.outbox
