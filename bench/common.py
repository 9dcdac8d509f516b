"""Shared pieces of the benchmark: settings from the environment, statistics, the results table."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def unusable_password() -> str:
    """A password hash that matches no password (the benchmark's users log in with tokens or force_login)."""
    from django.contrib.auth.hashers import make_password

    return make_password(None)


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks; None when empty."""
    data = sorted(values)
    if not data:
        return None
    if len(data) == 1:
        return data[0]
    rank = (len(data) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return data[low] + (data[high] - data[low]) * (rank - low)


def summary(values: list[float]) -> dict:
    """count, p50, p95, min, max, mean of a list of numbers (seconds or milliseconds: the caller's unit)."""
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "mean": sum(values) / len(values) if values else None,
    }


@contextmanager
def stopwatch():
    """with stopwatch() as elapsed: ...; elapsed() gives the seconds so far (frozen at the block's end)."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (utime + stime) of a process of this machine (/proc): a Postgres backend, a worker."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


_STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[bench +{time.monotonic() - _STARTED:6.1f} s] {message}", flush=True)


# The results table.


@dataclass
class Row:
    metric: str
    value: str = ""
    p50: str = ""
    p95: str = ""
    target: str = ""
    verdict: str = ""  # "ok", "MISS" or ""


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, metric: str, value: str = "", p50: str = "", p95: str = "", target: str = "", met=None):
        verdict = "" if met is None else ("ok" if met else "MISS")
        self.rows.append(Row(metric, value, p50, p95, target, verdict))

    def note(self, text: str) -> None:
        self.notes.append(text)


def fmt_s(seconds: float | None, digits: int = 2) -> str:
    return "—" if seconds is None else f"{seconds:.{digits}f} s"


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "—"
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def fmt_rate(per_second: float | None, unit: str = "/s") -> str:
    return "—" if per_second is None else f"{per_second:.1f}{unit}"


def render_table(sections: list[Section]) -> str:
    headers = ("metric", "value", "p50", "p95", "target", "")
    widths = [len(h) for h in headers]
    for section in sections:
        for row in section.rows:
            cells = (row.metric, row.value, row.p50, row.p95, row.target, row.verdict)
            widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]
    widths[0] = max(widths[0], 2 + max((len(s.title) for s in sections), default=0) - sum(widths[1:]) // 2)

    def line(cells) -> str:
        parts = [cells[0].ljust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(cells[1:-1], widths[1:-1], strict=True)]
        parts.append(cells[-1].ljust(widths[-1]))
        return "  ".join(parts).rstrip()

    total = sum(widths) + 2 * (len(widths) - 1)
    out = [line(headers), "-" * total]
    for section in sections:
        out.append(section.title)
        for row in section.rows:
            out.append(line(("  " + row.metric, row.value, row.p50, row.p95, row.target, row.verdict)))
        for note in section.notes:
            out.append(f"    · {note}")
        out.append("")
    return "\n".join(out)


def celery_worker(hostname: str, concurrency: int, *options: str) -> list[str]:
    """The command of a prefork Celery worker of the panel (as docker-compose starts one), quiet."""
    return [
        sys.executable,
        *("-m", "celery", "-A", "panel", "worker", "--concurrency", str(concurrency)),
        *("--hostname", hostname, "--loglevel", "WARNING", *options),
    ]


def stop_processes(processes: list[subprocess.Popen]) -> None:
    """Ask each process to stop, wait up to 30 s each, kill what is left; close their log files."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.log.close()


def purge_queues(*queues: str) -> None:
    """Empty these broker queues (messages no worker holds)."""
    from panel.celery import app

    with app.connection_for_write() as connection:
        for queue in queues:
            connection.default_channel.queue_purge(queue)
