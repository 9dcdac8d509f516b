"""The console proxy as a real process for tests (`manage.py console_proxy` on a free loopback port),
talking to the test's database; `running_proxy(settings)` points CONSOLE_URL at it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.real_workers import database_url
from tests.sshd import free_port

PROJECT = Path(__file__).resolve().parents[1]


@contextmanager
def running_proxy(settings, directory: Path) -> Iterator[str]:
    """Start the proxy (needs a transactional test database: it reads what the test commits), set
    settings.CONSOLE_URL to it and give its ws:// base URL; it is stopped at the end."""
    port = free_port()
    log = directory / "console-proxy.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.CELERY_BROKER_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "DEBUG": "",
        "PANEL_DATA_DIR": str(settings.DATA_DIR),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(PROJECT / "manage.py"), "console_proxy", "--bind", f"127.0.0.1:{port}"],
            cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "listening" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the console proxy did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        url = f"ws://127.0.0.1:{port}/console"
        settings.CONSOLE_URL = url
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(log.read_text(errors="replace")[-3000:])  # shown when the test fails
