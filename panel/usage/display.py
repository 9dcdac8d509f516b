"""What the usage pages and partials show: CPU, network and disk charts of a server or a host (SVG drawn by
panel.usage.graphs), and the transfer of the current period (numbers from panel.usage.metering). Views and
the usage template tags both use it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.utils.translation import get_language, ngettext
from django.utils.translation import gettext as _

from billing.models import TransferDirection
from hypervisor.models import Host
from panel.models import Server, TransferPeriod
from panel.usage import graphs, metering

GIB = metering.GIB


WARN_PERCENT = 80  # the first notification level (panel.usage.metering.NOTIFY_AT)


CHARTS = (("cpu", "percent"), ("network", "bps"), ("disk", "Bps"))
# Drawn charts are kept this long; the key holds everything a chart is drawn from, so a kept chart is never
# stale: the timeout only lets unused ones go.
SVG_CACHE_SECONDS = 3600


def _svg_key(points_by_series: dict[str, list[graphs.Point]], unit: str, title: str) -> str:
    """The cache key of a chart: a digest of what it shows (every bucket's start and value), its unit and
    title, and the language and time zone its labels are written in."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(repr((unit, title, get_language(), timezone.get_current_timezone_name())).encode())
    for label, points in points_by_series.items():
        first = points[0][0].timestamp() if points else None
        step = (points[1][0] - points[0][0]).total_seconds() if len(points) > 1 else None
        digest.update(repr((label, first, step, len(points), [value for _at, value in points])).encode())
    return f"usage-svg:1:{digest.hexdigest()}"


def _charts(servers, window: graphs.Window, notes: dict[str, str], now: datetime | None = None) -> list[dict]:
    """The three charts from one query. Drawing is the costly part, so a drawn chart is kept in the cache
    under a digest of its data: the same numbers in the same language and time zone are drawn once."""
    data = graphs.all_series(servers, window, now)  # one query for all three charts
    titles = {"cpu": _("CPU"), "network": _("Network"), "disk": _("Disk")}
    keys = {metric: _svg_key(data[metric], unit, titles[metric]) for metric, unit in CHARTS}
    drawn = cache.get_many(list(keys.values()))
    missing = {}
    for metric, unit in CHARTS:
        if keys[metric] not in drawn:
            svg = graphs.svg_line_chart(data[metric], unit, title=titles[metric])
            drawn[keys[metric]] = missing[keys[metric]] = svg
    if missing:
        cache.set_many(missing, SVG_CACHE_SECONDS)
    return [
        {
            "key": metric,
            "title": titles[metric],
            "note": notes[metric],
            # lxml built the markup and escaped every text and attribute in it.
            "svg": mark_safe(drawn[keys[metric]]),
        }
        for metric, _unit in CHARTS
    ]


def server_charts(server: Server, window_key: str | None, now: datetime | None = None) -> dict:
    window = graphs.get_window(window_key)
    notes = {
        "cpu": ngettext("Percent of its %(count)s vCPU", "Percent of its %(count)s vCPUs", server.vcpus)
        % {"count": server.vcpus},
        "network": _("Bits per second, in and out of the server"),
        "disk": _("Bytes per second, read and written"),
    }
    return {
        "window": window,
        "windows": list(graphs.WINDOWS.values()),
        "charts": _charts(server, window, notes, now),
        "fragment_url": reverse("server-usage", args=[server.pk]),
        "page_url": reverse("server-detail", args=[server.pk]),
    }


def host_charts(host: Host, window_key: str | None, now: datetime | None = None) -> dict:
    window = graphs.get_window(window_key)
    notes = {
        "cpu": _("Percent of the vCPUs of the servers that ran"),
        "network": _("Bits per second, all servers together"),
        "disk": _("Bytes per second, all servers together"),
    }
    return {
        "window": window,
        "windows": list(graphs.WINDOWS.values()),
        # The ids, not a subquery, so the samples are read through their (server, resolution, start) index.
        "charts": _charts(
            list(Server.objects.filter(host=host).order_by().values_list("pk", flat=True)), window, notes, now
        ),
        "fragment_url": reverse("host-usage", args=[host.pk]),
        "page_url": reverse("host-detail", args=[host.pk]),
    }


@dataclass
class Transfer:
    """A server's transfer in its current period, with what the page says about it."""

    server: Server
    start: datetime
    end: datetime
    in_bytes: int
    out_bytes: int
    counted_bytes: int
    allowance_bytes: int | None
    direction: str
    throttled: bool
    suspended: bool = False

    @property
    def plan(self):
        return self.server.plan

    @property
    def unlimited(self) -> bool:
        return self.allowance_bytes is None

    @property
    def total_bytes(self) -> int:
        return self.in_bytes + self.out_bytes

    @property
    def extra_bytes(self) -> int:
        """Traffic blocks staff added for this period."""
        if self.allowance_bytes is None:
            return 0
        return self.allowance_bytes - self.plan.transfer_gib * GIB

    @property
    def percent(self) -> int | None:
        """Whole percent used, rounded down (as metering.enforce counts it); None when unlimited."""
        if self.allowance_bytes is None:
            return None
        if not self.allowance_bytes:
            return 100
        return self.counted_bytes * 100 // self.allowance_bytes

    @property
    def bar_percent(self) -> int:
        return min(self.percent or 0, 100)

    @property
    def level(self) -> str:
        """ "ok", "warning" (from 80 percent) or "over" (the allowance is used up)."""
        if self.percent is None or self.percent < WARN_PERCENT:
            return "ok"
        return "over" if self.percent >= 100 else "warning"

    @property
    def direction_label(self) -> str:
        return TransferDirection(self.direction).label

    @property
    def policy(self) -> str:
        return self.plan.over_limit_policy


def server_transfer(server: Server, now: datetime | None = None) -> Transfer:
    """The server page's numbers, from metering.usage_report."""
    report = metering.usage_report(server, now)
    transfer = report["transfer"]
    return Transfer(
        server=server,
        start=report["period_start"],
        end=report["period_end"],
        in_bytes=transfer["in_bytes"],
        out_bytes=transfer["out_bytes"],
        counted_bytes=transfer["counted_bytes"],
        allowance_bytes=transfer["allowance_bytes"],
        direction=transfer["direction"],
        throttled=report["throttled"],
        suspended=server.status == Server.Status.SUSPENDED,
    )


@dataclass
class CustomerTransfer:
    rows: list[Transfer]
    in_bytes: int
    out_bytes: int
    counted_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.in_bytes + self.out_bytes


def customer_transfer(servers, now: datetime | None = None) -> CustomerTransfer:
    """Each server's current period, read with one query (a period not started yet counts zero; nothing is
    written), and the customer's totals."""
    now = now or timezone.now()
    servers = list(servers)
    bounds = {server.pk: metering.period_bounds(server.created_at, now) for server in servers}
    found = {}
    if servers:
        periods = TransferPeriod.objects.filter(
            server__in=list(bounds), start__in={start for start, _end in bounds.values()}
        )
        found = {(period.server_id, period.start): period for period in periods}
    rows = []
    for server in servers:
        start, end = bounds[server.pk]
        period = found.get((server.pk, start)) or TransferPeriod(server=server, start=start, end=end)
        rows.append(
            Transfer(
                server=server,
                start=period.start,
                end=period.end,
                in_bytes=period.in_bytes,
                out_bytes=period.out_bytes,
                counted_bytes=metering.counted_bytes(period, server.plan.transfer_direction),
                allowance_bytes=metering.allowance_bytes(server, period),
                direction=server.plan.transfer_direction,
                throttled=period.throttled,
                suspended=period.suspended,
            )
        )
    return CustomerTransfer(
        rows=rows,
        in_bytes=sum(row.in_bytes for row in rows),
        out_bytes=sum(row.out_bytes for row in rows),
        counted_bytes=sum(row.counted_bytes for row in rows),
    )
