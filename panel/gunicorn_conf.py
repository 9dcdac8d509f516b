"""The web server's configuration, sized from the machine's CPU count: `gunicorn -c python:panel.gunicorn_conf
panel.wsgi` (the Dockerfile, docker-compose.yml, `make run` and `make bench` all start it so).

The panel's requests are short and mostly CPU (Python building statements and pages) with a few waits on
Postgres, so one process per core, each with two threads to cover those waits, keeps the cores busy without
many threads contending for one interpreter lock. A process more than the cores (as gunicorn's documentation
suggests for sync workers) cost CPU on a machine whose cores the web shares with Postgres and the workers:
on 2 cores, 1,000 API orders from 16 clients (`make bench`'s scenario 1, five alternating pairs of runs,
2026-12-07) took 8.3 ms of web CPU an order with 2 processes against 9.0 ms with 3, lower in every pair, at
the same throughput (78-87 servers running a second either way). WEB_WORKERS, WEB_THREADS and BIND override.
"""

from __future__ import annotations

import os


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def sized_workers(cpus: int | None = None) -> int:
    """Web processes for this machine: one per CPU."""
    return cpus or os.cpu_count() or 1


bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = _int("WEB_WORKERS", sized_workers())
threads = _int("WEB_THREADS", 2)
worker_class = "gthread"
keepalive = 5  # seconds a client's keep-alive connection may idle (API clients reuse connections)
accesslog = os.environ.get("ACCESS_LOG") or None
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
