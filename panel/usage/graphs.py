"""Usage charts: rates computed from UsageSample rows, drawn as SVG by the panel itself.

A chart is a series of buckets of equal length (5 minutes for a day, an hour for a week, 3 hours for a
month: at most 288 points). Each bucket sums the samples that fall into it, whatever their resolution
(5-minute samples not rolled up yet are added into their hour); a coarser sample that spans several
buckets is spread over them in proportion. A bucket without any sample is a gap (None), never a zero.

The SVG is built as an element tree (lxml), so every text and attribute is escaped by the serialiser.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from django.db.models import BigIntegerField, F, QuerySet, Sum
from django.utils import dateformat, formats, timezone
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from lxml import etree

from panel.models import Server, UsageSample

SVG_NS = "http://www.w3.org/2000/svg"
FIELDS = ("rx_bytes", "tx_bytes", "cpu_ns", "rd_bytes", "wr_bytes")
RESOLUTIONS = (UsageSample.FIVE_MINUTES, UsageSample.HOUR, UsageSample.DAY)


@dataclass(frozen=True)
class Window:
    key: str
    span: timedelta
    step: int  # seconds per point
    label: str
    step_label: str

    @property
    def points(self) -> int:
        return int(self.span.total_seconds()) // self.step


WINDOWS = {
    window.key: window
    for window in (
        Window(
            "24h", timedelta(hours=24), 300, gettext_lazy("24 hours"), gettext_lazy("Averages over 5 minutes")
        ),
        Window("7d", timedelta(days=7), 3600, gettext_lazy("7 days"), gettext_lazy("Averages over 1 hour")),
        Window(
            "30d",
            timedelta(days=30),
            3 * 3600,
            gettext_lazy("30 days"),
            gettext_lazy("Averages over 3 hours"),
        ),
    )
}
DEFAULT_WINDOW = "24h"


def get_window(key: str | None) -> Window:
    """The window a request asked for; anything unknown is the default (24 hours)."""
    return WINDOWS.get(key or "", WINDOWS[DEFAULT_WINDOW])


Point = tuple[datetime, float | None]


# Reading samples into buckets.


def _server_filter(servers) -> dict:
    if isinstance(servers, Server):
        return {"server_id": servers.pk}
    if isinstance(servers, QuerySet):
        return {"server__in": servers.values("pk")}  # a subquery: still one query
    return {"server_id__in": [getattr(server, "pk", server) for server in servers]}


def _collect(servers, window: Window, now: datetime) -> tuple[list[datetime], list[dict | None], int]:
    """One query: the buckets of the window ending with the one that holds `now`. The database sums the
    servers' samples per (resolution, start), so the rows stay few however many servers a host has.
    Returns the bucket starts, the buckets' sums (None where no sample fell) and the length in seconds of
    the last bucket so far."""
    step, count = window.step, window.points
    now_ts = int(now.timestamp())
    last = now_ts // step * step
    first = last - (count - 1) * step
    end = last + step
    rows = (
        UsageSample.objects.filter(
            **_server_filter(servers),
            resolution__in=RESOLUTIONS,
            start__gt=datetime.fromtimestamp(first - max(RESOLUTIONS), tz=UTC),
            start__lt=datetime.fromtimestamp(end, tz=UTC),
        )
        .order_by()
        .values_list("resolution", "start")
        .annotate(
            **{f"total_{field}": Sum(field) for field in FIELDS},
            # vCPU-seconds the samples cover: what 100 percent CPU would have used
            vcpu_seconds=Sum(F("vcpus") * F("resolution"), output_field=BigIntegerField()),
        )
    )
    buckets: list[dict | None] = [None] * count
    for resolution, start, *values in rows:
        begin = int(start.timestamp())
        if resolution <= step:  # the whole sample in one bucket (they share their alignment)
            shares = [((begin - first) // step, 1)]
        else:  # a coarser sample: spread over the buckets it covers, in proportion
            low, high = (begin - first) // step, (begin + resolution - first) // step
            shares = []
            for index in range(max(0, low), min(count, high + 1)):
                lo, hi = first + index * step, first + (index + 1) * step
                overlap = min(hi, begin + resolution) - max(lo, begin)
                if overlap > 0:
                    shares.append((index, overlap / resolution))
        for index, fraction in shares:
            if not 0 <= index < count:
                continue
            bucket = buckets[index]
            if bucket is None:
                bucket = buckets[index] = dict.fromkeys((*FIELDS, "vcpu_seconds"), 0)
            for field, value in zip((*FIELDS, "vcpu_seconds"), values, strict=True):
                bucket[field] += int(value or 0) * fraction
    starts = [datetime.fromtimestamp(first + index * step, tz=UTC) for index in range(count)]
    # The bucket now runs in has lasted only so long (but holds at least one 5-minute sample's worth).
    last_seconds = min(step, max(now_ts - last, UsageSample.FIVE_MINUTES))
    return starts, buckets, last_seconds


def _rates(bucket: dict | None, seconds: int) -> dict[str, float | None]:
    """A bucket's sums as rates. CPU is the share of the vCPU time the samples cover (cpu_ns / (seconds ×
    10⁹ × vCPUs)), so a server that ran for part of an hour shows how busy it was while it ran."""
    if bucket is None:
        return dict.fromkeys(("cpu", "rx", "tx", "rd", "wr"))
    capacity = bucket["vcpu_seconds"] * 10**9
    cpu = bucket["cpu_ns"] * 100 / capacity if capacity else 0.0
    return {
        "cpu": min(max(cpu, 0.0), 100.0),  # percent of the vCPUs
        "rx": bucket["rx_bytes"] * 8 / seconds,  # bits per second
        "tx": bucket["tx_bytes"] * 8 / seconds,
        "rd": bucket["rd_bytes"] / seconds,  # bytes per second
        "wr": bucket["wr_bytes"] / seconds,
    }


METRICS = {
    # metric: (unit, ((label, rate key), ...))
    "cpu": ("percent", ((gettext_lazy("CPU"), "cpu"),)),
    "network": ("bps", ((gettext_lazy("Inbound"), "rx"), (gettext_lazy("Outbound"), "tx"))),
    "disk": ("Bps", ((gettext_lazy("Read"), "rd"), (gettext_lazy("Write"), "wr"))),
}


def all_series(
    servers, window: Window | str, now: datetime | None = None
) -> dict[str, dict[str, list[Point]]]:
    """Every metric's series from one query: {metric: {label: [(bucket start, value or None), ...]}}.
    `servers` is a Server, a queryset of servers (a host's: their sum) or server ids."""
    window = get_window(window) if isinstance(window, str) else window
    now = now or timezone.now()
    starts, buckets, last_seconds = _collect(servers, window, now)
    rates = [
        _rates(bucket, last_seconds if index == len(buckets) - 1 else window.step)
        for index, bucket in enumerate(buckets)
    ]
    return {
        metric: {
            str(label): [(start, rate[key]) for start, rate in zip(starts, rates, strict=True)]
            for label, key in lines
        }
        for metric, (_unit, lines) in METRICS.items()
    }


def series(servers, metric: str, window: Window | str, now: datetime | None = None) -> dict[str, list[Point]]:
    """One metric ("cpu", "network" or "disk") of the servers over the window; one query."""
    return all_series(servers, window, now)[metric]


# Units and numbers.

UNITS = {
    # unit: (base, symbols from the smallest)
    "percent": (None, (gettext_lazy("%"),)),
    "bps": (
        1000,
        (
            gettext_lazy("b/s"),
            gettext_lazy("Kb/s"),
            gettext_lazy("Mb/s"),
            gettext_lazy("Gb/s"),
            gettext_lazy("Tb/s"),
        ),
    ),
    "Bps": (
        1024,
        (
            gettext_lazy("B/s"),
            gettext_lazy("KiB/s"),
            gettext_lazy("MiB/s"),
            gettext_lazy("GiB/s"),
            gettext_lazy("TiB/s"),
        ),
    ),
}
SMALLEST_TOP = {"percent": 1, "bps": 1000, "Bps": 1024}


class Formatter:
    """Numbers with a unit in the current language (12.3 Mb/s, 12,3 Mb/s). The unit symbols and the
    language's separators are looked up once: a chart formats hundreds of readings."""

    def __init__(self, unit: str):
        base, symbols = UNITS[unit]
        self.base, self.symbols = base, [str(symbol) for symbol in symbols]
        self.decimal_separator = str(formats.get_format("DECIMAL_SEPARATOR"))
        self.thousand_separator = str(formats.get_format("THOUSAND_SEPARATOR"))
        self.grouping = formats.get_format("NUMBER_GROUPING")
        swap = {ord(","): self.thousand_separator, ord("."): self.decimal_separator}
        self.swap = None if swap == {ord(","): ",", ord("."): "."} else swap  # English needs none

    def prefix(self, value: float) -> tuple[int, str]:
        """The divisor and symbol that suit a value (1500000 b/s: Mb/s)."""
        if self.base is None:
            return 1, self.symbols[0]
        power = 0
        while power < len(self.symbols) - 1 and abs(value) >= self.base ** (power + 1):
            power += 1
        return self.base**power, self.symbols[power]

    def number(self, value: float | Decimal, decimals: int) -> str:
        """Grouped by thousands, as Django's number_format gives it (Python formats the digits and the
        language's separators are swapped in; other groupings go through Django)."""
        if self.grouping != 3:
            return formats.number_format(value, decimal_pos=decimals, use_l10n=True, force_grouping=True)
        text = f"{value:,.{decimals}f}"
        return text.translate(self.swap) if self.swap else text

    @staticmethod
    def with_unit(number: str, symbol: str) -> str:
        return number + symbol if symbol == "%" else f"{number} {symbol}"

    def format(self, value: float) -> str:
        """A reading with three significant digits and a human unit: 12.3 Mb/s, 512 KiB/s, 4.25%."""
        divisor, symbol = self.prefix(value)
        scaled = value / divisor
        decimals = 0 if scaled == 0 or abs(scaled) >= 100 else 1 if abs(scaled) >= 10 else 2
        return self.with_unit(self.number(round(scaled, decimals), decimals), symbol)


def _nice_step(raw: float) -> Decimal:
    """The smallest of 1, 2, 2.5 and 5 times a power of ten that is at least `raw`."""
    exponent = math.floor(math.log10(raw))
    for mantissa in ("1", "2", "2.5", "5", "10"):
        step = Decimal(mantissa).scaleb(exponent)
        if step >= Decimal(repr(raw)):
            return step
    return Decimal(10).scaleb(exponent)  # pragma: no cover


def y_scale(peak: float, unit: str) -> tuple[float, list[tuple[float, str]]]:
    """The axis top and its 4–6 ticks with labels, for values up to `peak`."""
    peak = max(peak, SMALLEST_TOP[unit])
    if unit == "percent":
        peak = min(peak, 100)
    units = Formatter(unit)
    divisor, symbol = units.prefix(peak)
    while True:
        step = _nice_step(peak / divisor / 4)
        intervals = math.ceil(Decimal(repr(peak / divisor)) / step)
        if units.base is None or step * intervals < 1000 or symbol == units.symbols[-1]:
            break
        divisor, symbol = units.prefix(divisor * units.base)  # 1,000 KiB/s reads better as 1 MiB/s
    decimals = max(0, -step.normalize().as_tuple().exponent)
    ticks = [
        (
            float(step * index) * divisor,
            units.with_unit(units.number(step * index, decimals if index else 0), symbol),
        )
        for index in range(intervals + 1)
    ]
    return ticks[-1][0], ticks


HOUR_STEPS = (1, 2, 3, 4, 6, 12, 24)
DAY_STEPS = (1, 2, 3, 5, 7, 10, 14)


def _x_ticks(start: datetime, end: datetime, most: int = 8) -> list[tuple[datetime, str]]:
    """At most `most` ticks at round local times: every few hours over a day or two (midnight labelled
    with its date), every day or few days over longer spans. Labels follow the current language and time
    zone."""
    zone = timezone.get_current_timezone()
    span = end - start
    ticks = []
    if span <= timedelta(days=2):
        hours = span.total_seconds() / 3600
        every = next((step for step in HOUR_STEPS if hours / step <= most), HOUR_STEPS[-1])
        moment = timezone.localtime(start, zone).replace(minute=0, second=0, microsecond=0)
        while moment <= end:
            local = timezone.localtime(moment, zone)
            if moment >= start and local.minute == 0 and local.hour % every == 0:
                label = "j M" if local.hour == 0 else formats.get_format("TIME_FORMAT")
                ticks.append((moment, dateformat.format(local, label)))
            moment += timedelta(hours=1)
        return ticks
    days = span.total_seconds() / 86400
    every = next((step for step in DAY_STEPS if days / step <= most), DAY_STEPS[-1])
    label = "D j" if every == 1 and days <= 10 else "j M"
    day = timezone.localtime(start, zone).date()
    while True:
        midnight = timezone.make_aware(datetime.combine(day, time()), zone)
        if midnight > end:
            return ticks
        if midnight >= start and day.toordinal() % every == 0:
            ticks.append((midnight, dateformat.format(midnight, label)))
        day += timedelta(days=1)


# Drawing.

PALETTE = ("#0b63f6", "#ea580c", "#16a34a", "#9333ea")
FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif'


def _el(parent, tag: str, text: str | None = None, **attrs):
    element = etree.SubElement(parent, f"{{{SVG_NS}}}{tag}")
    for name, value in attrs.items():
        element.set(name.rstrip("_").replace("_", "-"), str(value))
    if text is not None:
        element.text = text
    return element


def _fmt(number: float) -> str:
    """One decimal, without a trailing ".0" (12.5, 12)."""
    text = f"{number:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _summary(points_by_series: dict[str, list[Point]], units: Formatter) -> str:
    """Peak and latest value of each series, for screen readers ("Inbound: peak 12.3 Mb/s, latest …")."""
    parts = []
    for label, points in points_by_series.items():
        values = [value for _at, value in points if value is not None and math.isfinite(value)]
        if values:
            numbers = {"peak": units.format(max(values)), "latest": units.format(values[-1])}
            text = _("peak %(peak)s, latest %(latest)s") % numbers
            parts.append(f"{label}: {text}" if len(points_by_series) > 1 else text)
    return "; ".join(parts)


@functools.lru_cache(maxsize=4096)
def _bucket_when(at: datetime, language: str | None, zone: str) -> str:
    """A bucket's time as its hover title shows it ("Thu 26 Nov, 14:05"; "14.05" in Indonesian), in the
    active language and time zone, which the arguments name so that each pair has its own entries: the
    charts of a page share their buckets, and a page polled again shows mostly the same ones."""
    local = timezone.localtime(at)
    day = dateformat.format(local, "D j M")
    return f"{day}, {dateformat.time_format(local, formats.get_format('TIME_FORMAT'))}"


def svg_line_chart(
    points_by_series: dict[str, list[Point]],
    unit: str,
    width: int = 360,
    height: int = 190,
    title: str = "",
) -> str:
    """An SVG line chart: one line per series, broken where a value is None, with y ticks in human units,
    x ticks at local times, a legend, a <title> and an aria-label. No points at all: "No data yet"."""
    title = str(title)
    left, right, top, bottom = 58, 12, 30, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    times = sorted({at for points in points_by_series.values() for at, _value in points})
    values = [v for points in points_by_series.values() for _at, v in points if v is not None]
    values = [v for v in values if math.isfinite(v)]
    units = Formatter(unit)
    summary = _summary(points_by_series, units) if values else _("No data yet")

    svg = etree.Element(
        f"{{{SVG_NS}}}svg",
        nsmap={None: SVG_NS},
        viewBox=f"0 0 {width} {height}",
        role="img",
        preserveAspectRatio="xMidYMid meet",
        **{"class": "chart__svg", "font-family": FONT, "font-size": "11"},
    )
    svg.set("aria-label", f"{title}: {summary}" if title else summary)
    _el(svg, "title", title or summary)
    _el(svg, "desc", summary)

    if not values:
        frame = {"x": left, "y": top, "width": plot_w, "height": plot_h}
        _el(svg, "rect", **frame, rx=6, fill="#f8fafc", stroke="#e2e8f0", stroke_dasharray="4 4")
        middle, center = top + plot_h / 2, _fmt(left + plot_w / 2)
        note = _("Measured every 5 minutes while a server runs.")
        _el(svg, "text", _("No data yet"), x=center, y=_fmt(middle - 4), text_anchor="middle", font_size="14",
            font_weight="600", fill="#475569")  # fmt: skip
        _el(svg, "text", note, x=center, y=_fmt(middle + 14), text_anchor="middle", fill="#64748b")
        return etree.tostring(svg, encoding="unicode")

    x0, x1 = times[0], times[-1]
    span = max((x1 - x0).total_seconds(), 1)
    step = (times[1] - times[0]).total_seconds() if len(times) > 1 else span

    def x_of(at: datetime) -> float:
        return left + (at - x0).total_seconds() / span * plot_w

    top_value, y_ticks = y_scale(max(values), unit)

    def y_of(value: float) -> float:
        return top + plot_h - min(max(value, 0), top_value) / top_value * plot_h

    # Grid, axes and ticks.
    grid = _el(svg, "g", **{"class": "chart__grid"})
    for value, label in y_ticks:
        y = _fmt(y_of(value))
        stroke = "#cbd5e1" if value == 0 else "#eef2f7"
        _el(grid, "line", x1=left, x2=left + plot_w, y1=y, y2=y, stroke=stroke)
        _el(grid, "text", label, x=left - 6, y=_fmt(y_of(value) + 3.5), text_anchor="end", fill="#64748b")
    for at, label in _x_ticks(x0, x1, most=max(2, int(plot_w // 60))):
        x = x_of(at)
        _el(grid, "line", x1=_fmt(x), x2=_fmt(x), y1=top, y2=top + plot_h + 4, stroke="#eef2f7")
        if x + len(label) * 3.2 <= width:  # a label that would stick out of the picture is left off
            _el(grid, "text", label, x=_fmt(x), y=height - 7, text_anchor="middle", fill="#64748b")

    # Lines (and a light area under each), broken at gaps; a lone point becomes a dot.
    base = _fmt(top + plot_h)
    for number, (label, points) in enumerate(points_by_series.items()):
        color = PALETTE[number % len(PALETTE)]
        group = _el(svg, "g", **{"class": "chart__series", "data-series": label})
        runs: list[list[tuple[float, float]]] = [[]]
        for at, value in points:
            if value is None or not math.isfinite(value):
                if runs[-1]:
                    runs.append([])
                continue
            runs[-1].append((x_of(at), y_of(value)))
        for run in (run for run in runs if run):
            if len(run) == 1:
                _el(group, "circle", cx=_fmt(run[0][0]), cy=_fmt(run[0][1]), r="2", fill=color)
                continue
            coords = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in run)
            area = f"{_fmt(run[0][0])},{base} {coords} {_fmt(run[-1][0])},{base}"
            _el(group, "polygon", points=area, fill=color, fill_opacity="0.08", stroke="none")
            _el(group, "polyline", points=coords, fill="none", stroke=color, stroke_width="1.5",
                stroke_linejoin="round", stroke_linecap="round")  # fmt: skip

    # Legend, above the plot.
    legend = _el(svg, "g", **{"class": "chart__legend"})
    x = left
    for number, label in enumerate(points_by_series):
        color = PALETTE[number % len(PALETTE)]
        _el(legend, "rect", x=x, y=11, width=12, height=3, rx=1.5, fill=color)
        _el(legend, "text", label, x=x + 16, y=16, fill="#334155", font_weight="600")
        x += 16 + len(label) * 6.6 + 14

    # Hover read-outs: a transparent column per bucket with data, titled with its time and values.
    hits = _el(svg, "g", fill="#0b63f6", fill_opacity="0", **{"class": "chart__hits"})
    column = max(plot_w * step / span, 1)
    lookup = {label: dict(points) for label, points in points_by_series.items()}
    language, zone = get_language(), timezone.get_current_timezone_name()
    rect_tag, title_tag, cell_y, cell_h = f"{{{SVG_NS}}}rect", f"{{{SVG_NS}}}title", str(top), str(plot_h)
    for at in times:
        readings = [(label, values_at.get(at)) for label, values_at in lookup.items()]
        text = ", ".join(f"{label} {units.format(value)}" for label, value in readings if value is not None)
        if not text:
            continue
        when = _bucket_when(at, language, zone)
        middle = x_of(at)
        start_x, end_x = max(left, middle - column / 2), min(left + plot_w, middle + column / 2)
        # The element calls of _el, spelled out: a chart has up to 288 of these.
        cell = etree.SubElement(
            hits, rect_tag, x=_fmt(start_x), y=cell_y, width=_fmt(end_x - start_x), height=cell_h
        )
        etree.SubElement(cell, title_tag).text = f"{when} — {text}"
    return etree.tostring(svg, encoding="unicode")
