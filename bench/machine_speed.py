"""How fast this machine is while the benchmark runs: the CPU time of a fixed pure-Python workload and of
Postgres answering a fixed number of one-row reads, taken at the run's start and at its end. The machine the
bench runs on is shared and its speed changes by the hour (one day the same code's CPU per order measured
23.6 ms at one hour and 30.9 ms at the next): with these two numbers beside them, two runs' figures can be
compared, or one run's change of speed between its start and end seen, instead of guessed."""

from __future__ import annotations

import statistics
import time

from .common import process_cpu_seconds

PYTHON_ROUNDS = 5
READS = 5_000  # /proc counts CPU in 10 ms ticks: about 500 ms of a backend's CPU, to within 2%


class _Server:
    __slots__ = ("key", "name", "specs")

    def __init__(self, key: int, name: str, specs: dict):
        self.key, self.name, self.specs = key, name, specs


def _python_workload() -> int:
    """Python of the kind a request runs: small objects, dictionaries, strings, attribute access, calls."""
    total = 0
    for n in range(20_000):
        server = _Server(n, f"server-{n}.example.com", {"vcpus": n % 8 + 1, "memory_mib": 512 * (n % 4 + 1)})
        row = {"id": server.key, "name": server.name.upper(), **server.specs}
        total += len(row["name"]) + row["vcpus"] + len(sorted(row))
    return total


def python_ms() -> float:
    """CPU ms of the fixed Python workload: the median of PYTHON_ROUNDS rounds."""
    rounds = []
    for _ in range(PYTHON_ROUNDS):
        start = time.process_time()
        _python_workload()
        rounds.append((time.process_time() - start) * 1000)
    return statistics.median(rounds)


def postgres_ms() -> float:
    """CPU ms of this process's Postgres backend answering READS one-row reads by primary key, one round trip
    each (the server runs on this machine, as the bench's CPU figures require anyway)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
        before = process_cpu_seconds(pid)
        for _ in range(READS):
            cursor.execute("SELECT relname FROM pg_class WHERE oid = %s", [1259])
            cursor.fetchone()
        return (process_cpu_seconds(pid) - before) * 1000


def measure() -> dict[str, float]:
    return {"python_ms": round(python_ms(), 1), "postgres_ms": round(postgres_ms(), 1)}
