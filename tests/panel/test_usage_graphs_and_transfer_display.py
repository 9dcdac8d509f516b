"""Usage graphs (SVG drawn by the panel) and the transfer display on the server, host and customer pages."""

from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from panel.models import Server, TransferPeriod, UsageSample
from panel.usage import graphs, metering
from tests import factories

pytestmark = pytest.mark.django_db

GIB = 1024**3
NOW = datetime(2025, 6, 4, 10, 2, 30, tzinfo=UTC)  # in the 5-minute bucket of 10:00
FIVE, HOUR = UsageSample.FIVE_MINUTES, UsageSample.HOUR


def at(hour: int, minute: int = 0, day: int = 4) -> datetime:
    return datetime(2025, 6, day, hour, minute, tzinfo=UTC)


def sample(server, start, resolution=FIVE, vcpus=1, **values) -> UsageSample:
    return UsageSample.objects.create(
        server=server, resolution=resolution, start=start, vcpus=vcpus, **values
    )


def value_at(points, moment):
    return dict(points)[moment]


@pytest.fixture
def server(customer, catalog) -> Server:
    return factories.make_server(customer, catalog, name="web1", vcpus=2)


# The series: exact arithmetic, gaps, resolutions.


def test_cpu_percent_and_bits_per_second_are_exact_and_missing_buckets_are_gaps(server):
    sample(server, at(9, 50), vcpus=2, cpu_ns=150 * 10**9, rx_bytes=3_750_000, tx_bytes=37_500,
           rd_bytes=300 * 4096, wr_bytes=0)  # fmt: skip
    sample(server, at(10, 0), vcpus=2, cpu_ns=600 * 10**9)

    cpu = graphs.series(server, "cpu", "24h", NOW)
    network = graphs.series(server, "network", "24h", NOW)
    disk = graphs.series(server, "disk", "24h", NOW)

    assert (
        list(cpu) == ["CPU"] and list(network) == ["Inbound", "Outbound"] and list(disk) == ["Read", "Write"]
    )
    points = cpu["CPU"]
    assert len(points) == 288
    assert points[-1][0] == at(10, 0) and points[0][0] == at(10, 5, day=3)
    assert value_at(points, at(9, 50)) == 25.0  # 150 s of CPU in 300 s on 2 vCPUs
    assert value_at(points, at(10, 0)) == 100.0  # 600 s in 300 s on 2 vCPUs: all of them
    assert value_at(points, at(9, 55)) is None  # no sample: a gap, not a zero
    assert value_at(network["Inbound"], at(9, 50)) == 100_000.0  # 3,750,000 B × 8 / 300 s
    assert value_at(network["Outbound"], at(9, 50)) == 1_000.0
    assert value_at(network["Inbound"], at(9, 55)) is None
    assert value_at(disk["Read"], at(9, 50)) == 4096.0
    assert value_at(disk["Write"], at(9, 50)) == 0.0  # measured zero stays a zero


def test_cpu_is_capped_at_all_vcpus(server):
    sample(server, at(9, 0), vcpus=1, cpu_ns=900 * 10**9)  # more than 300 s: a counter glitch
    assert value_at(graphs.series(server, "cpu", "24h", NOW)["CPU"], at(9, 0)) == 100.0


def test_a_week_sums_five_minute_samples_into_hours_next_to_hourly_ones(server):
    for minute in range(0, 60, 5):  # a whole hour of 5-minute samples, not rolled up yet
        sample(server, at(8, minute), cpu_ns=30 * 10**9, rx_bytes=1000)
    sample(server, at(8, day=1), resolution=HOUR, tx_bytes=450_000_000)  # rolled up three days ago

    cpu = graphs.series(server, "cpu", "7d", NOW)["CPU"]
    network = graphs.series(server, "network", "7d", NOW)

    assert len(cpu) == 168 and cpu[-1][0] == at(10)
    assert value_at(cpu, at(8)) == 10.0  # 12 × 30 s in 3600 s on one vCPU
    assert value_at(network["Inbound"], at(8)) == 12 * 1000 * 8 / 3600
    assert value_at(network["Outbound"], at(8, day=1)) == 1_000_000.0  # 450 MB × 8 / 3600 s
    assert value_at(cpu, at(7)) is None


def test_a_month_has_three_hour_points_and_every_window_stays_under_300(server):
    for hour in (3, 4, 5):
        sample(server, at(hour, day=1), resolution=HOUR, tx_bytes=1_350_000_000)
    outbound = graphs.series(server, "network", "30d", NOW)["Outbound"]
    assert value_at(outbound, at(3, day=1)) == 3 * 1_350_000_000 * 8 / 10800
    assert value_at(outbound, at(6, day=1)) is None
    for key in graphs.WINDOWS:
        assert len(graphs.series(server, "cpu", key, NOW)["CPU"]) <= 300


def test_the_bucket_now_runs_in_counts_only_its_time_so_far(server):
    sample(server, at(10, 0), rx_bytes=1_000_000)
    sample(server, at(10, 5), rx_bytes=500_000)
    inbound = graphs.series(server, "network", "7d", at(10, 12))["Inbound"]
    assert value_at(inbound, at(10)) == 1_500_000 * 8 / 720  # 12 minutes of the hour so far


def test_a_coarser_sample_is_spread_over_the_buckets_it_covers(server):
    sample(server, at(8), resolution=HOUR, rx_bytes=3_600_000)
    inbound = graphs.series(server, "network", "24h", NOW)["Inbound"]
    assert {value_at(inbound, at(8, minute)) for minute in range(0, 60, 5)} == {8000.0}
    assert value_at(inbound, at(9)) is None


def test_a_host_sums_its_servers(customer, other_customer, catalog):
    small = factories.make_server(customer, catalog, name="small", vcpus=1)
    big = factories.make_server(other_customer, catalog, name="big", vcpus=3)
    elsewhere = factories.make_server(customer, catalog, name="away", host=None)
    sample(small, at(9), vcpus=1, cpu_ns=300 * 10**9, rx_bytes=30_000)
    sample(big, at(9), vcpus=3, cpu_ns=0, rx_bytes=7_500)
    sample(elsewhere, at(9), vcpus=1, cpu_ns=300 * 10**9, rx_bytes=10**9)

    on_host = Server.objects.filter(host=catalog["host"])
    assert value_at(graphs.series(on_host, "cpu", "24h", NOW)["CPU"], at(9)) == 25.0  # 1 of 4 vCPUs busy
    assert value_at(graphs.series(on_host, "network", "24h", NOW)["Inbound"], at(9)) == 1000.0
    by_ids = graphs.series([small.pk, big.pk], "network", "24h", NOW)["Inbound"]
    assert value_at(by_ids, at(9)) == 1000.0


# The pictures.


def test_the_svg_parses_and_names_its_series_without_nan(server):
    sample(server, at(9, 50), vcpus=2, cpu_ns=150 * 10**9, rx_bytes=3_750_000, tx_bytes=37_500)
    svg = graphs.svg_line_chart(graphs.series(server, "network", "24h", NOW), "bps", title="Network <&> test")
    root = etree.fromstring(svg.encode())
    ns = {"svg": graphs.SVG_NS}
    assert root.tag == f"{{{graphs.SVG_NS}}}svg"
    assert root.find("svg:title", ns).text == "Network <&> test"
    assert root.get("role") == "img" and root.get("aria-label").startswith("Network <&> test: Inbound: peak")
    texts = [element.text for element in root.iter(f"{{{graphs.SVG_NS}}}text")]
    assert "Inbound" in texts and "Outbound" in texts
    assert any(text.endswith("Kb/s") for text in texts)  # y ticks in human units
    assert "nan" not in svg.lower() and "inf" not in svg.lower()
    assert root.findall(".//svg:circle", ns) or root.findall(".//svg:polyline", ns)


def test_an_empty_chart_says_no_data_yet(server):
    svg = graphs.svg_line_chart(graphs.series(server, "cpu", "24h", NOW), "percent", title="CPU")
    root = etree.fromstring(svg.encode())
    assert "No data yet" in [element.text for element in root.iter(f"{{{graphs.SVG_NS}}}text")]
    assert not root.findall(f".//{{{graphs.SVG_NS}}}polyline")
    assert "No data yet" in graphs.svg_line_chart({}, "bps", title="Network")


def test_y_ticks_use_round_human_units():
    top, ticks = graphs.y_scale(999_000, "bps")
    assert top == 1_000_000 and [label for _value, label in ticks][-1] == "1.00 Mb/s"
    top, ticks = graphs.y_scale(3_000_000, "Bps")
    assert [label for _value, label in ticks] == ["0 MiB/s", "1 MiB/s", "2 MiB/s", "3 MiB/s"]
    top, ticks = graphs.y_scale(37, "percent")
    assert top == 40 and 4 <= len(ticks) <= 6


# The server page.


def recent_samples(server, count=6):
    now = datetime.now(UTC)
    start = datetime.fromtimestamp(int(now.timestamp()) // FIVE * FIVE, tz=UTC)
    for index in range(count):
        sample(server, start - timedelta(minutes=5 * index), vcpus=2, cpu_ns=60 * 10**9, rx_bytes=10**6,
               tx_bytes=10**5, rd_bytes=4096, wr_bytes=8192)  # fmt: skip


def test_the_server_page_and_its_charts_fragment_are_the_owners_only(
    client, customer, other_customer, server
):
    recent_samples(server)
    client.force_login(customer)
    page = client.get(f"/servers/{server.pk}/").content.decode()
    assert 'id="usage"' in page and 'id="usage-charts"' in page and page.count("<svg") >= 3
    assert "Transfer this period" in page
    fragment = client.get(f"/servers/{server.pk}/usage/?window=24h", HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200
    html = fragment.content.decode()
    assert "<html" not in html and 'id="usage-charts"' in html and "Inbound" in html

    client.force_login(other_customer)
    assert client.get(f"/servers/{server.pk}/").status_code == 404
    assert client.get(f"/servers/{server.pk}/usage/").status_code == 404


def test_an_empty_server_shows_no_data_yet(client, customer, server):
    client.force_login(customer)
    html = client.get(f"/servers/{server.pk}/").content.decode()
    assert html.count("No data yet") >= 3


def test_the_window_switch(client, customer, server):
    client.force_login(customer)
    html = client.get(f"/servers/{server.pk}/usage/?window=7d").content.decode()
    assert f'href="/servers/{server.pk}/?window=7d#usage" hx-get' in html
    assert f'hx-get="/servers/{server.pk}/usage/?window=7d" hx-target="#usage-charts"' in html
    assert 'aria-current="true">7 days<' in html and "Averages over 1 hour" in html
    assert 'aria-current="true">30 days<' in client.get(f"/servers/{server.pk}/?window=30d").content.decode()
    assert (
        'aria-current="true">24 hours<'
        in client.get(f"/servers/{server.pk}/usage/?window=x").content.decode()
    )


def make_metered_server(owner, catalog, transfer_gib=100, **plan_fields):
    plan = factories.make_plan(slug=f"metered{transfer_gib}", transfer_gib=transfer_gib, port_speed_mbps=200,
                               throttle_mbps=10, **plan_fields)  # fmt: skip
    return factories.make_server(owner, catalog, name="metered", plan=plan)


def test_the_transfer_box_shows_unlimited_and_speed_apart(client, customer, catalog):
    server = make_metered_server(customer, catalog, transfer_gib=None)
    TransferPeriod.objects.filter(pk=metering.current_period(server).pk).update(
        in_bytes=5 * GIB, out_bytes=GIB
    )
    client.force_login(customer)
    html = client.get(f"/servers/{server.pk}/").content.decode()
    assert "Unlimited" in html and "transfer-banner" not in html
    assert '<strong title="6,442,450,944 bytes">6.00</strong> GiB' in html
    assert "Port speed" in html and "200 Mbps" in html


def test_the_transfer_box_warns_at_85_percent(client, customer, catalog):
    server = make_metered_server(customer, catalog, transfer_gib=100)
    period = metering.current_period(server)
    TransferPeriod.objects.filter(pk=period.pk).update(in_bytes=50 * GIB, out_bytes=35 * GIB)
    client.force_login(customer)
    html = client.get(f"/servers/{server.pk}/").content.decode()
    assert 'id="transfer-banner"' in html and "alert--warning" in html
    assert "85% of this period’s transfer is used." in html
    assert "At 100% the port is limited to 10 Mbps" in html
    assert 'title="91,268,055,040 bytes">85.00</strong> GiB' in html and "used of 100.00 GiB" in html
    assert "Inbound and outbound" in html


def test_a_throttled_server_says_so(client, customer, catalog):
    server = make_metered_server(customer, catalog, transfer_gib=10)
    period = metering.current_period(server)
    TransferPeriod.objects.filter(pk=period.pk).update(out_bytes=12 * GIB, throttled=True)
    client.force_login(customer)
    html = client.get(f"/servers/{server.pk}/").content.decode()
    assert (
        "alert--error" in html and "Throttled." in html and "120% of this period’s transfer is used." in html
    )
    assert "The port is limited to 10 Mbps (instead of 200 Mbps)" in html


def test_the_charts_fragment_uses_a_constant_number_of_queries(
    client, customer, server, catalog, django_assert_max_num_queries
):
    client.force_login(customer)
    client.get(f"/servers/{server.pk}/usage/")  # warm the session
    with django_assert_max_num_queries(4):
        client.get(f"/servers/{server.pk}/usage/?window=7d")
    recent_samples(server, count=200)
    for window in ("24h", "7d", "30d"):
        with django_assert_max_num_queries(4):
            assert client.get(f"/servers/{server.pk}/usage/?window={window}").status_code == 200


# Staff.


def test_staff_add_a_traffic_block_and_customers_may_not(client, customer, staff, catalog):
    server = make_metered_server(customer, catalog, transfer_gib=100)
    url = f"/servers/{server.pk}/".replace("/servers/", "/staff/servers/") + "traffic-block/"

    client.force_login(customer)
    assert client.post(url, {"gib": 5}).status_code == 403

    client.force_login(staff)
    response = client.post(url, {"gib": 5, "next": f"/staff/customers/{customer.pk}/"}, follow=True)
    assert response.redirect_chain[-1][0] == f"/staff/customers/{customer.pk}/"
    assert metering.current_period(server).extra_bytes == 5 * GIB
    assert "Added 5 GiB of transfer to metered" in response.content.decode()

    client.post(url, {"gib": 0})
    client.post(url, {"gib": "lots", "next": "https://evil.example/"})
    assert metering.current_period(server).extra_bytes == 5 * GIB


def test_the_customer_page_shows_each_servers_period_and_the_total(client, customer, staff, catalog):
    metered = make_metered_server(customer, catalog, transfer_gib=100)
    Server.objects.filter(pk=metered.pk).update(bandwidth_error="The port speed could not be applied: no tc")
    period = metering.current_period(metered)
    TransferPeriod.objects.filter(pk=period.pk).update(in_bytes=GIB, out_bytes=2 * GIB, throttled=True)
    unlimited = factories.make_server(customer, catalog, name="free")  # the catalog plan: unlimited
    assert unlimited.plan.transfer_gib is None

    client.force_login(staff)
    html = client.get(f"/staff/customers/{customer.pk}/").content.decode()
    assert "Total this period" in html and "3.00 GiB" in html and "in 1.00 · out 2.00 GiB" in html
    assert "Throttled" in html and "The port speed could not be applied: no tc" in html
    assert f'action="/staff/servers/{metered.pk}/traffic-block/"' in html
    assert f'action="/staff/servers/{unlimited.pk}/traffic-block/"' not in html
    assert "3.00</strong> / <span" in html and "Unlimited" in html


def test_the_host_charts_render_for_staff_only(client, customer, staff, server, catalog):
    recent_samples(server)
    host = catalog["host"]
    client.force_login(staff)
    page = client.get(f"/staff/hosts/{host.pk}/").content.decode()
    assert "Usage of the servers on this host" in page and page.count('class="chart__svg"') == 3
    fragment = client.get(f"/staff/hosts/{host.pk}/usage/?window=30d")
    assert fragment.status_code == 200 and 'aria-current="true">30 days<' in fragment.content.decode()

    client.force_login(customer)
    assert client.get(f"/staff/hosts/{host.pk}/usage/").status_code == 403


def test_a_server_that_ran_part_of_an_hour_shows_how_busy_it_was_while_it_ran(server):
    for minute in (0, 5, 10):
        sample(server, at(8, minute), vcpus=2, cpu_ns=300 * 10**9)  # one of two vCPUs busy, for 15 minutes
    assert value_at(graphs.series(server, "cpu", "7d", NOW)["CPU"], at(8)) == 50.0


def test_the_host_fragment_queries_stay_constant_with_many_servers(
    client, staff, customer, catalog, django_assert_max_num_queries
):
    host = catalog["host"]
    client.force_login(staff)
    client.get(f"/staff/hosts/{host.pk}/usage/")
    for number in range(8):
        recent_samples(factories.make_server(customer, catalog, name=f"s{number}", vcpus=2), count=30)
    # Session, staff user, the device the staff member's second factor was verified with, host, the host's
    # server ids (so the samples are read through their index, not by a scan of the whole table), samples.
    with django_assert_max_num_queries(6):
        response = client.get(f"/staff/hosts/{host.pk}/usage/?window=24h")
    assert response.status_code == 200 and "No data yet" not in response.content.decode()
