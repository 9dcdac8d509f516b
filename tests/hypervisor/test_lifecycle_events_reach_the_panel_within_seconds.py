"""The event listener (`manage.py listen_events`) makes servers follow what happens to their domains behind
the panel's back within seconds, without waiting for the periodic reconcile (which no test here runs).

On the real libvirtd (qemu:///system, marked kvm), the listener runs as a real separate process on the
test's database: a guest destroyed with libvirt shows as stopped and started again shows as running; a
server with a task in flight is left to its operation; a guest stopped before the listener started is
caught up when it connects; and when libvirtd drops the listener's connection (`virt-admin
client-disconnect`, which touches no other client) it reconnects and goes on.

On a simulated host (test:///default, in this process), the listener's loop: a host it cannot reach is
tried again with back-off, a changed URI is picked up, and a host that is no longer ready is let go.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import libvirt
import pytest
from django.conf import settings
from django.db import connection as db_connection

from hypervisor import connection
from hypervisor.driver import DEFAULT_POOL_PATH
from hypervisor.events import EventListener
from hypervisor.models import Host
from hypervisor.xml.storage import DirPool
from panel.models import Operation, Server
from panel.servers import actions, power_events
from tests import factories

URI = "qemu:///system"
POOL = "default"
PROJECT = Path(__file__).resolve().parents[2]
SECONDS = 10  # how long the panel may take to show a change

real_host = [pytest.mark.kvm, pytest.mark.django_db(transaction=True)]


def wait_until(predicate: Callable[[], object], timeout: float, what: str, logs: Callable[[], str] = str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"{what}: not within {timeout} s\n{logs()}")


def shown(server: Server) -> tuple[str, str, str | None]:
    server.refresh_from_db()
    return server.status, server.power_state, server.task


# ---------- The real libvirtd, and the listener as a process of its own ----------


@pytest.fixture
def libvirtd(transactional_db) -> libvirt.virConnect:
    """The real libvirtd with its `default` pool; the domains and volumes of the test's servers are removed
    at the end (and the pool, if the test made it and it is empty)."""
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        pytest.fail(f"no libvirtd answers at {URI} (start it with `virtlogd -d; libvirtd -d`): {exc}")
    try:
        pool = conn.storagePoolLookupByName(POOL)
        created = False
    except libvirt.libvirtError:
        pool = conn.storagePoolDefineXML(DirPool(POOL, DEFAULT_POOL_PATH).to_xml(), 0)
        pool.build(0)
        created = True
    if not pool.isActive():
        pool.create(0)
    try:
        yield conn
    finally:
        for server_id in Server.objects.values_list("id", flat=True):
            remove_leftovers(conn, pool, str(server_id))
        if created:
            connection.when_pool_idle(lambda: pool.refresh(0))  # other tests' volume jobs
            if not pool.numOfVolumes():
                pool.destroy()
                pool.undefine()
        conn.close()


def remove_leftovers(conn: libvirt.virConnect, pool: libvirt.virStoragePool, server_id: str) -> None:
    try:
        domain = conn.lookupByUUIDString(server_id)
    except libvirt.libvirtError:
        domain = None
    if domain is not None:
        if domain.isActive():
            domain.destroy()
        domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
    connection.when_pool_idle(lambda: pool.refresh(0))  # other tests' volume jobs
    for name in pool.listVolumes():
        if server_id in name:
            pool.storageVolLookupByName(name).delete(0)


@pytest.fixture
def server(libvirtd, purge_queue, customer) -> Server:
    """A running server with a blank disk on the local libvirtd, made through the normal path."""
    host = factories.make_host(uri=URI, force_emulation=True)
    assert host.state == Host.State.READY, host.status_reason
    plan = factories.make_plan(slug="events-tiny", vcpus=1, memory_mib=128, disk_gib=1)
    server = factories.make_real_server(
        customer, plan=plan, image=factories.make_image(), region=host.region, name="events.example.com"
    )
    assert shown(server) == ("running", "running", None)
    return server


def database_url() -> str:
    """The URL of the test database pytest-django created (not the one in DATABASE_URL)."""
    db = db_connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Listener:
    """`manage.py listen_events` as a process of its own, on the test's database."""

    def __init__(self, directory: Path):
        self.log = directory / "listener.log"
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "SECRET_KEY": settings.SECRET_KEY,
            "DEBUG": "",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(PROJECT / "manage.py"), "listen_events"],
                cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def logs(self) -> str:
        return "--- listener log:\n" + "\n".join(self.text().splitlines()[-40:])

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 30, after: str = "") -> None:
        """Wait until the log has `count` lines matching the regular expression (after the last line
        matching `after`, if given)."""

        def seen() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"the listener exited with {self.process.returncode}\n{self.logs()}")
            text = self.text()
            if after:
                anchors = list(re.finditer(after, text))
                text = text[anchors[-1].end() :] if anchors else ""
            return len(re.findall(pattern, text)) >= count

        wait_until(seen, timeout, f"{count} x {pattern!r} in the listener's log", self.logs)

    def stop(self) -> int:
        """SIGTERM, as docker or run_demo.py stop it; SIGKILL if it does not end."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        return self.process.returncode


@pytest.fixture
def listener(server, tmp_path):
    """Starts the listener (after the server exists); stops it before the domains are removed and the
    database flushed, and checks that it stopped cleanly."""
    started: list[Listener] = []

    def start() -> Listener:
        started.append(Listener(tmp_path))
        return started[-1]

    yield start
    for process in started:
        assert process.stop() == 0, process.logs()
        assert "listener stopped" in process.text(), process.logs()


def caught_up(host: Host) -> str:
    return rf"host {re.escape(host.name)} caught up"


def wait_shown(server: Server, expected: tuple, what: str, logs: Callable[[], str], since: float) -> float:
    """Seconds from `since` (a monotonic time) until the panel shows `expected` (status, power state,
    task) for the server."""
    wait_until(lambda: shown(server) == expected, SECONDS, what, logs)
    return time.monotonic() - since


@pytest.mark.kvm
@pytest.mark.django_db(transaction=True)
def test_a_guest_destroyed_and_started_behind_the_panels_back_shows_within_seconds(
    libvirtd, server, listener, customer
):
    events = listener()
    events.wait_for(caught_up(server.host))  # connected and registered; what it missed is applied
    domain = libvirtd.lookupByUUIDString(str(server.id))

    since = time.monotonic()
    domain.destroy()
    destroyed_in = time.monotonic() - since
    stopped_after = wait_shown(server, ("stopped", "shutoff", None), "showing stopped", events.logs, since)

    since = time.monotonic()
    domain.create()
    created_in = time.monotonic() - since
    running_after = wait_shown(server, ("running", "running", None), "showing running", events.logs, since)
    print(
        f"\ndestroy -> stopped in {stopped_after:.2f} s (destroy() returned after {destroyed_in:.2f} s); "
        f"create -> running in {running_after:.2f} s (create() returned after {created_in:.2f} s)"
    )

    # A server with a task in flight is left to its operation (no worker runs it here).
    actions.request_action(server, Operation.Type.POWER_OFF, customer)
    domain.destroy()
    destroyed = rf"domain {server.id} stopped \(destroyed\)"
    events.wait_for(destroyed, count=2)
    events.wait_for(r"server events\.example\.com \(\S+\) left to its power_off operation", after=destroyed)
    assert shown(server) == ("running", "running", "power_off")


@pytest.mark.kvm
@pytest.mark.django_db(transaction=True)
def test_the_listener_catches_up_when_it_connects_and_reconnects_when_libvirtd_drops_it(
    libvirtd, server, listener
):
    domain = libvirtd.lookupByUUIDString(str(server.id))
    domain.destroy()  # before anything listens: only the catch-up after connecting can see it
    events = listener()
    wait_shown(server, ("stopped", "shutoff", None), "the catch-up", events.logs, time.monotonic())
    events.wait_for(caught_up(server.host) + r": stopped 1")

    dropped = disconnect_clients_of(events.process.pid)
    assert dropped, f"libvirtd has no client with the listener's pid {events.process.pid}"
    events.wait_for(r"the connection to host \S+ closed")
    events.wait_for(r"listening to lifecycle events of host", count=2)
    events.wait_for(caught_up(server.host), count=2)

    domain.create()
    wait_shown(server, ("running", "running", None), "showing running", events.logs, time.monotonic())


def virt_admin(*args: str) -> str:
    if shutil.which("virt-admin") is None:
        pytest.fail("virt-admin is missing (Debian's libvirt-clients; scripts/test-services.sh installs it)")
    return subprocess.run(["virt-admin", *args], check=True, capture_output=True, text=True).stdout


def disconnect_clients_of(pid: int) -> list[str]:
    """Make libvirtd drop every connection the process has open (as a restart would), and only those."""
    servers = [line.split()[1] for line in virt_admin("srv-list").splitlines()[2:] if line.strip()]
    daemon = next(name for name in servers if name != "admin")
    dropped = []
    for line in virt_admin("srv-clients-list", daemon).splitlines()[2:]:
        if not line.strip():
            continue
        client = line.split()[0]
        try:
            described = virt_admin("client-info", daemon, client)
        except subprocess.CalledProcessError:
            continue  # another process's client, gone since the list (the suite runs in several processes)
        rows = (row.partition(":") for row in described.splitlines())
        info = {key.strip(): value.strip() for key, _, value in rows}
        if info.get("unix_process_id") == str(pid):
            virt_admin("client-disconnect", daemon, client)
            dropped.append(client)
    return dropped


# ---------- The listener's loop, on a simulated host in this process ----------


@pytest.fixture
def simulated(transactional_db, customer):
    """A server on the simulated test:///default host (shared by every connection of this process); its
    domain and volumes are removed at the end, since the simulated host outlives the test."""
    region, plan, image = factories.make_catalog()
    host = factories.make_host(region=region)
    server = factories.make_real_server(customer, plan=plan, image=image, region=region, name="sim1")
    conn = connection.connection(host.uri)
    yield host, server, conn
    try:
        domain = conn.lookupByUUIDString(str(server.id))
        if domain.isActive():
            domain.destroy()
        domain.undefine()
    except libvirt.libvirtError:
        pass
    pool = conn.storagePoolLookupByName(host.storage_pool)
    for name in pool.listVolumes():
        if str(server.id) in name:
            pool.storageVolLookupByName(name).delete(0)


@pytest.mark.django_db(transaction=True)
def test_the_listener_retries_with_back_off_follows_host_changes_and_lets_hosts_go(simulated, caplog):
    host, server, conn = simulated
    caplog.set_level(logging.INFO, logger="hypervisor.events")
    Host.objects.filter(pk=host.pk).update(uri="qemu+tcp://127.0.0.1:1/system")  # nothing listens there
    caught_up: list[dict] = []
    listener = EventListener(
        on_event=power_events.apply_event,
        on_connected=lambda host_id: caught_up.append(power_events.catch_up(host_id)),
        include_simulated=True,
        refresh_seconds=0.1,
        backoff_min=0.1,
        backoff_max=0.4,
    )
    thread = threading.Thread(target=listener.run, name="listener")
    thread.start()
    try:

        def attempts() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "cannot connect to host" in r.getMessage()]

        wait_until(lambda: len(attempts()) >= 4, 5, "four attempts to reach the host")
        delays = [float(re.search(r"again in ([\d.]+) s", r.getMessage()).group(1)) for r in attempts()[:4]]
        assert delays == [0.1, 0.2, 0.4, 0.4]  # doubling, up to the maximum
        assert not caught_up

        Host.objects.filter(pk=host.pk).update(uri="test:///default")  # the admin fixed the URI
        watcher = wait_until(
            lambda: (w := listener.watchers().get(host.pk)) and w.connections and w, 5, "the new connection"
        )
        wait_until(lambda: caught_up, 5, "the catch-up after connecting")
        assert caught_up == [{"stopped": 0, "started": 0, "vanished": 0, "unknown": caught_up[0]["unknown"]}]

        conn.lookupByUUIDString(str(server.id)).destroy()
        wait_until(
            lambda: shown(server) == ("stopped", "shutoff", None), SECONDS, "the panel showing stopped"
        )

        Host.objects.filter(pk=host.pk).update(state=Host.State.DOWN)
        wait_until(lambda: not listener.watchers(), 5, "the listener letting the host go")
        wait_until(lambda: not watcher.thread.is_alive(), 5, "the host's watcher ending")
        assert watcher.connections == 1
    finally:
        listener.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
