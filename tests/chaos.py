"""What the chaos tests do to the services the workers depend on: run the reaper as beat would, and restart
Redis, PostgreSQL and libvirtd under the workers' feet. Plain functions; the tests are in
tests/panel/test_a_killed_worker_leaves_a_consistent_state.py and
tests/panel/test_operations_survive_restarts_of_redis_postgres_and_libvirtd.py.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import libvirt
from django.db import connection, connections

from panel import tasks

URI = "qemu:///system"


@contextmanager
def reaper(every: float = 1.0) -> Iterator[None]:
    """Run the reaper task's body every `every` seconds in a thread, as beat would on its schedule."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            try:
                tasks.reap_stuck_operations()
            except Exception:  # Postgres restarting: the next run reconnects
                connection.close()
        connection.close()

    thread = threading.Thread(target=loop, name="test-reaper", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A private redis-server on a free loopback port that keeps nothing on disk (as the broker in the test
    environment): a restart loses every queued message."""

    def __init__(self, directory: Path):
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
             "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: _answers(self.port), 15, "redis-server to start")

    def kill(self) -> None:
        """SIGKILL: the queues, unacknowledged deliveries and bindings are gone with it."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def postgres_cluster(port: int = 5432) -> tuple[str, str]:
    """(version, name) of the Debian PostgreSQL cluster listening on `port` (pg_lsclusters)."""
    listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True)
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == str(port):
            return fields[0], fields[1]
    raise AssertionError(f"no PostgreSQL cluster on port {port}: {listing.stdout}")


def restart_postgres(port: int = 5432) -> float:
    """Restart the PostgreSQL server (fast shutdown: every connection is cut, as in a real restart); return
    how long it refused connections. This process's own connections are dropped too."""
    version, name = postgres_cluster(port)
    began = time.monotonic()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart", "-m", "fast"],
        check=True, capture_output=True,
    )  # fmt: skip
    wait_for(
        lambda: subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode == 0,
        60,
        "PostgreSQL to accept connections again",
    )
    for alias in connections:
        connections[alias].close()
    return time.monotonic() - began


def libvirtd_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def restart_libvirtd() -> float:
    """Stop libvirtd (SIGTERM; running guests live on, as with `systemctl restart libvirtd`) and start it
    again as scripts/test-services.sh does; return how long it was away."""
    began = time.monotonic()
    pids = libvirtd_pids()
    assert pids, "libvirtd is not running"
    subprocess.run(["kill", "-TERM", *map(str, pids)], check=True)
    wait_for(lambda: not libvirtd_pids(), 60, "libvirtd to stop")
    subprocess.run(["libvirtd", "-d"], check=True)
    wait_for(_libvirtd_answers, 60, "libvirtd to answer again")
    return time.monotonic() - began


def _libvirtd_answers() -> bool:
    try:
        libvirt.open(URI).close()
        return True
    except libvirt.libvirtError:
        return False
