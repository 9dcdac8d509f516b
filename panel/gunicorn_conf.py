"""The web server's configuration, sized from the machine's CPU count: `gunicorn -c python:panel.gunicorn_conf
panel.wsgi` (the Dockerfile, docker-compose.yml, `make run` and `make bench` all start it so).

The panel's requests are short and mostly CPU (Python building statements and pages) with a few waits on
Postgres, so one process per core plus one, each with two threads to cover those waits, keeps the cores busy
without many threads contending for one interpreter lock. WEB_WORKERS, WEB_THREADS and BIND override.
"""

from __future__ import annotations

import os


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def sized_workers(cpus: int | None = None) -> int:
    """Web processes for this machine: one per CPU, plus one."""
    return (cpus or os.cpu_count() or 1) + 1


bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = _int("WEB_WORKERS", sized_workers())
threads = _int("WEB_THREADS", 2)
worker_class = "gthread"
keepalive = 5  # seconds a client's keep-alive connection may idle (API clients reuse connections)
accesslog = os.environ.get("ACCESS_LOG") or None
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
