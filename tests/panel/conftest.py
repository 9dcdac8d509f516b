"""Fixtures of the panel tests that run real Celery worker processes against the real libvirtd
(qemu:///system); what they use is in tests/real_workers.py."""

from __future__ import annotations

from collections.abc import Iterator

import libvirt
import pytest

from hypervisor.models import Host
from tests import real_workers


@pytest.fixture
def workers(libvirtd, settings, tmp_path) -> Iterator[real_workers.Workers]:
    """Worker processes for the test (killed before the test's domains are cleaned up and its database
    flushed), on a queue of its own that this process sends operations to."""
    with real_workers.worker_processes(settings, tmp_path) as pool:
        yield pool


@pytest.fixture
def libvirtd(transactional_db) -> Iterator[libvirt.virConnect]:
    """A connection to the real libvirtd with its `default` pool; at the end every domain and volume of the
    test's servers is removed (and the pool, if the test made it and it is empty)."""
    with real_workers.real_libvirtd() as conn:
        yield conn


@pytest.fixture
def kvm_host(libvirtd) -> Host:
    """The local libvirtd as a host (QEMU emulation, as guests boot here) in a region with an IPv4 pool."""
    return real_workers.kvm_host()
