"""A storage pool busy with a volume job is waited for, not failed. libvirt's storage driver refuses a pool
refresh (and destroy, undefine, delete) while a volume is being built in the pool: "pool 'x' has asynchronous
jobs running" (storage_driver.c, `asyncjobs`). hypervisor.connection recognises that refusal, retries the
call with a short back-off, and calls it transient if it outlasts the budget.

Everything here runs against the real libvirtd (qemu:///system), on a pool of the test's own, made busy for
real by a thread that keeps building volumes in it over a connection of its own.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise

import libvirt
import pytest

from hypervisor import connection
from hypervisor.connection import HypervisorError
from hypervisor.xml.storage import GIB, DirPool, Volume

pytestmark = pytest.mark.kvm

URI = "qemu:///system"


@pytest.fixture
def pool(tmp_path) -> Iterator[libvirt.virStoragePool]:
    """An active dir pool of the test's own, removed with its volumes at the end."""
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        pytest.fail(f"no libvirtd answers at {URI}: {exc}")
    name = f"busy-{uuid.uuid4().hex[:8]}"
    pool = conn.storagePoolDefineXML(DirPool(name, str(tmp_path / "pool")).to_xml(), 0)
    pool.build(0)
    pool.create(0)
    try:
        yield pool
    finally:
        connection.when_pool_idle(lambda: pool.refresh(0))
        for volume in pool.listAllVolumes(0):
            volume.delete(0)
        pool.destroy()
        pool.undefine()
        conn.close()


@contextmanager
def building(pool: libvirt.virStoragePool) -> Iterator[None]:
    """Keep building volumes in the pool until the block ends, with short pauses between them (as other
    workers creating disks would: the pool is busy for a good part of the time, not all of it)."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def build() -> None:
        conn = libvirt.open(URI)
        target = conn.storagePoolLookupByName(pool.name())
        try:
            while not stop.is_set():
                volume = target.createXML(Volume(f"{uuid.uuid4()}.qcow2", GIB).to_xml(), 0)
                volume.delete(0)
                stop.wait(0.02)
        except BaseException as exc:  # reported in the test's thread
            failures.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=build, name="volume-builder")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not failures, f"building volumes failed: {failures}"


def refusal_while_busy(pool: libvirt.virStoragePool, within: float = 10) -> libvirt.libvirtError:
    """The error of a bare refresh of the pool while it is being built in (fails if none comes)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            pool.refresh(0)
        except libvirt.libvirtError as exc:
            return exc
    pytest.fail(f"no refresh was refused within {within} s while volumes were being built")


def test_a_refresh_while_a_volume_is_built_is_refused_as_busy_and_called_transient(pool):
    with building(pool):
        refusal = refusal_while_busy(pool)

    assert refusal.get_error_code() == libvirt.VIR_ERR_INTERNAL_ERROR
    assert "asynchronous jobs running" in refusal.get_error_message()
    assert connection.pool_busy(refusal)
    assert not connection.link_broken(refusal)
    error = connection.describe(refusal, URI)
    assert error.transient
    assert "asynchronous jobs running" in error.message


def test_the_helper_refreshes_a_busy_pool_by_waiting_for_it(pool):
    attempts = 0

    def refresh() -> None:
        nonlocal attempts
        attempts += 1
        pool.refresh(0)

    with building(pool):
        refusal_while_busy(pool)  # the pool really is busy now
        for _ in range(30):
            connection.when_pool_idle(refresh)

    assert attempts > 30, "no call was refused: the helper was never made to wait"


def test_a_refusal_that_outlasts_the_budget_is_raised_after_backing_off(pool):
    with building(pool):
        refusal = refusal_while_busy(pool)
    attempts = []

    def always_busy() -> None:
        attempts.append(time.monotonic())
        raise refusal

    started = time.monotonic()
    with pytest.raises(libvirt.libvirtError) as raised:
        connection.when_pool_idle(always_busy, budget=0.5)

    assert raised.value is refusal
    # Tried at once, after 0.1 s and after 0.2 s more; the next wait (0.4 s) would pass the budget.
    assert len(attempts) == 3
    assert [round(later - earlier, 1) for earlier, later in pairwise(attempts)] == [0.1, 0.2]
    assert time.monotonic() - started < 0.5


def test_other_errors_are_raised_at_once(pool):
    attempts = 0

    def lookup_missing() -> None:
        nonlocal attempts
        attempts += 1
        pool.storageVolLookupByName("missing.qcow2")

    with pytest.raises(libvirt.libvirtError) as raised:
        connection.when_pool_idle(lookup_missing)

    assert attempts == 1
    assert raised.value.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL
    assert not connection.pool_busy(raised.value)
    assert not connection.describe(raised.value).transient


def test_a_busy_refusal_escaping_a_unit_of_work_is_transient_and_keeps_the_connection(pool):
    name = pool.name()

    def refresh_until_refused(conn: libvirt.virConnect) -> None:
        raise refusal_while_busy(conn.storagePoolLookupByName(name))

    before = connection.connection(URI)
    with building(pool), pytest.raises(HypervisorError) as raised:
        connection.run(URI, refresh_until_refused, timeout=30)

    assert raised.value.transient
    assert raised.value.code == libvirt.VIR_ERR_INTERNAL_ERROR
    assert connection.connection(URI) is before  # a busy pool is no broken link: nothing reopened
