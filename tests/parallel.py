"""`make test` runs the suite in several processes (pytest-xdist). pytest-django gives each process a test
database of its own (test_<name>_gw0, _gw1, ...); this gives each its own Redis database too (broker, cache,
rate limits), so that one process's Celery worker never takes another's tasks and a purge or a reset touches
only its own. Loaded as a plugin (`-p tests.parallel`), before Django reads its settings:

    REDIS_URL=redis://127.0.0.1:6379/15 -> gw0 uses db 15, gw1 db 14, gw2 db 13, ...

Tests that restart or remove something the others depend on (Postgres, libvirtd, the `default` pool) are
marked `alone`; they and the tests that boot the Debian guest are left out with this plugin, and `--alone`
runs only them (`make test` runs them after the parallel part, by themselves). A `-m` of PYTEST_ARGS still
applies to both.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import pytest


def redis_url_of_worker(url: str, worker: str) -> str:
    """The Redis URL of xdist worker `worker` ("gw<n>"): the database of `url` less n (modulo Redis's 16)."""
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(base - int(worker[2:])) % 16}"))


_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker.startswith("gw") and os.environ.get("REDIS_URL"):
    os.environ["REDIS_URL"] = redis_url_of_worker(os.environ["REDIS_URL"], _worker)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--alone", action="store_true", help="run only the tests marked `alone`")


# Fixtures whose tests run by themselves: the Debian guest (minutes of QEMU emulation each, with boot
# timeouts that other processes' CPU load would eat into), and the second libvirtd of the migration tests
# (two daemons' network filter drivers changing ebtables at the same moment can make one of them fail).
ALONE_FIXTURES = ("guest_image", "second_libvirtd")


def runs_alone(item: pytest.Item) -> bool:
    """Marked `alone`, or uses one of ALONE_FIXTURES."""
    names = getattr(item, "fixturenames", ())
    return item.get_closest_marker("alone") is not None or any(name in names for name in ALONE_FIXTURES)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without --alone, the `alone` tests are deselected; with it, every other test is."""
    alone = config.getoption("alone")
    keep = [item for item in items if runs_alone(item) == alone]
    dropped = [item for item in items if runs_alone(item) != alone]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
